# tests/cli/mpi.sh — the tools across Open MPI ranks (issue 12; docs/scaling.md), on this one
# machine with mpirun --oversubscribe:
# - sft-step (CE and KD, full and LoRA) and rl-step (with a reference model) under 2 and 3 ranks
#   make the steps of one process: the weights after several steps agree (ref_model.py compare;
#   only the sums over ranks are ordered differently), and the per-step losses too;
# - a fixed rank count is bitwise reproducible;
# - rollout and teacher-logits write byte-identical streams under 1, 2 and 3 ranks;
# - faults: ranks given different options, a rank that cannot read the model, a rank that loads
#   other weights, a bad record (reported once), and a rank killed mid-run: each ends the whole
#   job with the documented status, never a hang (every run is under `timeout`), the last
#   checkpoint stays intact, and --resume under another rank count carries on to the weights of
#   an uninterrupted run.
. "$(dirname "$0")/../lib.sh"
need_torch msgpack
command -v mpirun >/dev/null || { bad "mpirun missing (make check installs openmpi-bin)"; finish; exit 1; }
cd "$TMP"
# as root (CI) mpirun needs the flag; -q: no launcher banner after a tool's own error line;
# no single-copy transfers between ranks (cross-memory attach needs ptrace rights that
# containers often withhold; Open MPI then copies through shared memory instead)
MPI=(mpirun -q --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
ARITH="$TOP/examples/arith"

cat > cfg.json <<'EOF'
{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":512,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"hidden_act":"silu","max_position_embeddings":256,"rms_norm_eps":1e-6,"rope_theta":10000.0,"tie_word_embeddings":true,"eos_token_id":421}
EOF
init-model -q --config cfg.json --tokenizer "$ARITH" --out m0 --seed 3
init-model -q --config cfg.json --tokenizer "$ARITH" --out tm --seed 7
make-task --n 24 --seed 5 > train.jsonl
tokenize -q --tokenizer "$ARITH" < train.jsonl > s24.mp
teacher-logits -q --model tm --top-k 8 --temperature 2 < s24.mp > t24.mp

# weights A agree with the one-process weights B (names: tensors of model or adapter files)
agree() {   # desc A B
    if $PY "$REF" compare "$2" "$3" --rtol 1e-4 --atol 1e-6 > cmp.out 2>&1; then ok
    else bad "$1: weights differ: $(grep -v '^ok' cmp.out | head -3)"; fi
}
# the metrics stream's per-step losses agree to 1e-6 relative
losses() { to-json "$1" | grep '"kind":"metrics"' | sed -n 's/.*"loss":\([^,}]*\).*/\1/p'; }
same_losses() {   # desc A.mp B.mp
    local a b
    a=$(losses "$2") b=$(losses "$3")
    if [ -n "$a" ] && [ "$(wc -l <<<"$a")" = "$(wc -l <<<"$b")" ] &&
       paste <(echo "$a") <(echo "$b") | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-6 * ($2 < 0 ? -$2 : $2) + 1e-9) exit 1 }'
    then ok; else bad "$1: per-step losses differ: $(echo $a | head -c 120) vs $(echo $b | head -c 120)"; fi
}
moved() {   # desc DIR: the run changed the weights
    local h0 h
    h0=$(init-model --from m0 -n 2>&1 | sed -n 's/.*model_xxh3=\([0-9a-f]*\).*/\1/p')
    h=$(init-model --from "$2" -n 2>&1 | sed -n 's/.*model_xxh3=\([0-9a-f]*\).*/\1/p')
    if [ -n "$h" ] && [ "$h" != "$h0" ]; then ok; else bad "$1: the weights did not change ($h)"; fi
}

