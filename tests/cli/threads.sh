#!/usr/bin/env bash
# tests/cli/threads.sh — the default thread count (issue 15 item 8): without --threads a tool uses
# the CPUs this process may use (its affinity mask, capped by a cgroup CPU quota), unless
# BLIS_NUM_THREADS or OMP_NUM_THREADS is set; --threads wins over both. The count is read back
# from sft-step's metrics header (options.threads). Where outputs do not depend on the thread
# count (this tiny model's checkpoints, rollout and teacher-logits streams), the default gives the
# same bytes as --threads 1.
source "$(dirname "$0")/../lib.sh"
unset BLIS_NUM_THREADS OMP_NUM_THREADS OMP_THREAD_LIMIT
ARITH="$TOP/examples/arith"

# The expected default, computed apart from srlm: Python's affinity mask, capped by the quota of
# the cgroup hierarchy's root as mounted here (a container's --cpus).
cpus=$(/usr/bin/python3 -c 'import os; print(len(os.sched_getaffinity(0)))')
quota() {   # quota period -> ceil(quota/period), or nothing
    [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ && $1 -gt 0 && $2 -gt 0 ]] && echo $(( ($1 + $2 - 1) / $2 ))
}
q=
[ -r /sys/fs/cgroup/cpu.max ] && q=$(quota $(cat /sys/fs/cgroup/cpu.max))
[ -z "$q" ] && [ -r /sys/fs/cgroup/cpu/cpu.cfs_quota_us ] &&
    q=$(quota "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)" "$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)")
[ -n "$q" ] && [ "$q" -lt "$cpus" ] && cpus=$q
first_cpu=$(/usr/bin/python3 -c 'import os; print(min(os.sched_getaffinity(0)))')

cat > "$TMP/cfg.json" <<'EOF'
{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":512,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"hidden_act":"silu","max_position_embeddings":256,"rms_norm_eps":1e-6,"rope_theta":10000.0,"tie_word_embeddings":true,"eos_token_id":421}
EOF
init-model -q --config "$TMP/cfg.json" --tokenizer "$ARITH" --out "$TMP/m0" --seed 3
make-task --n 8 --seed 5 > "$TMP/train.jsonl"
tokenize -q --tokenizer "$ARITH" < "$TMP/train.jsonl" > "$TMP/s.mp"

threads_of() {   # RUN DESC ENV... -- [taskset ...]: sft-step into $TMP/oRUN; prints its header's options.threads
    local n=$1 desc=$2; shift 2
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$@" sft-step -q --model "$TMP/m0" --out "$TMP/o$n" --steps 1 --batch-tokens 300 \
        "${SFT_ARGS[@]}" "$TMP/s.mp" > "$TMP/met$n.mp" 2>"$TMP/err" || { bad "$desc: sft-step failed: $(tail -1 "$TMP/err")"; echo none; return; }
    to-json "$TMP/met$n.mp" | head -1 | jq -r .options.threads
}
SFT_ARGS=()
expect_eq "$(threads_of 1 default --)" "$cpus" "default: the CPUs this process may use"
expect_eq "$(threads_of 2 "taskset -c $first_cpu" -- taskset -c "$first_cpu")" 1 "taskset -c $first_cpu gives 1 thread"
expect_eq "$(threads_of 3 BLIS_NUM_THREADS=1 BLIS_NUM_THREADS=1 --)" 1 "BLIS_NUM_THREADS=1"
expect_eq "$(threads_of 4 OMP_NUM_THREADS=1 OMP_NUM_THREADS=1 --)" 1 "OMP_NUM_THREADS=1"
expect_eq "$(threads_of 5 "BLIS 3 over OMP 1" BLIS_NUM_THREADS=3 OMP_NUM_THREADS=1 --)" 3 "BLIS_NUM_THREADS before OMP_NUM_THREADS"
SFT_ARGS=(--threads 3)
expect_eq "$(threads_of 6 "--threads over BLIS_NUM_THREADS" BLIS_NUM_THREADS=1 --)" 3 "--threads wins over BLIS_NUM_THREADS"
expect_eq "$(threads_of 7 "--threads over taskset" -- taskset -c "$first_cpu")" 3 "--threads wins over the affinity mask"
SFT_ARGS=(--threads 1)
expect_eq "$(threads_of 8 "--threads 1" --)" 1 "--threads 1"
expect_same "$TMP/o1/model.safetensors" "$TMP/o8/model.safetensors" \
    "sft-step: default threads and --threads 1 give the same checkpoint"
expect_rc 64 "BLIS_NUM_THREADS=zero" -- env BLIS_NUM_THREADS=zero sft-step -q --model "$TMP/m0" --out "$TMP/bad" "$TMP/s.mp"
expect_err "BLIS_NUM_THREADS: invalid number" "BLIS_NUM_THREADS=zero"

# rollout and teacher-logits: the default and --threads 1 give the same bytes here.
head -n 3 "$TMP/train.jsonl" | tokenize -q --tokenizer "$ARITH" > "$TMP/p.mp"
rollout -q --model "$TMP/m0" -G 2 --max-new-tokens 12 < "$TMP/p.mp" > "$TMP/rd.mp"
rollout -q --model "$TMP/m0" -G 2 --max-new-tokens 12 --threads 1 < "$TMP/p.mp" > "$TMP/r1.mp"
expect_same "$TMP/rd.mp" "$TMP/r1.mp" "rollout: default threads and --threads 1 give the same stream"
teacher-logits -q --model "$TMP/m0" --top-k 4 < "$TMP/p.mp" > "$TMP/td.mp"
teacher-logits -q --model "$TMP/m0" --top-k 4 --threads 1 < "$TMP/p.mp" > "$TMP/t1.mp"
expect_same "$TMP/td.mp" "$TMP/t1.mp" "teacher-logits: default threads and --threads 1 give the same stream"
finish
