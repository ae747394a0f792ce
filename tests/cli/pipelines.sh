# tests/cli/pipelines.sh — the distillation compositions with rollout: sequence-level KD
# (pipelines/seqkd.sh) and on-policy KD (pipelines/onpolicy-kd.sh), on tiny models of the
# embedded task: each must run, write loadable checkpoints and finite losses, and fail cleanly
# on bad arguments.
. "$(dirname "$0")/../lib.sh"
export PATH="$TOP/pipelines:$PATH" OMP_WAIT_POLICY=PASSIVE
A=$TOP/examples/arith
make-task --split train --n 24 --seed 5 > "$TMP/p.jsonl"
init-model --config "$A/teacher.json" --tokenizer "$A" --seed 1 --out "$TMP/T" -q
init-model --config "$A/student.json" --tokenizer "$A" --seed 2 --out "$TMP/S" -q
# A teacher that has seen the solutions a little, so that some of its samples are correct.
tokenize --tokenizer "$TMP/T" < "$TMP/p.jsonl" > "$TMP/p.mp"
sft-step --model "$TMP/T" --out "$TMP/T1" --steps 30 --epochs 100 --lr 1e-2 --batch-tokens 1024 -q "$TMP/p.mp" > /dev/null

finite_losses() { to-json --no-frame "$1" | jq -e -s 'length > 0 and all(.[] | select(.kind == "metrics"); .loss | isfinite)' > /dev/null; }

expect_rc 0 "seqkd.sh runs" -- env G=4 MAX_NEW=48 TEMPERATURE=1 seqkd.sh "$TMP/T1" "$TMP/S" "$TMP/p.jsonl" "$TMP/sk" --steps 3 -q
expect_rc 0 "seqkd checkpoint loads" -- init-model --from "$TMP/sk" --dry-run -q
finite_losses "$TMP/sk/metrics.mp" && ok || bad "seqkd: non-finite or missing losses"
# every kept sample is a correct one
n_bad=$(to-json --no-frame "$TMP/sk/teacher-correct.mp" | jq -s 'map(select(.rewards.correct != 1)) | length')
expect_eq "$n_bad" "0" "seqkd keeps only correct samples"

expect_rc 0 "onpolicy-kd.sh runs" -- env ROUNDS=2 G=2 MAX_NEW=32 TOP_K=8 onpolicy-kd.sh "$TMP/T1" "$TMP/S" "$TMP/p.jsonl" "$TMP/op" --steps 4 -q
expect_rc 0 "on-policy round 2 loads" -- init-model --from "$TMP/op/round-2" --dry-run -q
finite_losses "$TMP/op/round-2/metrics.mp" && ok || bad "on-policy KD: non-finite or missing losses"
# round 2 sampled from round 1's weights: its samples' header names round 1's model hash
h1=$(to-json "$TMP/op/round-1/metrics.mp" | jq -r 'select(.kind == "checkpoint") | .model_xxh3' | tail -n 1)
h2=$(to-json "$TMP/op/round-2/samples.mp" | head -n 1 | jq -r '.. | objects | select(.producer.name? == "rollout") | .model_xxh3' | head -n 1)
expect_eq "$h2" "$h1" "on-policy round 2 samples from round 1's student"
# the rounds are one optimizer run: round 2 continues round 1's steps (and its AdamW moments)
expect_eq "$(to-json --no-frame "$TMP/op/round-2/metrics.mp" | jq -c 'select(.kind == "metrics") | .step' | head -n 1)" \
    "$(( $(to-json --no-frame "$TMP/op/round-1/metrics.mp" | jq -c 'select(.kind == "metrics") | .step' | tail -n 1) + 1 ))" \
    "on-policy round 2 continues round 1's step count"
expect_eq "$(to-json "$TMP/op/round-2/metrics.mp" | head -n 1 | jq -r '.continued_from.path')" "$TMP/op/round-1" \
    "on-policy round 2 continues round 1's optimizer run"

# with LoRA: one adapter over the rounds, round 2 sampling with round 1's adapter
expect_rc 0 "onpolicy-kd.sh with LORA_RANK=4" -- env LORA_RANK=4 ROUNDS=2 G=2 MAX_NEW=32 TOP_K=8 onpolicy-kd.sh "$TMP/T1" "$TMP/S" "$TMP/p.jsonl" "$TMP/opl" --steps 4 --lr 1e-2 -q
[ -f "$TMP/opl/round-2/adapter_model.safetensors" ] && [ ! -f "$TMP/opl/round-2/model.safetensors" ] && ok \
    || bad "on-policy KD with LoRA: round 2 holds no adapter (or a full model)"
a1=$(to-json "$TMP/opl/round-1/metrics.mp" | jq -r 'select(.kind == "checkpoint") | .model_xxh3' | tail -n 1)
expect_eq "$(to-json "$TMP/opl/round-2/samples.mp" | head -n 1 | jq -r '.. | objects | select(.producer.name? == "rollout") | .adapter_xxh3' | head -n 1)" \
    "$a1" "on-policy KD with LoRA: round 2 samples with round 1's adapter"
expect_rc 64 "seqkd.sh usage" -- seqkd.sh "$TMP/T1"
expect_rc 66 "seqkd.sh missing prompts" -- seqkd.sh "$TMP/T1" "$TMP/S" "$TMP/none.jsonl" "$TMP/x"
expect_rc 64 "onpolicy-kd.sh usage" -- onpolicy-kd.sh
finish