# --- sft-step: N ranks make the steps of one process ----------------------------------------
# grad-accum 6: every rank has micro-batches; AdamW eps 1e-4 as in sft-step.sh (a rounding-level
# gradient must not become a full step of random sign)
S=(sft-step -q --threads 1 --model m0 --lr 1e-2 --adam-eps 1e-4 --weight-decay 0.1 --batch-tokens 130 --grad-accum 6 --steps 3)
sft_case() {   # name files... -- options
    local name=$1; shift
    expect_rc 0 "$name: one process" -- "${S[@]}" --out "$name-1" "$@" "$stream"
    cp out "$name-1.mp"
    for n in 2 3; do
        expect_rc 0 "$name: $n ranks" -- "${MPI[@]}" -np "$n" "${S[@]}" --out "$name-$n" "$@" "$stream"
        cp out "$name-$n.mp"
        agree "$name: $n ranks" "$name-$n/$file" "$name-1/$file"
        same_losses "$name: $n ranks" "$name-$n.mp" "$name-1.mp"
    done
}
stream=s24.mp file=model.safetensors sft_case ce
moved "ce" ce-2
stream=t24.mp file=model.safetensors sft_case kd --loss kd --kd-alpha 0.3 --kd-temperature 2
stream=s24.mp file=adapter_model.safetensors sft_case lora --lora-rank 4 --lora-targets q,v,down
stream=t24.mp file=adapter_model.safetensors sft_case lora-kd --loss rkl --lora-rank 2

# ZeRO stage 1 (the AdamW moments sharded over the ranks, the default) makes the bits of whole
# moments on every rank (SRLM_ZERO=0): weights, and the moments gathered into the checkpoints
Z=(--save-every 2 --steps 3)
for n in 2 3; do
    expect_rc 0 "zero: $n ranks" -- "${MPI[@]}" -np "$n" "${S[@]}" --out z-$n "${Z[@]}" s24.mp
    expect_rc 0 "zero off: $n ranks" -- env SRLM_ZERO=0 "${MPI[@]}" -np "$n" "${S[@]}" --out nz-$n "${Z[@]}" s24.mp
    for f in model.safetensors state-3/optimizer.safetensors checkpoint-2/state-2/optimizer.safetensors; do
        expect_same z-$n/$f nz-$n/$f "zero against whole moments, $n ranks: $f"
    done
done
expect_rc 0 "zero: resumed from step 2 under 3 ranks" -- sh -c "rm -rf z-r && cp -r z-2/checkpoint-2 z-r && $(printf '%q ' "${MPI[@]}") -np 3 $(printf '%q ' "${S[@]}") --out z-r --resume ${Z[*]} s24.mp"
agree "zero: resumed under 3 ranks" z-r/model.safetensors z-2/model.safetensors

# a fixed rank count is bitwise reproducible; the stream rank 0 writes has every step
expect_rc 0 "ce: 2 ranks again" -- "${MPI[@]}" -np 2 "${S[@]}" --out ce-2b s24.mp
expect_same ce-2/model.safetensors ce-2b/model.safetensors "2 ranks twice: checkpoints"
n=$(to-json ce-2.mp | grep -c '"kind":"metrics"')
expect_eq "$n" 3 "2 ranks: metrics records on stdout"
to-json ce-2.mp | tail -n 1 | grep -q '"kind":"end"' && ok || bad "2 ranks: the metrics stream has no end record"
# stdin as input, and one rank (mpirun -np 1) is the plain tool
expect_rc 0 "ce: 2 ranks from stdin" -- sh -c "$(printf '%q ' "${MPI[@]}") -np 2 $(printf '%q ' "${S[@]}") --out ce-2c < s24.mp"
expect_same ce-2/model.safetensors ce-2c/model.safetensors "2 ranks: stdin and FILE"
# --epochs re-reads FILE (rank 0 reopens it; the ranks see each pass); mpirun turns < FILE into
# a pipe, which cannot be re-read: 64
E=(sft-step -q --threads 1 --model m0 --lr 1e-2 --adam-eps 1e-4 --batch-tokens 300 --grad-accum 4 --epochs 2 --schedule cosine)
expect_rc 0 "epochs: one process" -- "${E[@]}" --out ep-1 s24.mp
expect_rc 0 "epochs: 2 ranks" -- "${MPI[@]}" -np 2 "${E[@]}" --out ep-2 s24.mp
agree "epochs: 2 ranks" ep-2/model.safetensors ep-1/model.safetensors
expect_rc 64 "epochs: 2 ranks from a pipe" -- sh -c "$(printf '%q ' "${MPI[@]}") -np 2 $(printf '%q ' "${E[@]}") --out ep-3 < s24.mp"
expect_err "regular file" "epochs from a pipe: message"
expect_rc 0 "ce: mpirun -np 1" -- "${MPI[@]}" -np 1 "${S[@]}" --out ce-1b s24.mp
expect_same ce-1/model.safetensors ce-1b/model.safetensors "mpirun -np 1: the one-process bits"

