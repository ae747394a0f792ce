# tests/cli/continue.sh — one optimizer run across processes (--continue, trainer.h; issue 11).
# An RL run of many rollout iterations is many rl-step processes; they must make the same steps
# as one process that reads every rollout batch, or AdamW's moments, the step counter and the LR
# schedule start over in every iteration (sign descent at every first Adam step). Checked:
#   - rl-step: one process over K rollout batches == K chained --continue processes, bit for bit
#     (weights, moments, the metrics' step, lr and loss), with a warm-up + cosine schedule;
#   - the chained run against PyTorch (tests/oracle/ref_grpo.py: one torch.optim.AdamW over all
#     batches); chaining WITHOUT --continue (fresh moments) must be caught by that oracle;
#   - sft-step the same (one process over A+B == A, then --continue on B);
#   - options inherited from the run, an explicit one overriding; bad --continue dirs;
#   - grpo.sh: its metrics' step counts across iterations, and a run killed mid-iteration and
#     restarted ends with the same bits as an uninterrupted one.
. "$(dirname "$0")/../lib.sh"
need_torch msgpack
REFM="$TOP/tests/oracle/ref_model.py"
REFG="$TOP/tests/oracle/ref_grpo.py"
cd "$TMP"

echo '{"model_type":"qwen3","hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"vocab_size":53,"max_position_embeddings":64,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"tie_word_embeddings":true,"hidden_act":"silu"}' > qwen3.json
$PY "$REFM" init qwen3.json pol --seed 11 --std 0.2 --randomize-all >/dev/null || { bad "init failed"; finish; exit 1; }
hash=$(init-model --from pol -n 2>&1 | sed -n 's/.*model_xxh3=\([0-9a-f]*\).*/\1/p')
$PY "$REFG" mkbatch pol all.mp --model-xxh3 "$hash" --groups 9 --G 3 --seed 6 || { bad "batch generation failed"; finish; exit 1; }

# the stream cut into 3 rollout batches of 3 groups (9 samples each)
to-json --no-frame all.mp > all.jsonl
# The sampler's header chain must name the policy (rl-step checks it): keep all.mp's header.
hdr=$(to-json all.mp | head -n 1)
for k in 1 2 3; do
    { echo "$hdr"; sed -n "$(( (k - 1) * 9 + 1 )),$(( k * 9 ))p" all.jsonl; echo '{"kind":"end","records":9}'; } | from-json > p$k.mp ||
        bad "from-json part $k with header"
done

# --adam-eps 1e-4: see rl-step.sh (rounding-noise gradients and Adam's eps)
O="--lr 3e-3 --adam-eps 1e-4 --weight-decay 0.1 --schedule cosine --warmup 2 --steps 6 --groups-per-step 3 --minibatches 2 --threads 1 -q"
# the single process reads the three batches as one stream
{ echo "$hdr"; cat all.jsonl; echo '{"kind":"end","records":27}'; } | from-json > cat.mp
rl-step --model pol --out one $O < cat.mp > one.mp 2> one.err || bad "one process: $(tail -1 one.err)"
rl-step --model pol --out c1 $O < p1.mp > c1.mp 2> c.err &&
rl-step --model pol --continue c1 --out c2 $O --allow-stale < p2.mp > c2.mp 2>> c.err &&
rl-step --continue c2 --out c3 --allow-stale --groups-per-step 3 --minibatches 2 --threads 1 -q < p3.mp > c3.mp 2>> c.err ||
    bad "chained run failed: $(tail -2 c.err)"
expect_same one/model.safetensors c3/model.safetensors "3 chained processes: the same weights as one process"
expect_same one/state-6/optimizer.safetensors c3/state-6/optimizer.safetensors "3 chained processes: the same AdamW moments"
steps() { local f; for f; do to-json --no-frame "$f"; done | jq -c 'select(.kind == "metrics") | [.step, .learning_rate, .loss]' | tr '\n' ' '; }
expect_eq "$(steps c1.mp c2.mp c3.mp)" "$(steps one.mp)" "chained: step, lr and loss of every step as one process"
expect_eq "$(to-json --no-frame c3.mp | jq -c 'select(.kind == "metrics") | .step' | tr '\n' ' ')" "5 6 " "the third process makes steps 5 and 6"
expect_eq "$(to-json c2.mp | head -n 1 | jq -c '.continued_from')" '{"path":"c1","step":2}' "header: continued_from"
expect_eq "$(to-json c3.mp | head -n 1 | jq -c '.options | [.lr, .schedule, .steps, .warmup, .adam_eps]')" \
    '[0.003,"cosine",6,2,0.0001]' "the third process inherits the run's options"
