# tests/cli/rl-step.sh — rl-step against an independent PyTorch reference of the GRPO step
# (tests/oracle/ref_grpo.py: the objective written from the papers and differentiated by autograd,
# the model of ref_model.py, torch.optim.AdamW): the updated weights after each aggregation mode,
# each KL estimator (with a reference model different from the policy), the clip-higher / dynamic
# sampling / overlong-masking / Dr. GRPO switches, and PPO-style epochs x minibatches over several
# rollout batches; the metrics against torch's. Then the contract: stale samples refused (and
# reported with --allow-stale), broken groups and bad samples 65, bad flags 64, a non-finite loss
# 70 with no checkpoint, /dev/full 74, resume bit-identical to an uninterrupted run; and
# pipelines/grpo.sh raising the mean reward of a tiny verifiable task.
. "$(dirname "$0")/../lib.sh"
need_torch msgpack
REFM="$TOP/tests/oracle/ref_model.py"
REFG="$TOP/tests/oracle/ref_grpo.py"
cd "$TMP"

# two tiny architectures: llama with an untied head, qwen3 (q/k norms) with tied embeddings
echo '{"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":61,"max_position_embeddings":64,"rope_theta":10000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"hidden_act":"silu"}' > llama.json
echo '{"model_type":"qwen3","hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"vocab_size":53,"max_position_embeddings":64,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"tie_word_embeddings":true,"hidden_act":"silu"}' > qwen3.json
for a in llama qwen3; do
    $PY "$REFM" init $a.json $a-pol --seed 11 --std 0.2 --randomize-all >/dev/null &&
    $PY "$REFM" init $a.json $a-ref --seed 12 --std 0.2 --randomize-all >/dev/null ||
        { bad "$a: reference init failed"; finish; exit 1; }
    hash=$(init-model --from $a-pol -n 2>&1 | sed -n 's/.*model_xxh3=\([0-9a-f]*\).*/\1/p')
    $PY "$REFG" mkbatch $a-pol $a-b4.mp --model-xxh3 "$hash" --groups 4 --G 4 --seed 5 &&
    $PY "$REFG" mkbatch $a-pol $a-b8.mp --model-xxh3 "$hash" --groups 8 --G 3 --seed 6 ||
        { bad "$a: batch generation failed"; finish; exit 1; }
    eval "${a}_hash=$hash"
done
sed 's/"hidden_size":32/"hidden_size":24/; s/"intermediate_size":40/"intermediate_size":30/' qwen3.json > qwen3b.json
$PY "$REFM" init qwen3b.json qwen3-ref2 --seed 13 --std 0.2 --randomize-all >/dev/null || bad "qwen3-ref2 init failed"

# name | arch | batch | flags shared by rl-step and ref_grpo.py | rl-step only
# (microbatch-refshape: a minibatch split into packed forwards of <= 16 tokens, and a reference
# model of another width than the policy, so with its own activation arena)
cases=(
  'token-nokl|llama|b4|--agg token'
  'seq-k3|llama|b4|--agg seq --beta 0.1 --kl k3 --ref llama-ref'
  'const-k2-maxlen|llama|b4|--agg const --max-len 12 --beta 0.2 --kl k2 --ref llama-ref'
  'const-longest|llama|b4|--agg const'
  'dapo-k1-ppo|llama|b4|--agg token --beta 0.05 --kl k1 --ref llama-ref --eps-high 0.28 --drop-equal --mask-truncated --num-iterations 2 --minibatches 2'
  'drgrpo-k3|llama|b4|--agg const --no-std-scale --beta 0.1 --ref llama-ref --num-iterations 2'
  'seq-k3-batches|qwen3|b8|--agg seq --beta 0.1 --kl k3 --ref qwen3-ref --groups-per-step 4 --num-iterations 2 --minibatches 3'
  'token-klreport|qwen3|b8|--agg token --ref qwen3-ref --groups-per-step 3 --eps-low 0.1 --eps-high 0.3'
  'microbatch-refshape|qwen3|b8|--agg seq --beta 0.1 --ref qwen3-ref2|--max-tokens 16'
)
# AdamW's eps is 1e-4, not 1e-8: Adam turns a gradient element at rounding-noise level (1e-9)
# into a full step of random sign with eps = 1e-8, and two correct f32 implementations then
# drift apart by 1e-4 within a step (as in lm-torch.sh); the real gradients here are ~1e-2.
common='--lr 2e-3 --weight-decay 0.1 --clip 1.0 --adam-eps 1e-4'
for c in "${cases[@]}"; do
    IFS='|' read -r name arch batch flags conly <<<"$c"
    gps=4; [[ $flags == *--groups-per-step* ]] || flags="$flags --groups-per-step $gps"
    # shellcheck disable=SC2086
    if rl-step --model $arch-pol --out c-$name --threads 1 -q $common $flags $conly < $arch-$batch.mp > c-$name.mp 2> c-$name.err; then
        if $PY "$REFG" step $arch-pol $arch-$batch.mp r-$name $common --no-decay-norms-biases $flags \
               --compare c-$name/model.safetensors --rtol 1e-4 > r-$name.jsonl 2> cmp-$name; then ok
        else bad "$name: weights differ from PyTorch: $(grep -v '^ok' cmp-$name | head -3)"; fi
        # per-step metrics: loss, grad_norm, kl, entropy, clip fractions, tokens
        if to-json < c-$name.mp | $PY -c '