# --- rl-step ---------------------------------------------------------------------------------
echo '{"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":61,"max_position_embeddings":64,"rope_theta":10000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"hidden_act":"silu"}' > llama.json
$PY "$REF" init llama.json pol --seed 11 --std 0.2 --randomize-all >/dev/null &&
$PY "$REF" init llama.json ref --seed 12 --std 0.2 --randomize-all >/dev/null || bad "rl-step: model init failed"
hash=$(init-model --from pol -n 2>&1 | sed -n 's/.*model_xxh3=\([0-9a-f]*\).*/\1/p')
$PY "$TOP/tests/oracle/ref_grpo.py" mkbatch pol b8.mp --model-xxh3 "$hash" --groups 8 --G 3 --seed 6 || bad "rl-step: batch failed"
# --max-tokens 16: each minibatch is several micro-batches (dealt over the ranks)
RL=(rl-step -q --threads 1 --model pol --lr 2e-3 --adam-eps 1e-4 --groups-per-step 4 --minibatches 2
    --num-iterations 2 --max-tokens 16 --beta 0.1 --ref ref)
expect_rc 0 "rl-step: one process" -- "${RL[@]}" --out rl-1 b8.mp
cp out rl-1.mp
for n in 2 3; do
    expect_rc 0 "rl-step: $n ranks" -- "${MPI[@]}" -np "$n" "${RL[@]}" --out rl-$n b8.mp
    cp out rl-$n.mp
    agree "rl-step: $n ranks" rl-$n/model.safetensors rl-1/model.safetensors
    same_losses "rl-step: $n ranks" rl-$n.mp rl-1.mp
    # the step's figures are the job's, not rank 0's share
    for f in kl entropy clip_ratio/low_mean; do
        a=$(to-json rl-$n.mp | grep '"kind":"metrics"' | head -n 1 | sed -n "s|.*\"$f\":\([^,}]*\).*|\1|p")
        b=$(to-json rl-1.mp | grep '"kind":"metrics"' | head -n 1 | sed -n "s|.*\"$f\":\([^,}]*\).*|\1|p")
        awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-6 * (b < 0 ? -b : b) + 1e-9) }' \
            && ok || bad "rl-step: $n ranks: $f $a, one process $b"
    done
done

# --- rollout and teacher-logits: the same bytes under any rank count -------------------------
make-task --n 13 --seed 9 | tokenize -q --tokenizer "$ARITH" > p13.mp
RO=(rollout -q --threads 1 --model m0 -G 3 --max-new-tokens 12 --seed 4 --temperature 1.2 --max-batch 4)
expect_rc 0 "rollout: one process" -- "${RO[@]}" p13.mp
cp out ro-1.mp
TL=(teacher-logits -q --threads 1 --model tm --top-k 5 --batch-tokens 200)
expect_rc 0 "teacher-logits: one process" -- "${TL[@]}" s24.mp
cp out tl-1.mp
for n in 2 3; do
    expect_rc 0 "rollout: $n ranks" -- "${MPI[@]}" -np "$n" "${RO[@]}" p13.mp
    expect_same out ro-1.mp "rollout: $n ranks"
    expect_rc 0 "teacher-logits: $n ranks" -- "${MPI[@]}" -np "$n" "${TL[@]}" s24.mp
    expect_same out tl-1.mp "teacher-logits: $n ranks"
