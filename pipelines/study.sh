#!/usr/bin/env bash
# study.sh — the main job: the study of Zhuang et al. (2025) on the embedded arithmetic task.
# Like the paper, which post-trains a base model and its Instruct version, it post-trains two
# starting students: "base" (a short supervised warm-up, weak) and "instruct" (the base given more
# supervised warm-up on a disjoint split of problems, stronger). From each, every method runs:
# SFT (full and LoRA), logit KD and sequence-level KD from a larger teacher, GRPO, and the hybrids
# SFT→GRPO and KD→GRPO. Every model is evaluated on the held-out split (greedy pass@1, pass@k and
# maj@k with 95% intervals); every GRPO run also records a learning curve (held-out greedy pass@1
# every few iterations). A report is written: OUT/report.md, OUT/results.csv, OUT/curves.csv,
# OUT/stages.csv and PNG plots.
#
# usage: pipelines/study.sh [OUT]          (default OUT: runs/study)
#
# Environment:
#   SCALE=N     multiply data sizes and training steps (default 1: about 15 minutes on 2 cores)
#   THREADS=N   threads per tool (default 2)
#   SEED=N      seed for data, initialisation and sampling (default 1337)
#   K=N         samples per test prompt for pass@k / maj@k (default 4)
#   TASK_ARGS   make-task difficulty (default "--steps 1-2 --max-operand 5 --max-value 20", which a
#               0.85M-parameter student learns to ~40% in 150 steps; "--steps 2-4" is make-task's
#               harder default and needs SCALE >= 4)
#   the sizes below (N_TRAIN, SFT_STEPS, RL_ITERS, RL_LR, ...) may be set too.
# Every number in the report is measured by the run; the same SEED gives the same report up to
# timings. Finished stages are kept (OUT/<stage>.done), so a killed run resumes where it stopped.
# Exit status: 0 done (the report's path on stdout), 64 a bad variable, else the status of the
# stage that failed (see that tool's --help).
# MPIRUN: a launcher for the model stages, e.g. MPIRUN="mpirun -q -np 4 --hostfile hosts"
# (docs/scaling.md); unset: one process each.
set -euo pipefail
read -r -a mpi <<< "${MPIRUN:-}"
case ${1:-} in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$here/bin:$here/pipelines:$PATH"
OUT=${1:-runs/study}
SCALE=${SCALE:-1} THREADS=${THREADS:-2} SEED=${SEED:-1337} K=${K:-4}
export THREADS SEED
# OpenMP threads that spin while waiting collapse throughput when another process shares the
# cores (docs/performance.md); libgomp reads this at start-up, so it is set here for every tool.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
for v in SCALE THREADS SEED K; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "study.sh: $v must be a positive integer" >&2; exit 64; }; done
mkdir -p "$OUT"
T0=$SECONDS
log() { printf 'study: [%4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }

# Sizes (each may also be set in the environment). The student learns the task in a few hundred
# steps; the teacher gets more.
: "${N_TRAIN:=$((2000 * SCALE))}" "${N_TEST:=$((200 * SCALE))}" "${N_WARM:=$((1000 * SCALE))}"
: "${BASE_STEPS:=$((40 * SCALE))}"       # "base": a weak start every method improves on
: "${INSTRUCT_STEPS:=$((60 * SCALE))}"   # "instruct": base + this much SFT on the disjoint split
: "${SFT_STEPS:=$((150 * SCALE))}" "${TEACHER_STEPS:=$((300 * SCALE))}"
: "${BATCH_TOKENS:=2048}" "${WARMUP:=10}"
: "${TASK_ARGS:=--steps 1-2 --max-operand 5 --max-value 20}"
# GRPO (docs/rl.md, "The study's recipe", and the sweep that chose it): one optimizer run over
# RL_ITERS rollout iterations of RL_PROMPTS prompts x G samples at RL_TEMPERATURE, each rollout
# batch split into RL_MINIBATCHES optimizer steps, so GRPO gets RL_ITERS x RL_MINIBATCHES steps
# (at least SFT_STEPS). Peak learning rate RL_LR_START for GRPO from a starting student,
# RL_LR after SFT or KD (a freshly fine-tuned student is hurt by larger steps; the weak base
# hardly moves with smaller ones); linear warm-up, cosine decay to a tenth.
: "${N_RL:=$((256 * SCALE))}" "${RL_PROMPTS:=32}" "${G:=8}"
: "${RL_MINIBATCHES:=4}" "${RL_ITERS:=$(( (SFT_STEPS + RL_MINIBATCHES - 1) / RL_MINIBATCHES ))}"
: "${RL_LR_START:=3e-4}" "${RL_LR:=1e-4}" "${RL_WARMUP:=8}" "${RL_TEMPERATURE:=0.7}"
: "${RL_EVAL_EVERY:=$(( RL_ITERS / 4 > 0 ? RL_ITERS / 4 : 1 ))}"
TRAIN_ARGS=(--threads "$THREADS" --seed "$SEED" --batch-tokens "$BATCH_TOKENS" -q)

# stage NAME CMD...: runs a training or evaluation stage once, records its wall time.
stage() {
    local name=$1; shift
    if [ -f "$OUT/$name.done" ]; then log "$name: done before, kept"; return; fi
    log "$name: start"
    local t=$SECONDS
    "$@"
    echo "$name,$((SECONDS - t))" >> "$OUT/stages.csv"
    touch "$OUT/$name.done"
    log "$name: finished in $((SECONDS - t)) s"
}
[ -f "$OUT/stages.csv" ] || echo "stage,seconds" > "$OUT/stages.csv"

# ---------------------------------------------------------------------------------------------
# data and starting models

data() {
    # shellcheck disable=SC2086
    make-task --split train --n "$N_TRAIN" --seed "$SEED" $TASK_ARGS > "$OUT/train.jsonl"
    # shellcheck disable=SC2086
    make-task --split test --n "$N_TEST" --seed "$SEED" $TASK_ARGS > "$OUT/test.jsonl"
    # The instruct warm-up's split: other problems (another seed), none of whose prompts is in the
    # training or the test split.
    # shellcheck disable=SC2086
    make-task --split train --n $((N_WARM * 2)) --seed $((SEED + 1000)) $TASK_ARGS \
        | jq -nc --slurpfile a "$OUT/train.jsonl" --slurpfile b "$OUT/test.jsonl" \
            '(reduce ($a[], $b[]) as $x ({}; .[$x.prompt] = 1)) as $seen | inputs | select($seen[.prompt] | not)' \
        | awk -v n="$N_WARM" 'NR <= n' > "$OUT/warm.jsonl"   # reads it all: no SIGPIPE upstream
    # RL prompts: train problems not used for the base model's short pre-training
    tail -n "$N_RL" "$OUT/train.jsonl" > "$OUT/rl-prompts.jsonl"
    head -n $((BASE_STEPS * 12)) "$OUT/train.jsonl" > "$OUT/base-train.jsonl"
    init-model --config "$here/examples/arith/student.json" --tokenizer "$here/examples/arith" \
        --seed "$SEED" --out "$OUT/student0" -q
    init-model --config "$here/examples/arith/teacher.json" --tokenizer "$here/examples/arith" \
        --seed "$((SEED + 1))" --out "$OUT/teacher0" -q
}
stage data data

sft() {   # sft NAME MODEL TRAIN.jsonl STEPS [extra sft-step options]
    local name=$1 model=$2 train=$3 steps=$4; shift 4
    sft.sh "$model" "$train" "$OUT/$name" --steps "$steps" --epochs 100 --lr 3e-3 --schedule cosine \
        --warmup "$WARMUP" "${TRAIN_ARGS[@]}" "$@"
}
stage teacher sft teacher "$OUT/teacher0" "$OUT/train.jsonl" "$TEACHER_STEPS"
stage base sft base "$OUT/student0" "$OUT/base-train.jsonl" "$BASE_STEPS"
stage instruct sft instruct "$OUT/base" "$OUT/warm.jsonl" "$INSTRUCT_STEPS"

# The teacher's correct sampled solutions, for sequence-level KD (the same for both starts).
teacher_samples() {
    # Samples are examples too (prompt + completion tokens, the completion trained), so the
    # filtered stream goes to sft-step as it is; from-json recounts the end record.
    tokenize --tokenizer "$OUT/teacher" < "$OUT/train.jsonl" \
        | ${mpi[@]+"${mpi[@]}"} rollout --model "$OUT/teacher" -G 1 --temperature 0.7 --max-new-tokens 160 \
            --threads "$THREADS" --seed "$SEED" -q \
        | score --task gsm8k -q \
        | to-json | jq -c 'select(.kind != "sample" or .rewards.correct == 1)' | from-json \
        > "$OUT/teacher-correct.mp"
    log "teacher-samples: $(to-json --no-frame "$OUT/teacher-correct.mp" | wc -l) correct teacher solutions of $N_TRAIN"
}
stage teacher-samples teacher_samples

# ---------------------------------------------------------------------------------------------
# post-training from each start: OUT/<start>-<method>/ ("base" keeps the plain method names)

kd() {   # kd NAME START: logit distillation from the teacher's top-k, forward KL mixed with CE
    TOP_K=8 kd.sh "$OUT/teacher" "$OUT/$2" "$OUT/train.jsonl" "$OUT/$1" --steps "$SFT_STEPS" \
        --epochs 100 --lr 3e-3 --schedule cosine --warmup "$WARMUP" --kd fkl --kd-alpha 0.5 "${TRAIN_ARGS[@]}"
}
seqkd() {   # seqkd NAME START: the student trains on the teacher's correct sampled solutions
    mkdir -p "$OUT/$1"
    ${mpi[@]+"${mpi[@]}"} sft-step --model "$OUT/$2" --out "$OUT/$1" --steps "$SFT_STEPS" --epochs 100 --lr 3e-3 \
        --schedule cosine --warmup "$WARMUP" "${TRAIN_ARGS[@]}" "$OUT/teacher-correct.mp" > "$OUT/$1/metrics.mp"
}
grpo() {   # grpo NAME START LR: one optimizer run of RL_ITERS x RL_MINIBATCHES steps
    grpo.sh --model "$OUT/$2" --prompts "$OUT/rl-prompts.jsonl" --out "$OUT/$1" --iters "$RL_ITERS" -G "$G" \
        --prompts-per-iter "$RL_PROMPTS" --lr "$3" --minibatches "$RL_MINIBATCHES" --warmup "$RL_WARMUP" \
        --schedule cosine --temperature "$RL_TEMPERATURE" --seed "$SEED" \
        --eval "$OUT/test.jsonl" --eval-every "$RL_EVAL_EVERY" \
        --rollout-arg --max-new-tokens --rollout-arg 160 --rollout-arg -q \
        --score-arg --task --score-arg gsm8k --score-arg -q --rl-arg -q
}
merge_lora() { lora-merge --model "$OUT/$2" --adapter "$OUT/$1" --out "$OUT/$1-merged" -q; }

STARTS=(base instruct)
prefix() { [ "$1" = base ] && echo "" || echo "$1-"; }
for s in "${STARTS[@]}"; do
    p=$(prefix "$s")
    stage "${p}sft" sft "${p}sft" "$OUT/$s" "$OUT/train.jsonl" "$SFT_STEPS"
    stage "${p}sft-lora" sft "${p}sft-lora" "$OUT/$s" "$OUT/train.jsonl" "$SFT_STEPS" --lora-rank 16 --lora-alpha 32 --lr 1e-2
    stage "${p}sft-lora-merge" merge_lora "${p}sft-lora" "$s"
    stage "${p}kd" kd "${p}kd" "$s"
    stage "${p}seqkd" seqkd "${p}seqkd" "$s"
    stage "${p}grpo" grpo "${p}grpo" "$s" "$RL_LR_START"
    stage "${p}sft-grpo" grpo "${p}sft-grpo" "${p}sft" "$RL_LR"
    stage "${p}kd-grpo" grpo "${p}kd-grpo" "${p}kd" "$RL_LR"
done

# ---------------------------------------------------------------------------------------------
# evaluation and report

MODELS=(teacher:"$OUT/teacher")
for s in "${STARTS[@]}"; do
    p=$(prefix "$s")
    MODELS+=("$s:$OUT/$s" "${p}sft:$OUT/${p}sft" "${p}sft-lora:$OUT/${p}sft-lora-merged" "${p}kd:$OUT/${p}kd"
             "${p}seqkd:$OUT/${p}seqkd" "${p}grpo:$OUT/${p}grpo/final" "${p}sft-grpo:$OUT/${p}sft-grpo/final"
             "${p}kd-grpo:$OUT/${p}kd-grpo/final")
done
mkdir -p "$OUT/eval"
for m in "${MODELS[@]}"; do
    stage "eval-${m%%:*}" eval.sh "${m#*:}" "$OUT/test.jsonl" "$OUT/eval/${m%%:*}" "$K"
done
report.sh "$OUT"
log "report: $OUT/report.md"
echo "$OUT/report.md"