import json, sys
c = [r for r in map(json.loads, sys.stdin) if r["kind"] == "metrics"]
t = [json.loads(l) for l in open(sys.argv[1])]
assert len(c) == len(t), f"{len(c)} steps vs torch {len(t)}"
for a, b in zip(c, t):
    # rl-step uses the TRL names (clip_ratio/low_mean ...), the oracle its own
    for k, kt in (("loss", "loss"), ("grad_norm", "grad_norm"), ("kl", "kl"), ("entropy", "entropy"),
                  ("clip_ratio/low_mean", "clip_low"), ("clip_ratio/high_mean", "clip_high"), ("tokens", "tokens")):
        if k == "kl" and k not in a: continue
        n = b["step"]
        assert abs(a[k] - b[kt]) <= 1e-4 * max(1, abs(b[kt])), f"step {n} {k}: {a[k]} vs torch {b[kt]}"
' r-$name.jsonl 2> mcmp-$name; then ok; else bad "$name: metrics differ: $(tail -1 mcmp-$name)"; fi
    else bad "$name: run failed: $(tail -1 c-$name.err)"; fi
done
# the oracle sees a wrong objective: rl-step's seq-mean weights against torch's token mean
$PY "$REFG" step llama-pol llama-b4.mp r-neg $common --no-decay-norms-biases --agg token --beta 0.1 --kl k3 \
    --ref llama-ref --groups-per-step 4 --compare c-seq-k3/model.safetensors > /dev/null 2>&1 \
    && bad "oracle: --agg seq and --agg token gave the same weights" || ok
# the KL is reported (not penalised) when --ref is given with --beta 0; absent without --ref
to-json < c-token-klreport.mp | grep '"kind":"metrics"' | grep -q '"kl":[-0-9]' && ok || bad "token-klreport: no kl in metrics"
to-json < c-token-nokl.mp | grep '"kind":"metrics"' | grep -q '"kl":' && bad "token-nokl: kl reported without --ref" || ok
# dropped groups show in the metrics: b4 has one all-correct and one all-wrong group of 4
expect_eq "$(to-json < c-dapo-k1-ppo.mp | grep -m1 '"kind":"metrics"' | grep -o '"groups_dropped_frac":[0-9.]*')" \
    '"groups_dropped_frac":0.5' "dropped-group share"

# ---------------------------------------------------------------------------------------------
# the contract
P="--model llama-pol --lr 1e-3 -q"
to-json < llama-b4.mp > b4.jsonl
mk() { from-json > "$1"; }   # JSON lines -> stream

