#!/usr/bin/env bash
# study.sh — the main job: the study of Zhuang et al. (2025) on the embedded arithmetic task.
# A small student is post-trained with SFT (full and LoRA), logit KD and sequence-level KD from a
# larger teacher, GRPO, and the hybrids SFT→GRPO and KD→GRPO; every model is evaluated on the
# held-out split (greedy pass@1, pass@k and maj@k with 95% intervals) and a report is written:
# OUT/report.md, OUT/results.csv, OUT/stages.csv and PNG plots of the training curves.
#
#   pipelines/study.sh [OUT]          (default OUT: runs/study)
#
# Environment:
#   SCALE=N     multiply data sizes and training steps (default 1: about 20 minutes on 2 cores)
#   THREADS=N   threads per tool (default 2)
#   SEED=N      seed for data, initialisation and sampling (default 1337)
#   K=N         samples per test prompt for pass@k / maj@k (default 4)
#   TASK_ARGS   make-task difficulty (default "--steps 1-2 --max-operand 5 --max-value 20", which a
#               0.85M-parameter student learns to ~30% in 200 steps; "--steps 2-4" is make-task's
#               harder default and needs SCALE >= 4)
# Every number in the report is measured by the run; the same SEED gives the same report up to
# timings. Finished stages are kept (OUT/<stage>/DONE), so a killed run resumes where it stopped.
set -euo pipefail
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
: "${N_TRAIN:=$((2000 * SCALE))}" "${N_TEST:=$((200 * SCALE))}" "${N_RL:=$((400 * SCALE))}"
: "${BASE_STEPS:=$((40 * SCALE))}"      # the "pretrained" student: a weak start every method improves on
: "${SFT_STEPS:=$((150 * SCALE))}" "${TEACHER_STEPS:=$((300 * SCALE))}"
: "${RL_ITERS:=$((6 * SCALE))}" "${RL_PROMPTS:=32}" "${G:=8}"
: "${BATCH_TOKENS:=2048}" "${WARMUP:=10}"
: "${TASK_ARGS:=--steps 1-2 --max-operand 5 --max-value 20}"
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

# ---------------------------------------------------------------------------------------------
# post-training from the base student

stage sft sft sft "$OUT/base" "$OUT/train.jsonl" "$SFT_STEPS"
stage sft-lora sft sft-lora "$OUT/base" "$OUT/train.jsonl" "$SFT_STEPS" --lora-rank 16 --lora-alpha 32 --lr 1e-2
merge_lora() { lora-merge --model "$OUT/base" --adapter "$OUT/sft-lora" --out "$OUT/sft-lora-merged"; }
stage sft-lora-merge merge_lora

kd() {   # logit distillation from the teacher's top-k, forward KL mixed with CE
    TOP_K=8 kd.sh "$OUT/teacher" "$OUT/base" "$OUT/train.jsonl" "$OUT/kd" --steps "$SFT_STEPS" \
        --epochs 100 --lr 3e-3 --schedule cosine --warmup "$WARMUP" --kd fkl --kd-alpha 0.5 "${TRAIN_ARGS[@]}"
}
stage kd kd

seqkd() {   # sequence-level KD: the student trains on the teacher's correct sampled solutions
    mkdir -p "$OUT/seqkd"
    # Samples are examples too (prompt + completion tokens, the completion trained), so the
    # filtered stream goes to sft-step as it is; from-json recounts the end record.
    tokenize --tokenizer "$OUT/teacher" < "$OUT/train.jsonl" \
        | rollout --model "$OUT/teacher" -G 1 --temperature 0.7 --max-new-tokens 160 \
            --threads "$THREADS" --seed "$SEED" -q \
        | score --task gsm8k -q \
        | to-json | jq -c 'select(.kind != "sample" or .rewards.correct == 1)' | from-json \
        > "$OUT/seqkd/teacher-correct.mp"
    log "seqkd: $(to-json --no-frame "$OUT/seqkd/teacher-correct.mp" | wc -l) correct teacher solutions of $N_TRAIN"
    sft-step --model "$OUT/base" --out "$OUT/seqkd" --steps "$SFT_STEPS" --epochs 100 --lr 3e-3 \
        --schedule cosine --warmup "$WARMUP" "${TRAIN_ARGS[@]}" "$OUT/seqkd/teacher-correct.mp" > "$OUT/seqkd/metrics.mp"
}
stage seqkd seqkd

grpo() {   # grpo NAME START: one on-policy optimizer step per iteration (lr 1e-3 and several
           # steps per rollout batch made the tiny student's policy collapse in trials)
    grpo.sh --model "$2" --prompts "$OUT/rl-prompts.jsonl" --out "$OUT/$1" --iters "$RL_ITERS" -G "$G" \
        --prompts-per-iter "$RL_PROMPTS" --seed "$SEED" \
        --rollout-arg --temperature --rollout-arg 1.0 --rollout-arg --max-new-tokens --rollout-arg 160 \
        --rollout-arg --threads --rollout-arg "$THREADS" \
        --score-arg --task --score-arg gsm8k --score-arg -q \
        --rl-arg --lr --rl-arg 3e-4 --rl-arg --groups-per-step --rl-arg "$RL_PROMPTS" \
        --rl-arg --threads --rl-arg "$THREADS" --rl-arg -q
    ln -sfn "iter-$RL_ITERS" "$OUT/$1/final"
}
stage grpo grpo grpo "$OUT/base"
stage sft-grpo grpo sft-grpo "$OUT/sft"
stage kd-grpo grpo kd-grpo "$OUT/kd"

# ---------------------------------------------------------------------------------------------
# evaluation and report

MODELS=(base:"$OUT/base" teacher:"$OUT/teacher" sft:"$OUT/sft" sft-lora:"$OUT/sft-lora-merged"
        kd:"$OUT/kd" seqkd:"$OUT/seqkd" grpo:"$OUT/grpo/final" sft-grpo:"$OUT/sft-grpo/final"
        kd-grpo:"$OUT/kd-grpo/final")
mkdir -p "$OUT/eval"
for m in "${MODELS[@]}"; do
    stage "eval-${m%%:*}" eval.sh "${m#*:}" "$OUT/test.jsonl" "$OUT/eval/${m%%:*}" "$K"
done
report.sh "$OUT"
log "report: $OUT/report.md"
echo "$OUT/report.md"