done
# more ranks than prompts (some ranks have none)
make-task --n 2 --seed 1 | tokenize -q --tokenizer "$ARITH" > p2.mp
expect_rc 0 "rollout: one process, 2 prompts" -- "${RO[@]}" p2.mp
cp out ro2-1.mp
expect_rc 0 "rollout: 3 ranks, 2 prompts" -- "${MPI[@]}" -np 3 "${RO[@]}" p2.mp
expect_same out ro2-1.mp "rollout: 3 ranks, 2 prompts"

# --- the pipelines take the launcher from MPIRUN ---------------------------------------------
launcher="$(printf '%q ' "${MPI[@]}")-np 2"
expect_rc 0 "sft.sh, one process" -- "$TOP/pipelines/sft.sh" m0 train.jsonl sft1 --threads 1 --steps 2 --lr 1e-2 --adam-eps 1e-4 --grad-accum 2 --batch-tokens 200 -q
expect_rc 0 "sft.sh under MPIRUN" -- env MPIRUN="$launcher" "$TOP/pipelines/sft.sh" m0 train.jsonl sft2 --threads 1 --steps 2 --lr 1e-2 --adam-eps 1e-4 --grad-accum 2 --batch-tokens 200 -q
agree "sft.sh under MPIRUN" sft2/model.safetensors sft1/model.safetensors
init-model --preset tiny --tokenizer "$TOP/tests/data/tok-tiny" --out tiny --seed 7 -q
for p in a b c d; do echo "{\"id\":\"q-$p\",\"prompt\":\"$p\"}"; done > prompts.jsonl
cat > verify.sh <<'EOF'
jq -c '(.id | split("-")[1]) as $p | ({"a":"b","b":"c","c":"d","d":"a"}[$p]) as $g | if (.text | startswith($g)) then 1 else 0 end'
EOF
grpo() {   # out
    "$TOP/pipelines/grpo.sh" --model tiny --prompts prompts.jsonl --out "$1" --iters 2 -G 4 \
        --rollout-arg --max-new-tokens --rollout-arg 3 --rollout-arg -q --rollout-arg --threads --rollout-arg 1 \
        --score-arg --task --score-arg none --score-arg --exec --score-arg "sh $TMP/verify.sh" --score-arg -q \
        --rl-arg --lr --rl-arg 5e-3 --rl-arg --adam-eps --rl-arg 1e-4 --rl-arg --minibatches --rl-arg 2 \
        --rl-arg --threads --rl-arg 1 --rl-arg -q --rl-arg --max-tokens --rl-arg 16
}
if grpo g1 2> g1.err && MPIRUN="$launcher" grpo g2 2> g2.err; then
    expect_same g1/iter-1/samples.mp g2/iter-1/samples.mp "grpo.sh under MPIRUN: iteration 1's samples"
    agree "grpo.sh under MPIRUN: iteration 1's weights" g2/iter-1/model.safetensors g1/iter-1/model.safetensors
    expect_eq "$(wc -l < g2/rewards.tsv)" 2 "grpo.sh under MPIRUN: both iterations"
else bad "grpo.sh: $(tail -n 2 g1.err) $(tail -n 2 g2.err)"; fi

# --- faults ----------------------------------------------------------------------------------
# one job, one set of options: ranks started with different ones (MPMD) end it, 64
expect_rc 64 "ranks with different options" -- "${MPI[@]}" -np 1 "${S[@]}" --out f1 s24.mp : -np 1 "${S[@]}" --out f1 --lr 1e-3 s24.mp
expect_err "differs between ranks" "different options: message"
# a rank that cannot read the model (another working directory, where --model is missing): 66
mkdir -p elsewhere
expect_rc 66 "a rank without the model" -- "${MPI[@]}" -np 1 --wdir "$TMP" "${S[@]}" --out "$TMP/f2" "$TMP/s24.mp" : \
    -np 1 --wdir "$TMP/elsewhere" "${S[@]}" --out "$TMP/f2" "$TMP/s24.mp"