expect_rc 0 "--help" -- rl-step --help
grep -q '^usage: rl-step' "$TMP/out" && ok || bad "--help prints no usage"
expect_rc 0 "--version" -- rl-step --version
expect_rc 64 "unknown flag" -- rl-step $P --out o --bogus
expect_err "Try 'rl-step --help'" "unknown flag hint"
expect_rc 64 "missing --model" -- rl-step --out o
expect_rc 64 "beta without ref" -- rl-step $P --out o --beta 0.1
expect_err "needs a reference model" "beta without ref message"
expect_rc 64 "bad --agg" -- rl-step $P --out o --agg mean
expect_rc 64 "bad --kl" -- rl-step $P --out o --kl k9
expect_rc 64 "bad --num-iterations" -- rl-step $P --out o --num-iterations 0
expect_rc 64 "bad --eps-low" -- rl-step $P --out o --eps-low 1.5
expect_rc 64 "bad number" -- rl-step $P --out o --beta abc
expect_rc 64 "bad --recipe" -- rl-step $P --out o --recipe ppo
expect_rc 66 "a missing FILE operand" -- rl-step $P --out o file.mp
expect_rc 64 "two FILE operands" -- rl-step $P --out o llama-b4.mp llama-b4.mp

# stale samples: another model's hash in the header
jq -c 'if .kind == "header" then .upstream.model_xxh3 = "0123456789abcdef" else . end' b4.jsonl | mk stale.mp
expect_rc 65 "stale samples" -- sh -c "rl-step $P --out o-stale < stale.mp"
expect_err "samples were drawn by model 0123456789abcdef" "stale message names the sampler"
expect_err "$llama_hash" "stale message names the policy"
[ -e o-stale/model.safetensors ] && bad "stale: a checkpoint was written" || ok
expect_rc 0 "--allow-stale" -- sh -c "rl-step $P --out o-stale --allow-stale < stale.mp"
expect_eq "$(to-json < "$TMP/out" | grep -c '"stale":true,.*"sample_model_xxh3":"0123456789abcdef"')" 1 "stale recorded in metrics"
jq -c 'if .kind == "header" then del(.upstream.model_xxh3) else . end' b4.jsonl | mk nohash.mp
expect_rc 65 "no sampler hash" -- sh -c "rl-step $P --out o-x < nohash.mp"
expect_err "names no sampling policy" "no sampler hash message"
jq -c 'if .kind == "header" then .upstream.vocab_size = 1000 else . end' b4.jsonl | mk vocab.mp
expect_rc 65 "vocabulary mismatch" -- sh -c "rl-step $P --out o-x < vocab.mp"
expect_err "embedding rows" "vocabulary mismatch message"

# broken groups and bad samples
jq -c 'if .kind == "sample" and .id == "p0" and .sample == 1 then .sample = 2 else . end' b4.jsonl | mk g1.mp
expect_rc 65 "sample out of order" -- sh -c "rl-step $P --out o-x < g1.mp"
expect_err 'broken group "p0": expected sample 1 of 4' "out-of-order message"
jq -c 'if .kind == "sample" and .id == "p1" and .sample == 2 then .id = "p9" else . end' b4.jsonl | mk g2.mp
expect_rc 65 "id change inside a group" -- sh -c "rl-step $P --out o-x < g2.mp"
expect_err 'broken group "p1"' "id change message"
jq -c 'if .kind == "sample" and .id == "p0" and .sample == 0 then .sample = 1 else . end' b4.jsonl | mk g3.mp
expect_rc 65 "group not starting at 0" -- sh -c "rl-step $P --out o-x < g3.mp"
jq -c 'select(.kind != "sample" or .id != "p3" or .sample < 3)' b4.jsonl | mk g4.mp
expect_rc 65 "stream ends inside a group" -- sh -c "rl-step $P --out o-x < g4.mp"
expect_err 'ends inside group "p3" (3 of 4 samples)' "cut group message"
jq -c 'if .kind == "sample" and .sample == 1 then del(.reward) else . end' b4.jsonl | mk r1.mp
expect_rc 65 "unscored samples" -- sh -c "rl-step $P --out o-x < r1.mp"
expect_err "run score before rl-step" "unscored message"
jq -c 'if .kind == "sample" and .sample == 1 then .logprobs.data |= .[1:] | .logprobs.shape[0] -= 1 else . end' b4.jsonl | mk r2.mp
expect_rc 65 "logprobs length" -- sh -c "rl-step $P --out o-x < r2.mp"
expect_err 'field "logprobs"' "logprobs length message"
jq -c 'if .kind == "sample" and .sample == 1 then .tokens[0] = 61 else . end' b4.jsonl | mk r3.mp
expect_rc 65 "token out of range" -- sh -c "rl-step $P --out o-x < r3.mp"
jq -c 'if .kind == "sample" and .sample == 1 then .finish_reason = "done" else . end' b4.jsonl | mk r4.mp
expect_rc 65 "bad finish_reason" -- sh -c "rl-step $P --out o-x < r4.mp"
jq -c 'if .kind == "sample" and .sample == 1 then .mask[0] = 1 else . end' b4.jsonl | mk r5.mp
expect_rc 65 "trained prompt token" -- sh -c "rl-step $P --out o-x < r5.mp"
rl-step $P --out o-x < <(head -c 3000 llama-b4.mp) > /dev/null 2> err.txt; rc=$?
expect_eq "$rc" 65 "truncated stream"
echo '{"kind":"header","schema":"srlm.examples","schema_version":1,"producer":{"name":"x","version":"1"}}
{"kind":"end","records":0}' | mk ex.mp
expect_rc 65 "wrong schema" -- sh -c "rl-step $P --out o-x < ex.mp"

