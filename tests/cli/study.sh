# tests/cli/study.sh — a shortened study on the embedded task: the claims the study rests on,
# checked on held-out problems. SFT and GRPO must raise greedy accuracy above the base model's,
# and logit KD must lower the student's KL to the teacher on held-out examples. Small enough to
# run in a few minutes on 2 cores (single-step problems, a few hundred optimizer steps in all).
. "$(dirname "$0")/../lib.sh"
export PATH="$TOP/pipelines:$PATH" OMP_WAIT_POLICY=PASSIVE
A=$TOP/examples/arith
TASK=(--steps 1 --max-operand 4 --max-value 9)
make-task --split train --n 600 --seed 3 "${TASK[@]}" > "$TMP/train.jsonl"
make-task --split test --n 80 --seed 3 "${TASK[@]}" > "$TMP/test.jsonl"
init-model --config "$A/student.json" --tokenizer "$A" --seed 4 --out "$TMP/s0" -q
init-model --config "$A/teacher.json" --tokenizer "$A" --seed 5 --out "$TMP/t0" -q
TRAIN=(--epochs 100 --lr 3e-3 --schedule cosine --warmup 5 --batch-tokens 1024 --threads 2 -q)

# greedy accuracy on the held-out problems
acc() {
    tokenize --tokenizer "$1" < "$TMP/test.jsonl" \
      | rollout --model "$1" --greedy --max-new-tokens 40 --threads 2 -q \
      | score -q | evaluate --greedy --json -q | jq '.metrics["pass@1"].value'
}
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

sft.sh "$TMP/s0" "$TMP/train.jsonl" "$TMP/base" --steps 12 "${TRAIN[@]}" 2>/dev/null
sft.sh "$TMP/base" "$TMP/train.jsonl" "$TMP/sft" --steps 60 "${TRAIN[@]}" 2>/dev/null
a_base=$(acc "$TMP/base") a_sft=$(acc "$TMP/sft")
echo "study: base $a_base, sft $a_sft" >&2
gt "$a_sft" "$a_base" && ok || bad "SFT did not raise held-out accuracy ($a_base -> $a_sft)"

grpo.sh --model "$TMP/sft" --prompts "$TMP/train.jsonl" --out "$TMP/grpo" --iters 4 -G 8 \
    --prompts-per-iter 24 --seed 9 --rollout-arg --max-new-tokens --rollout-arg 40 \
    --score-arg --task --score-arg gsm8k --score-arg -q \
    --rl-arg --lr --rl-arg 3e-4 --rl-arg --groups-per-step --rl-arg 24 --rl-arg -q 2>/dev/null
a_grpo=$(acc "$TMP/grpo/iter-4")
echo "study: sft -> grpo $a_grpo" >&2
gt "$a_grpo" "$a_base" && ok || bad "GRPO did not raise held-out accuracy above the base's ($a_base -> $a_grpo)"

# KD: the student's KL to the teacher on held-out examples, before and after distillation.
# A step with --lr 0 changes nothing and reports the loss at the given weights.
sft.sh "$TMP/t0" "$TMP/train.jsonl" "$TMP/t" --steps 60 "${TRAIN[@]}" 2>/dev/null
tokenize --tokenizer "$TMP/base" < "$TMP/test.jsonl" | teacher-logits --model "$TMP/t" --top-k 8 -q > "$TMP/heldout-kd.mp"
kl() {
    sft-step --model "$1" --out "$TMP/kl-probe" --loss kd --kd fkl --lr 0 --steps 1 --batch-tokens 100000 -q \
        "$TMP/heldout-kd.mp" | to-json --no-frame | jq 'select(.kind == "metrics") | .kd'
}
kl_before=$(kl "$TMP/base")
kd.sh "$TMP/t" "$TMP/base" "$TMP/train.jsonl" "$TMP/kd" --steps 40 --kd fkl "${TRAIN[@]}" 2>/dev/null
kl_after=$(kl "$TMP/kd")
echo "study: KL(teacher || student) on held-out: $kl_before -> $kl_after" >&2
gt "$kl_before" "$kl_after" && ok || bad "KD did not lower the held-out KL to the teacher ($kl_before -> $kl_after)"
finish
