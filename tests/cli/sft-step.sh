# tests/cli/sft-step.sh — sft-step against a PyTorch reference of its optimizer step
# (tests/oracle/ref_train.py: CE and every KD loss, with gradient accumulation), micro-batch
# split invariance, exact --resume after SIGKILL (f32 and bf16 checkpoints), the non-finite
# guard, input checks (exit 65 naming both sides), usage and I/O errors, and pipelines/sft.sh.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
grep -q avx512f /proc/cpuinfo 2>/dev/null && export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
REF="$TOP/tests/oracle/ref_model.py"
RT="$TOP/tests/oracle/ref_train.py"
MK="$TOP/tests/oracle/mkstream.py"
ARITH="$TOP/examples/arith"
have_torch=1
$PY -c 'import torch' 2>/dev/null || { have_torch=0; bad "python3-torch missing: PyTorch comparisons skipped"; }

# A tiny qwen2 (tied, q/k/v biases) on the arith tokenizer; a second seed is the teacher.
cat > "$TMP/cfg.json" <<'EOF'
{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":512,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"hidden_act":"silu","max_position_embeddings":256,"rms_norm_eps":1e-6,"rope_theta":10000.0,"tie_word_embeddings":true,"eos_token_id":421}
EOF
init-model -q --config "$TMP/cfg.json" --tokenizer "$ARITH" --out "$TMP/m0" --seed 3
init-model -q --config "$TMP/cfg.json" --tokenizer "$ARITH" --out "$TMP/tm" --seed 7
make-task --n 24 --seed 5 > "$TMP/train.jsonl"
head -n 12 "$TMP/train.jsonl" | tokenize -q --tokenizer "$ARITH" > "$TMP/s12.mp"
tokenize -q --tokenizer "$ARITH" < "$TMP/train.jsonl" > "$TMP/s24.mp"
teacher-logits -q --model "$TMP/tm" --top-k 8 --temperature 2 < "$TMP/s12.mp" > "$TMP/t12.mp"
# single-threaded: summation order fixed (house style 9.6)
SFT=(sft-step -q --threads 1 --model "$TMP/m0")
# field of the metrics records (one line per record)
field() { to-json "$1" | grep "\"kind\":\"$2\"" | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"; }

# --- PyTorch reference: two optimizer steps of 2 micro-batches each ---------------------------
STEP=(--lr 1e-2 --adam-eps 1e-4 --weight-decay 0.1 --batch-tokens 300 --grad-accum 2 --steps 2)
ref_case() {   # name stream loss-options...: the C run now, the reference queued
    local name=$1 s=$2; shift 2
    expect_rc 0 "$name: sft-step" -- "${SFT[@]}" --out "$TMP/c-$name" "${STEP[@]}" "$@" "$s"
    cp "$TMP/out" "$TMP/c-$name.mp"
    local rargs=("$@")
    [ "${1:-}" = "--loss" ] && [ "$2" = "kd" ] && rargs=(--loss fkl "${@:3}")
    echo "sft $TMP/m0 $s $TMP/r-$name ${STEP[*]} ${rargs[*]} > $TMP/r-$name.json" >> "$TMP/ref.cmds"
    cases+=("$name")
}
ref_check() {   # one python process for every queued reference and comparison (torch is slow to import)
    [ $have_torch = 1 ] || return 0
    local name cl rl
    for name in "${cases[@]}"; do
        echo "compare $TMP/c-$name/model.safetensors $TMP/r-$name/model.safetensors --rtol 2e-5 > $TMP/cmp-$name" >> "$TMP/ref.cmds"
    done
    for name in "${pairs[@]}"; do echo "compare $name" >> "$TMP/ref.cmds"; done
    $PY "$RT" multi "$TMP/ref.cmds" 2>"$TMP/rerr" || { bad "ref_train.py failed: $(tail -2 "$TMP/rerr")"; return; }
    for name in "${cases[@]}"; do
        if grep -q '^RESULT ok' "$TMP/cmp-$name"; then ok
        else bad "$name: weights after 2 steps differ from PyTorch: $(grep -v '^ok' "$TMP/cmp-$name" | head -3)"; fi
        cl=$(field "$TMP/c-$name.mp" metrics loss | tail -1)
        rl=$(sed -n 's/.*"loss": \([^,]*\),.*/\1/p' "$TMP/r-$name.json" | tail -1)
        if $PY -c "import sys; a,b=float('$cl'),float('$rl'); sys.exit(abs(a-b) > 1e-5*max(abs(b),1e-3))"; then ok
        else bad "$name: step-2 loss $cl vs PyTorch $rl"; fi
    done
}
cases=() pairs=()
: > "$TMP/ref.cmds"
ref_case ce "$TMP/s12.mp"
ref_case fkl "$TMP/t12.mp" --loss kd --kd-temperature 2 --kd-alpha 0.3
ref_case rkl "$TMP/t12.mp" --loss rkl
ref_case jsd01 "$TMP/t12.mp" --loss jsd --kd-beta 0.1 --kd-temperature 0.5
ref_case jsd09 "$TMP/t12.mp" --loss jsd --kd-beta 0.9 --kd-alpha 0.5
expect_eq "$(field "$TMP/c-ce.mp" metrics step | tr '\n' ' ')" "1 2 " "ce: one metrics record per step"
expect_eq "$(field "$TMP/c-ce.mp" checkpoint step)" "2" "ce: final checkpoint record"
# the header: upstream, the starting model's hash, the seed
m0hash=$(init-model --from "$TMP/m0" --dry-run 2>&1 | sed -n 's/.*model_xxh3=\([0-9a-f]*\).*/\1/p')
to-json "$TMP/c-ce.mp" | head -1 > "$TMP/h.json"
grep -q "\"model_xxh3\":\"$m0hash\"" "$TMP/h.json" && grep -q '"upstream":{"kind":"header","schema":"srlm.examples"' "$TMP/h.json" \
    && grep -q '"seed":1337' "$TMP/h.json" && ok || bad "metrics header lacks upstream/model_xxh3/seed: $(head -c 300 "$TMP/h.json")"
# the checkpoint is a Hugging Face directory with the tokenizer, and its model_xxh3 is right
ck=$(field "$TMP/c-ce.mp" checkpoint model_xxh3 | tr -d '"')
outhash=$(init-model --from "$TMP/c-ce" --dry-run 2>&1 | sed -n 's/.*model_xxh3=\([0-9a-f]*\).*/\1/p')
expect_eq "$ck" "$outhash" "checkpoint record model_xxh3"
expect_same "$ARITH/tokenizer.json" "$TMP/c-ce/tokenizer.json" "tokenizer copied into --out"

# --- micro-batch split invariance: one step of all 12 records, 1 vs many micro-batches --------
expect_rc 0 "split: one micro-batch" -- "${SFT[@]}" --out "$TMP/sA" --lr 1e-2 --adam-eps 1e-4 --batch-tokens 4096 --steps 1 "$TMP/s12.mp"
cp "$TMP/out" "$TMP/sA.mp"
expect_rc 0 "split: 12 micro-batches" -- "${SFT[@]}" --out "$TMP/sB" --lr 1e-2 --adam-eps 1e-4 --batch-tokens 160 --grad-accum 12 --steps 1 "$TMP/s12.mp"
cp "$TMP/out" "$TMP/sB.mp"
expect_eq "$(field "$TMP/sB.mp" metrics records)" "12" "split: the step holds all 12 records"
expect_eq "$(field "$TMP/sA.mp" metrics tokens)" "$(field "$TMP/sB.mp" metrics tokens)" "split: same trained tokens"
la=$(field "$TMP/sA.mp" metrics loss); lb=$(field "$TMP/sB.mp" metrics loss)
$PY -c "import sys; sys.exit(abs($la-$lb) > 1e-6*abs($la))" && ok || bad "split: loss $la vs $lb"
pairs+=("$TMP/sB/model.safetensors $TMP/sA/model.safetensors --rtol 1e-5 > $TMP/cmp-split")
ref_check
if [ $have_torch = 1 ]; then
    grep -q '^RESULT ok' "$TMP/cmp-split" && ok || bad "split: weights differ: $(grep -v '^ok' "$TMP/cmp-split" | head -3)"
fi

# --- resume after SIGKILL is bit-identical ---------------------------------------------------
RUN=(--lr 5e-3 --batch-tokens 200 --save-every 2 --schedule cosine --steps 9 --warmup 2 --weight-decay 0.05)
resume_case() {   # name weights-file extra-options...
    local name=$1 wf=$2; shift 2
    "${SFT[@]}" --out "$TMP/u-$name" "${RUN[@]}" "$@" "$TMP/s24.mp" > "$TMP/u-$name.mp" 2>/dev/null
    # killed while blocked on input after the step-2 checkpoint (the stream stops after 9 records)
    to-json --no-frame "$TMP/s24.mp" | head -n 9 | $PY "$MK" srlm.examples --no-end > "$TMP/part.mp"
    rm -f "$TMP/fifo"; mkfifo "$TMP/fifo"
    (cat "$TMP/part.mp"; exec sleep 60) > "$TMP/fifo" &
    local feeder=$!
    "${SFT[@]}" --out "$TMP/k-$name" "${RUN[@]}" "$@" < "$TMP/fifo" > "$TMP/k1.mp" 2>/dev/null &
    local pid=$! i=0
    while ! to-json "$TMP/k1.mp" 2>/dev/null | grep -q '"kind":"checkpoint","step":2' && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    sleep 0.3
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    kill $feeder 2>/dev/null; wait $feeder 2>/dev/null
    [ -d "$TMP/k-$name/state-2" ] && ok || bad "$name: no step-2 checkpoint before the kill"
    expect_rc 0 "$name: --resume" -- "${SFT[@]}" --out "$TMP/k-$name" "${RUN[@]}" "$@" --resume "$TMP/s24.mp"
    expect_eq "$(field "$TMP/out" metrics step | head -1)" "3" "$name: resumed at step 3"
    expect_same "$TMP/u-$name/$wf" "$TMP/k-$name/$wf" "$name: resumed model vs uninterrupted"
    expect_same "$TMP/u-$name/state-9/optimizer.safetensors" "$TMP/k-$name/state-9/optimizer.safetensors" "$name: optimizer state"
    # a kill at a random moment (maybe while saving) also resumes exactly
    "${SFT[@]}" --out "$TMP/x-$name" "${RUN[@]}" "$@" --save-every 1 "$TMP/s24.mp" > /dev/null 2>&1 &
    pid=$!
    sleep 0.$((RANDOM % 6 + 1)); kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    expect_rc 0 "$name: --resume after a random kill" -- "${SFT[@]}" --out "$TMP/x-$name" "${RUN[@]}" "$@" --save-every 1 --resume "$TMP/s24.mp"
    expect_same "$TMP/u-$name/$wf" "$TMP/x-$name/$wf" "$name: random kill: model"
    [ "$(ls -d "$TMP/x-$name"/state-* | wc -l)" = 1 ] && ok || bad "$name: stale state directories left"
}
resume_case f32 model.safetensors
resume_case bf16 model.safetensors --save-dtype bf16
resume_case lora adapter_model.safetensors --lora-rank 4 --lora-targets q,v,down
# a finished run resumed does nothing
expect_rc 0 "resume a finished run" -- "${SFT[@]}" --out "$TMP/u-f32" "${RUN[@]}" --resume "$TMP/s24.mp"
expect_eq "$(field "$TMP/out" metrics step | wc -l)" "0" "finished run: no more steps"
# killed after the last checkpoint but before the older run state was removed: resuming the
# finished run removes it (this was a flaky "stale state directories left" in the random kills)
cp -r "$TMP/u-f32/state-9" "$TMP/u-f32/state-8"
expect_rc 0 "resume a finished run with a stale state" -- "${SFT[@]}" --out "$TMP/u-f32" "${RUN[@]}" --resume "$TMP/s24.mp"
[ "$(ls -d "$TMP/u-f32"/state-* | tr '\n' ' ')" = "$TMP/u-f32/state-9 " ] && ok || bad "stale state-8 kept: $(ls "$TMP/u-f32")"

# --- epochs: a file is re-read; a pipe cannot be --------------------------------------------
expect_rc 0 "--epochs 2" -- "${SFT[@]}" --out "$TMP/ep" --batch-tokens 4096 --epochs 2 "$TMP/s12.mp"
expect_eq "$(field "$TMP/out" metrics epoch | tr '\n' ' ')" "0 1 " "--epochs 2: one step per epoch"
expect_rc 0 "--epochs 2 from < file" -- "${SFT[@]}" --out "$TMP/ep2" --batch-tokens 4096 --epochs 2 < "$TMP/s12.mp"
expect_eq "$(field "$TMP/out" metrics step | tail -1)" "2" "--epochs 2 from stdin file"
expect_rc 64 "--epochs 2 from a pipe" -- sh -c "cat '$TMP/s12.mp' | ${SFT[*]} --out '$TMP/ep3' --epochs 2"
expect_err "regular file" "--epochs on a pipe: message"
expect_rc 0 "cosine counts the steps of a file" -- "${SFT[@]}" --out "$TMP/cos" --schedule cosine --batch-tokens 400 --epochs 2 "$TMP/s12.mp"
expect_eq "$(field "$TMP/out" metrics learning_rate | tail -1)" "0.0" "cosine: lr reaches --min-lr at the last step"

# --- non-finite loss: exit 70, nothing written ----------------------------------------------
# weights of scale 1e18 overflow the attention scores to inf (finite weights, so the model loads)
cp -r "$TMP/m0" "$TMP/huge"
if $PY - "$TMP/huge/model.safetensors" <<'PYEOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
for k, t in h.items():
    if k == "__metadata__" or not k.endswith("proj.weight"):
        continue
    s, e = t["data_offsets"]
    vals = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
    b[8 + n + s:8 + n + e] = struct.pack("<%df" % len(vals), *[v * 1e18 for v in vals])
open(sys.argv[1], "wb").write(b)
PYEOF
then
    cp -r "$TMP/c-ce" "$TMP/keep"
    expect_rc 70 "non-finite loss" -- sft-step -q --model "$TMP/huge" --out "$TMP/c-ce" --save-every 1 "$TMP/s12.mp"
    expect_err "step 1: non-finite loss" "non-finite: message"
    expect_same "$TMP/keep/model.safetensors" "$TMP/c-ce/model.safetensors" "non-finite: previous checkpoint intact"
    expect_same "$TMP/keep/state-2/optimizer.safetensors" "$TMP/c-ce/state-2/optimizer.safetensors" "non-finite: previous state intact"
else bad "init-model of the huge model failed"; fi

# --- usage errors: 64 ------------------------------------------------------------------------
expect_rc 64 "--lr abc" -- sft-step --model "$TMP/m0" --out "$TMP/o" --lr abc "$TMP/s12.mp"
expect_rc 64 "unknown option" -- sft-step --model "$TMP/m0" --out "$TMP/o" --bogus "$TMP/s12.mp"
expect_rc 64 "missing --out" -- sft-step --model "$TMP/m0" "$TMP/s12.mp"
expect_rc 64 "--loss xyz" -- sft-step --model "$TMP/m0" --out "$TMP/o" --loss xyz "$TMP/s12.mp"
expect_rc 64 "--kd-beta without jsd" -- sft-step --model "$TMP/m0" --out "$TMP/o" --loss kd --kd-beta 0.3 "$TMP/t12.mp"
expect_rc 64 "--kd-alpha without --loss kd" -- sft-step --model "$TMP/m0" --out "$TMP/o" --kd-alpha 0.3 "$TMP/s12.mp"
expect_rc 64 "--max-len over --batch-tokens" -- sft-step --model "$TMP/m0" --out "$TMP/o" --batch-tokens 64 --max-len 128 "$TMP/s12.mp"
expect_rc 64 "cosine on a pipe without --steps" -- sh -c "cat '$TMP/s12.mp' | sft-step --model '$TMP/m0' --out '$TMP/o' --schedule cosine"
expect_rc 64 "--lora-alpha without --lora-rank" -- sft-step --model "$TMP/m0" --out "$TMP/o" --lora-alpha 8 "$TMP/s12.mp"
expect_rc 64 "bad --lora-targets" -- sft-step --model "$TMP/m0" --out "$TMP/o" --lora-rank 2 --lora-targets qq "$TMP/s12.mp"
expect_rc 64 "--warmup over --steps" -- sft-step --model "$TMP/m0" --out "$TMP/o" --steps 2 --warmup 3 "$TMP/s12.mp"

# --- bad streams: 65 -------------------------------------------------------------------------
to-json --no-frame "$TMP/s12.mp" > "$TMP/recs.jsonl"
$PY "$MK" srlm.examples --no-end < "$TMP/recs.jsonl" > "$TMP/noend.mp"
expect_rc 65 "missing end record" -- "${SFT[@]}" --out "$TMP/o" "$TMP/noend.mp"
expect_err "end" "missing end: message"
expect_rc 65 "wrong schema" -- "${SFT[@]}" --out "$TMP/o" "$TMP/c-ce.mp"
expect_err "srlm.metrics" "wrong schema: message"
sed '3s/"tokens":\[\([0-9]*\),/"tokens":[\1,600,/; 3s/"mask":\[0,/"mask":[0,0,/' "$TMP/recs.jsonl" | $PY "$MK" srlm.examples > "$TMP/oor.mp"
expect_rc 65 "token out of range" -- "${SFT[@]}" --out "$TMP/o" "$TMP/oor.mp"
expect_err "token id 600 out of range" "out of range: message"
expect_err "512 embedding rows" "out of range: names the model side"
expect_err "vocab_size" "out of range: names the stream side"
to-json "$TMP/s12.mp" | sed '1s/"tokenizer_xxh3":"[0-9a-f]*"/"tokenizer_xxh3":"0123456789abcdef"/' | from-json > "$TMP/othertok.mp"
expect_rc 65 "tokenizer mismatch" -- "${SFT[@]}" --out "$TMP/o" "$TMP/othertok.mp"
expect_err "0123456789abcdef" "tokenizer mismatch: names the stream's"
expect_err "$(sed -n 's/.*"tokenizer_xxh3":"\([0-9a-f]*\)".*/\1/p' "$TMP/h.json" | head -c 16)" "tokenizer mismatch: names the model's"
to-json "$TMP/t12.mp" | sed '1s/"teacher":{\(.*\)"tokenizer_xxh3":"[0-9a-f]*"/"teacher":{\1"tokenizer_xxh3":"fedcba9876543210"/' | from-json > "$TMP/tothertok.mp"
expect_rc 65 "teacher tokenizer mismatch" -- "${SFT[@]}" --out "$TMP/o" --loss kd "$TMP/tothertok.mp"
expect_err "fedcba9876543210" "teacher tokenizer mismatch: names the teacher's"
expect_rc 65 "--loss kd without teacher" -- "${SFT[@]}" --out "$TMP/o" --loss kd "$TMP/s12.mp"
expect_err "teacher-logits" "--loss kd without teacher: hint"
expect_rc 65 "record longer than --max-len" -- "${SFT[@]}" --out "$TMP/o" --max-len 20 "$TMP/s12.mp"
expect_rc 0 "--truncate" -- "${SFT[@]}" --out "$TMP/o" --max-len 20 --truncate --loss kd "$TMP/t12.mp"
sed '2s/"mask":\[0,/"mask":[1,/' "$TMP/recs.jsonl" | $PY "$MK" srlm.examples > "$TMP/mask0.mp"
expect_rc 65 "mask[0] = 1" -- "${SFT[@]}" --out "$TMP/o" "$TMP/mask0.mp"

# --- output errors ---------------------------------------------------------------------------
expect_rc 74 "stdout is /dev/full" -- sh -c "${SFT[*]} --out '$TMP/o' '$TMP/s12.mp' > /dev/full"
: > "$TMP/afile"
expect_rc 73 "unwritable --out" -- "${SFT[@]}" --out "$TMP/afile/sub" "$TMP/s12.mp"
expect_rc 66 "missing model" -- sft-step --model "$TMP/nope" --out "$TMP/o" "$TMP/s12.mp"
expect_rc 66 "missing input file" -- "${SFT[@]}" --out "$TMP/o" "$TMP/nope.mp"

# --- pipelines/sft.sh reduces the loss -------------------------------------------------------
if PATH="$TOP/bin:$PATH" "$TOP/pipelines/sft.sh" "$TMP/m0" "$TMP/train.jsonl" "$TMP/pipe" \
        --lr 3e-3 --batch-tokens 512 --epochs 3 --threads 1 -q > "$TMP/pipe.log" 2>&1; then
    first=$(field "$TMP/pipe/metrics.mp" metrics loss | head -1); last=$(field "$TMP/pipe/metrics.mp" metrics loss | tail -1)
    $PY -c "import sys; sys.exit(not $last < $first - 0.5)" && ok || bad "pipelines/sft.sh: loss $first -> $last"
else bad "pipelines/sft.sh failed: $(tail -3 "$TMP/pipe.log")"; fi
# --- pipelines/kd.sh reduces the distillation loss ------------------------------------------
if PATH="$TOP/bin:$PATH" TOP_K=16 "$TOP/pipelines/kd.sh" "$TMP/tm" "$TMP/m0" "$TMP/train.jsonl" "$TMP/kdp" \
        --kd rkl --lr 3e-3 --batch-tokens 512 --epochs 3 --threads 1 -q > "$TMP/kdp.log" 2>&1; then
    first=$(field "$TMP/kdp/metrics.mp" metrics loss | head -1); last=$(field "$TMP/kdp/metrics.mp" metrics loss | tail -1)
    $PY -c "import sys; sys.exit(not $last < 0.7 * $first)" && ok || bad "pipelines/kd.sh: loss $first -> $last"
else bad "pipelines/kd.sh failed: $(tail -3 "$TMP/kdp.log")"; fi
finish