# non-finite loss: an old log-prob of -3e38 makes the ratio infinite (exit 70, no checkpoint)
jq -c 'if .kind == "sample" and .id == "p0" then .logprobs.data |= map(-3e38) else . end' b4.jsonl | mk inf.mp
expect_rc 70 "non-finite loss" -- sh -c "rl-step $P --out o-inf < inf.mp"
expect_err "non-finite" "non-finite message"
[ -e o-inf/model.safetensors ] && bad "non-finite: a checkpoint was written" || ok

expect_rc 74 "/dev/full" -- sh -c "rl-step $P --out o-full < llama-b4.mp > /dev/full"
expect_err "No space left on device" "/dev/full message"

# --recipe fills defaults; explicit flags win
rl-step $P --out o-rec --recipe dapo --eps-high 0.3 < llama-b4.mp > rec.mp 2>/dev/null
expect_eq "$(to-json < rec.mp | head -1 | jq -c '.options | [.agg, .eps_high, .drop_equal, .mask_truncated]')" \
    '["token",0.3,true,true]' "--recipe dapo with --eps-high 0.3"

# resume: stopping after 3 of 8 steps (mid-batch) and resuming gives the same bits as one run
R="--model qwen3-pol --lr 1e-3 --ref qwen3-ref --beta 0.1 --groups-per-step 4 --num-iterations 2 --minibatches 2 --threads 1 -q"
rl-step $R --out full < qwen3-b8.mp > full.mp &&
rl-step $R --out part --steps 3 < qwen3-b8.mp > part1.mp &&
rl-step $R --out part --resume < qwen3-b8.mp > part2.mp || bad "resume runs failed"
expect_same full/model.safetensors part/model.safetensors "resume: weights identical to an uninterrupted run"
expect_eq "$(to-json < part2.mp | grep -c '"kind":"metrics"')" 5 "resume: the remaining 5 steps"
expect_eq "$(to-json < part2.mp | grep '"kind":"metrics"' | jq -s -c '[.[] | .loss]')" \
          "$(to-json < full.mp | grep '"kind":"metrics"' | jq -s -c '[.[3:][] | .loss]')" "resume: same losses"