[ -d c1/state-2 ] && ok || bad "--continue must leave the previous checkpoint's state in place"

# PyTorch: one AdamW over the three batches; the chained run agrees, a run whose processes
# start with fresh moments and schedule does not.
if $PY "$REFG" step pol cat.mp ref --lr 3e-3 --adam-eps 1e-4 --weight-decay 0.1 --no-decay-norms-biases \
        --schedule cosine --warmup 2 --steps 6 --groups-per-step 3 --minibatches 2 \
        --compare c3/model.safetensors --rtol 1e-4 > ref.jsonl 2> ref.err; then ok
else bad "chained run differs from PyTorch's one optimizer run: $(grep -v '^ok' ref.err | head -3)"; fi
F="--lr 3e-3 --adam-eps 1e-4 --weight-decay 0.1 --groups-per-step 3 --minibatches 2 --threads 1 -q --allow-stale"
rl-step --model pol --out f1 $F < p1.mp > /dev/null 2>&1 &&
rl-step --model f1 --out f2 $F < p2.mp > /dev/null 2>&1 &&
rl-step --model f2 --out f3 $F < p3.mp > /dev/null 2>&1 || bad "fresh-moment chain failed"
$PY "$REFG" step pol cat.mp ref2 --lr 3e-3 --adam-eps 1e-4 --weight-decay 0.1 --no-decay-norms-biases \
    --groups-per-step 3 --minibatches 2 --compare f3/model.safetensors --rtol 1e-4 > /dev/null 2>&1 \
    && bad "oracle: processes that restart AdamW passed as one optimizer run" || ok

# the FILE operand reads the same stream as stdin
rl-step --model pol --out op $O p1.mp > op.mp 2>/dev/null
expect_same c1/model.safetensors op/model.safetensors "rl-step FILE operand: the same run as stdin"
expect_rc 66 "rl-step: missing FILE" -- rl-step --model pol --out x $O nope.mp
expect_rc 64 "rl-step: two FILEs" -- rl-step --model pol --out x $O p1.mp p2.mp

# options: an explicit one overrides the run's, and is logged
rl-step --continue c1 --out o2 --lr 1e-3 --allow-stale --groups-per-step 3 --minibatches 2 --threads 1 < p2.mp > o2.mp 2> o2.err
expect_eq "$(to-json --no-frame o2.mp | jq -c 'select(.kind == "metrics") | .step' | tr '\n' ' ')" "3 4 " "override: steps continue"
grep -q 'the run had lr = 0.003' o2.err && ok || bad "an overridden option is not logged: $(head -3 o2.err)"
# a message about the model names the run's model even when --continue gave none
expect_rc 65 "--continue without --model: samples from another policy" -- rl-step --continue c1 --out x2 --threads 1 -q p1.mp
grep -q "(c1)" "$TMP/err" && ok || bad "--continue: the message names the continued run's model: $(head -c 200 "$TMP/err")"
# errors
expect_rc 66 "--continue: no checkpoint" -- rl-step --continue nowhere --out x < p1.mp
expect_err "--continue nowhere: no checkpoint" "--continue: message"
mkdir -p nostate && cp c1/model.safetensors c1/config.json nostate/
expect_rc 65 "--continue: no run state" -- rl-step --continue nostate --out x < p1.mp
expect_err "no run state" "--continue without state: message"
expect_rc 64 "--continue with --adapter" -- rl-step --continue c1 --adapter c1 --out x < p1.mp
expect_rc 64 "rl-step --epochs names --num-iterations" -- rl-step --model pol --out x --epochs 2 < p1.mp
expect_err "--num-iterations" "--epochs: message"
expect_rc 64 "sft-step --eps names --adam-eps" -- sft-step --model pol --out x --eps 0.2
expect_err "--adam-eps" "sft-step --eps: message"
rl-step --model pol --out e1 --eps 0.3 $F < p1.mp > e1.mp 2>/dev/null
expect_eq "$(to-json e1.mp | head -n 1 | jq -c '.options | [.eps_low, .eps_high]')" '[0.3,0.3]' "rl-step --eps is the symmetric clip range"