expect_err "rank 1: " "a rank without the model: the rank is named"
expect_err "m0" "a rank without the model: the model is named"
# a rank that loads other weights under the same path: 65, before any step
mkdir -p other && init-model -q --config cfg.json --tokenizer "$ARITH" --out other/m0 --seed 4
expect_rc 65 "a rank with other weights" -- "${MPI[@]}" -np 1 --wdir "$TMP" "${S[@]}" --out "$TMP/f3" "$TMP/s24.mp" : \
    -np 1 --wdir "$TMP/other" "${S[@]}" --out "$TMP/f3" "$TMP/s24.mp"
expect_err "starting weights" "other weights: message"
[ -e f3/model.safetensors ] && bad "other weights: a checkpoint was written" || ok
# a bad record: 65, and the reason once (every rank meets it; rank 0 reports)
head -c $(($(stat -c %s s24.mp) - 40)) s24.mp > bad.mp   # cut inside a record
expect_rc 65 "a bad record" -- "${MPI[@]}" -np 3 "${S[@]}" --out f4 bad.mp
n=$(grep -c 'bad.mp' err)
expect_eq "$n" 1 "a bad record: reported once"
# usage errors: 64 with the usual message
expect_rc 64 "a bad flag" -- "${MPI[@]}" -np 2 sft-step --model m0 --out f5 --lr abc s24.mp
expect_err "--lr" "a bad flag: message"

# a rank killed mid-run: the job ends (no hang), the checkpoint is intact, and --resume under
# other rank counts ends where an uninterrupted run ends
make-task --n 200 --seed 8 | tokenize -q --tokenizer "$ARITH" > s200.mp
K=(sft-step -q --threads 1 --model m0 --lr 1e-3 --adam-eps 1e-4 --batch-tokens 200 --grad-accum 2 --save-every 1)
"${K[@]}" --out k-ref s200.mp > /dev/null 2>&1 || bad "kill: the uninterrupted run failed"
timeout 120 "${MPI[@]}" -np 2 "${K[@]}" --out k-run s200.mp > k.mp 2> k.err &
job=$!
victim=
for _ in $(seq 1 1000); do
    if [ -z "$victim" ]; then
        for d in /proc/[0-9]*; do   # (no pgrep: procps is not on a minimal system)
            p=${d#/proc/}
            c=; { read -r c < "$d/comm"; } 2>/dev/null
            [ "$c" = sft-step ] || continue
            { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' &&
                grep -q k-run "/proc/$p/cmdline" 2>/dev/null && victim=$p
        done
    fi
    [ -n "$victim" ] && [ -e k-run/model.safetensors ] && break
    sleep 0.01
done
if [ -n "$victim" ] && kill -0 "$job" 2>/dev/null; then
    kill -9 "$victim"
    rc=0; wait "$job" || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] && ok || bad "kill: mpirun status $rc (124: it hung)"
    init-model --from k-run -n > /dev/null 2>&1 && ok || bad "kill: the checkpoint in k-run does not load"
    cp -r k-run k-run3
    expect_rc 0 "kill: --resume with 1 process" -- "${K[@]}" --out k-run --resume s200.mp
    agree "kill: resumed with 1 process" k-run/model.safetensors k-ref/model.safetensors
    expect_rc 0 "kill: --resume with 3 ranks" -- "${MPI[@]}" -np 3 "${K[@]}" --out k-run3 --resume s200.mp
    agree "kill: resumed with 3 ranks" k-run3/model.safetensors k-ref/model.safetensors
    first=$(to-json out | grep '"kind":"metrics"' | head -n 1 | sed -n 's/.*"step":\([0-9]*\).*/\1/p')
    [ -n "$first" ] && [ "$first" -gt 1 ] && ok || bad "kill: the resumed run started again at step ${first:-none}"
else
    wait "$job"
    bad "kill: no rank 1 found or the run ended before it could be killed (victim=$victim)"
fi
finish