# SIGKILL mid-run, then --resume: the same bits as the uninterrupted run. (1) Killed while blocked
# on input: the stream stops inside the second rollout batch (a pipe held open), so the run has
# done and checkpointed the first batch's 4 steps and waits for the rest. (2) Killed at a random
# moment of a free-running run (maybe while a checkpoint is being written; on a fast machine the
# run may finish first, which the resume then has to cope with too).
sigkill_resume() {   # name
    expect_rc 0 "$1: --resume after SIGKILL" -- sh -c "rl-step $R --out kill-$1 --save-every 1 --resume < qwen3-b8.mp"
    expect_same full/model.safetensors kill-$1/model.safetensors "$1: SIGKILL then --resume: weights identical to an uninterrupted run"
    [ "$(ls -d kill-$1/state-* | wc -l)" = 1 ] && ok || bad "$1: stale state directories left"
}
rm -f fifo; mkfifo fifo
(head -c $(( $(wc -c < qwen3-b8.mp) * 3 / 4 )) qwen3-b8.mp; exec sleep 60) > fifo &
feeder=$!
rl-step $R --out kill-blocked --save-every 1 < fifo > /dev/null 2>&1 &
pid=$! i=0
while ! [ -d kill-blocked/state-4 ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i + 1)); done
sleep 0.3
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
kill $feeder 2>/dev/null; wait $feeder 2>/dev/null
[ -d kill-blocked/state-4 ] && [ ! -d kill-blocked/state-5 ] && ok ||
    bad "blocked: want the step-4 checkpoint and no later one before the kill: $(ls kill-blocked 2>&1 | tr '\n' ' ')"
sigkill_resume blocked
rl-step $R --out kill-random --save-every 1 < qwen3-b8.mp > /dev/null 2>&1 &
pid=$! i=0
while ! ls -d kill-random/state-* >/dev/null 2>&1 && [ $i -lt 1500 ]; do sleep 0.01; i=$((i + 1)); done
sleep 0.0$((RANDOM % 10))
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
sigkill_resume random

# ---------------------------------------------------------------------------------------------
# pipelines/grpo.sh on a tiny verifiable task: prompt "a" -> answer starting "b", b -> c, c -> d,
# d -> a (judged by an external verifier through score --exec); a random tiny model must raise
# its mean reward from chance (~1/16).
init-model --preset tiny --tokenizer "$TOP/tests/data/tok-tiny" --out tiny --seed 7 -q
for p in a b c d; do echo "{\"id\":\"q-$p\",\"prompt\":\"$p\"}"; done > prompts.jsonl
cat > verify.sh <<'EOF'
jq -c '(.id | split("-")[1]) as $p | ({"a":"b","b":"c","c":"d","d":"a"}[$p]) as $g | if (.text | startswith($g)) then 1 else 0 end'
EOF
t0=$SECONDS
if "$TOP/pipelines/grpo.sh" --model tiny --prompts prompts.jsonl --out pipe --iters 30 -G 8 \
     --rollout-arg --max-new-tokens --rollout-arg 3 --rollout-arg -q \
     --score-arg --task --score-arg none --score-arg --exec --score-arg "sh $TMP/verify.sh" --score-arg -q \
     --rl-arg --lr --rl-arg 5e-3 --rl-arg --num-iterations --rl-arg 2 --rl-arg --minibatches --rl-arg 2 --rl-arg -q \
     2> pipe.err; then
    first=$(head -n 5 pipe/rewards.tsv | awk '{ s += $3 } END { printf "%.3f", s / NR }')
    last=$(tail -n 5 pipe/rewards.tsv | awk '{ s += $3 } END { printf "%.3f", s / NR }')
    echo "rl-step: grpo.sh mean reward, first 5 iterations $first, last 5 $last ($((SECONDS - t0)) s)" >&2
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b >= a + 0.25 && b >= 0.4) }' && ok \
        || bad "grpo.sh did not raise the reward enough: first $first, last $last"
    expect_eq "$(ls -d pipe/iter-* | wc -l)" 30 "grpo.sh: one checkpoint per iteration"
    # a finished run is not redone
    "$TOP/pipelines/grpo.sh" --model tiny --prompts prompts.jsonl --out pipe --iters 30 2>/dev/null
    expect_eq "$(wc -l < pipe/rewards.tsv)" 30 "grpo.sh: finished iterations skipped"
else bad "grpo.sh failed: $(tail -n 3 pipe.err)"; fi
expect_rc 64 "grpo.sh without --model" -- "$TOP/pipelines/grpo.sh" --prompts prompts.jsonl --out x
expect_rc 66 "grpo.sh missing prompts" -- "$TOP/pipelines/grpo.sh" --model tiny --prompts nope.jsonl --out x
finish