# ---------------------------------------------------------------------------------------------
# sft-step: A then --continue on B == one process on A+B (one example per step)
ARITH="$TOP/examples/arith"
init-model -q --config "$ARITH/student.json" --tokenizer "$ARITH" --out s0 --seed 3
make-task --n 12 --seed 5 > t.jsonl
head -n 5 t.jsonl | tokenize -q --tokenizer "$ARITH" > A.mp
tail -n 7 t.jsonl | tokenize -q --tokenizer "$ARITH" > B.mp
tokenize -q --tokenizer "$ARITH" < t.jsonl > AB.mp
S="--lr 3e-3 --schedule linear --warmup 3 --steps 12 --batch-tokens 40 --truncate --threads 1 -q"
sft-step --model s0 --out sab $S AB.mp > sab.mp 2> s.err &&
sft-step --model s0 --out sa $S A.mp > sa.mp 2>> s.err &&
sft-step --continue sa --out sb --batch-tokens 40 --truncate --threads 1 -q B.mp > sb.mp 2>> s.err || bad "sft-step runs: $(tail -2 s.err)"
expect_eq "$(steps sa.mp sb.mp)" "$(steps sab.mp)" "sft-step chained: step, lr, loss as one process"
expect_same sab/model.safetensors sb/model.safetensors "sft-step chained: the same weights as one process"

# a model directory without tokenizer.json: the trainer says so (its checkpoints would hold none);
# with one, every checkpoint is a complete model (tokenizer files copied, as save_pretrained does)
sft-step --model pol --out nt --steps 1 --batch-tokens 80 --truncate --threads 1 -q A.mp > /dev/null 2> nt.err
grep -q "pol has no tokenizer.json" nt.err && ok || bad "no warning for a model without tokenizer.json: $(head -c 200 nt.err)"
cp "$ARITH/tokenizer.json" "$ARITH/tokenizer_config.json" s0/ 2>/dev/null
echo '{"bos_token_id": 1, "eos_token_id": 2}' > s0/generation_config.json
sft-step --model s0 --out ck --steps 2 --save-every 1 --batch-tokens 40 --truncate --threads 1 -q A.mp > /dev/null 2>&1
for f in tokenizer.json tokenizer_config.json generation_config.json; do
    expect_same s0/$f ck/$f "checkpoint holds $f"
done

# --adapter: a LoRA run starts from an existing adapter (its weights; rank taken from it), and
# rl-step takes samples drawn from base + that adapter without --allow-stale
sft-step --model s0 --out la --lora-rank 4 --steps 2 --lr 1e-2 --batch-tokens 40 --truncate --threads 1 -q A.mp > /dev/null 2>&1
sft-step --model s0 --out lb --adapter la --lr 0 --steps 1 --batch-tokens 40 --truncate --threads 1 -q B.mp > lb.mp 2> lb.err
expect_eq "$(to-json lb.mp | jq -r 'select(.kind == "checkpoint") | .model_xxh3')" \
    "$(to-json lb.mp | head -n 1 | jq -r '.adapter_xxh3')" "--adapter: the run starts from the adapter's weights (lr 0 keeps them)"
expect_eq "$(to-json lb.mp | head -n 1 | jq -c '.options.lora_rank')" 4 "--adapter: the rank comes from the adapter"
head -n 4 t.jsonl | tokenize -q --tokenizer "$ARITH" | rollout --model s0 --adapter la -G 2 --max-new-tokens 8 --threads 1 -q \
    | score -q > la-s.mp
expect_rc 0 "rl-step takes samples from base + the adapter it starts from" -- rl-step --model s0 --adapter la --out lr1 --lr 1e-3 --threads 1 -q la-s.mp
expect_rc 65 "rl-step refuses them for another adapter" -- rl-step --model s0 --lora-rank 4 --out lr2 --lr 1e-3 --threads 1 -q la-s.mp

# ---------------------------------------------------------------------------------------------
# grpo.sh: the step counts across iterations; killed in iteration 3 and restarted, it ends with
# the same bits as an uninterrupted run.
init-model --preset tiny --tokenizer "$TOP/tests/data/tok-tiny" --out tiny --seed 7 -q
for p in a b c d; do echo "{\"id\":\"q-$p\",\"prompt\":\"$p\"}"; done > prompts.jsonl
echo '{"id":"q-a","prompt":"a"}' > held.jsonl
cat > verify.sh <<'EOF'
jq -c '(.id | split("-")[1]) as $p | ({"a":"b","b":"c","c":"d","d":"a"}[$p]) as $g | if (.text | startswith($g)) then 1 else 0 end'
EOF
grpo() {   # out [extra grpo.sh args]
    local o=$1; shift
    "$TOP/pipelines/grpo.sh" --model tiny --prompts prompts.jsonl --out "$o" --iters 4 -G 4 "$@" \
        --rollout-arg --max-new-tokens --rollout-arg 3 --rollout-arg -q --rollout-arg --threads --rollout-arg 1 \
        --score-arg --task --score-arg none --score-arg --exec --score-arg "sh $TMP/verify.sh" --score-arg -q \
        --rl-arg --lr --rl-arg 5e-3 --rl-arg --minibatches --rl-arg 2 --rl-arg --schedule --rl-arg cosine \
        --rl-arg --steps --rl-arg 8 --rl-arg --threads --rl-arg 1 --rl-arg -q
}
if grpo g1 --eval held.jsonl --eval-every 2 2> g1.err; then
    expect_eq "$(cut -f2 g1/rewards.tsv | tr '\n' ' ')" "1 3 5 7 " "grpo.sh: iteration i starts at step 2i-1"
    expect_eq "$(to-json --no-frame g1/iter-4/metrics.mp | jq -c 'select(.kind == "metrics") | .step' | tr '\n' ' ')" "7 8 " \
        "grpo.sh: the last iteration makes steps 7 and 8"
    expect_eq "$(tail -n +2 g1/curve.tsv | cut -f1,2 | tr '\t\n' ': ')" "0:0 2:4 4:8 " "grpo.sh: learning curve points"
    expect_eq "$(ls -d g1/iter-*/state-* | tr '\n' ' ')" "g1/iter-4/state-8 " "grpo.sh: only the last optimizer state is kept"
    # TRL's metric names, against figures computed from the scored samples themselves
    want=$(to-json --no-frame g1/iter-1/samples.mp | jq -s -c '[.[] | select(.kind == "sample")] as $s
        | ($s | group_by(.id) | map(map(.reward) | unique | length == 1) | map(if . then 1 else 0 end) | add / length) as $z
        | ($s | map(.rewards | to_entries[] | select(.value | type == "number")) | group_by(.key)
              | map({key: .[0].key, value: (map(.value) | add / length)}) | from_entries) as $c
        | [($s | map(.reward) | add / length), $z, $c]')
    got=$(to-json --no-frame g1/iter-1/metrics.mp | jq -s -c '[.[] | select(.kind == "metrics")][0]
        | [.reward, .frac_reward_zero_std, (to_entries | map(select(.key | test("^rewards/.*/mean$")))
              | map({key: (.key | split("/")[1]), value}) | from_entries)]')
    expect_eq "$got" "$want" "rl-step metrics: reward, frac_reward_zero_std, rewards/<name>/mean from the samples"
    [ "$(to-json --no-frame g1/iter-1/metrics.mp | jq -s '[.[] | select(.kind == "metrics")][0] | has("learning_rate") and has("completions/mean_length") and has("completions/clipped_ratio") and has("clip_ratio/low_mean")')" = true ] \
        && ok || bad "rl-step metrics: TRL's names missing"
else bad "grpo.sh failed: $(tail -n 3 g1.err)"; fi
# killed: iteration 3 half done (no DONE, a partial checkpoint), then restarted
if grpo g2 --iters 2 2> g2.err; then
    mkdir -p g2/iter-3 && cp -r g1/iter-3/config.json g2/iter-3/ && echo junk > g2/iter-3/metrics.mp
    grpo g2 2>> g2.err || bad "grpo.sh restart failed: $(tail -n 3 g2.err)"
    expect_same g1/iter-4/model.safetensors g2/iter-4/model.safetensors "grpo.sh killed and restarted: the same final weights"
    expect_same g1/iter-4/state-8/optimizer.safetensors g2/iter-4/state-8/optimizer.safetensors "grpo.sh restarted: the same moments"
else bad "grpo.sh (2 iterations) failed: $(tail -n 3 g2.err)"; fi

# grpo.sh with LoRA: two iterations train one adapter; iteration 2 samples from base + iteration
# 1's adapter (rollout --adapter), and rl-step takes those samples without --allow-stale
if grpo gl --iters 2 --lora-rank 4 2> gl.err; then
    [ -f gl/iter-2/adapter_model.safetensors ] && [ ! -f gl/iter-2/model.safetensors ] && ok \
        || bad "grpo.sh --lora-rank: iteration 2 holds no adapter (or a full model)"
    expect_eq "$(cut -f2 gl/rewards.tsv | tr '\n' ' ')" "1 3 " "grpo.sh --lora-rank: one optimizer run"
    expect_eq "$(to-json --no-frame gl/iter-2/metrics.mp | jq -s -c '[.[] | select(.kind == "metrics") | .stale] | unique')" \
        '[false]' "grpo.sh --lora-rank: iteration 2's samples come from the adapter being trained"
    a1=$(to-json gl/iter-1/metrics.mp | jq -r 'select(.kind == "checkpoint") | .model_xxh3' | tail -n 1)
    expect_eq "$(to-json gl/iter-2/samples.mp | head -n 1 | jq -r '.. | objects | select(.producer.name? == "rollout") | .adapter_xxh3' | head -n 1)" \
        "$a1" "grpo.sh --lora-rank: iteration 2 sampled with iteration 1's adapter"
else bad "grpo.sh --lora-rank failed: $(tail -n 3 gl.err)"; fi
finish
