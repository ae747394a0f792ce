#!/usr/bin/env bash
# onpolicy-kd.sh — on-policy distillation (GKD, Agarwal et al. 2024): the student generates, the
# teacher scores every generated position, and the student is trained towards the teacher on
# its own samples (reverse KL by default), for N rounds. The rounds are ONE optimizer run: round
# 1 starts it, every later round continues it (sft-step --continue), so AdamW's moments, the step
# counter and the LR schedule carry on (give --steps for the whole run with a decaying schedule):
#
#   for i in 1..N:
#     tokenize < PROMPTS | rollout --model S(i-1) | teacher-logits --model TEACHER --top-k K
#       | sft-step --continue S(i-1) --loss kd --kd rkl --out S(i)     (round 1: --model STUDENT)
#
# usage: pipelines/onpolicy-kd.sh TEACHER STUDENT PROMPTS.jsonl OUT [sft-step options...]
#
#   OUT/round-<i>/   the student after round i (and its samples and metrics); a round that is
#                    done (OUT/round-<i>/DONE) is skipped, so a killed run restarts where it stopped
# Environment: ROUNDS (default 4), G (samples per prompt, default 2), TEMPERATURE (default 1),
# MAX_NEW (default 256), TOP_K (default 16), SEED (default 1337), THREADS (default 2),
# LORA_RANK (default 0: every weight; R > 0 trains one LoRA adapter of rank R over the rounds,
# and the student samples with STUDENT + the previous round's adapter).
# MPIRUN: a launcher for the model stages, e.g. MPIRUN="mpirun -q -np 4 --hostfile hosts"
# (docs/scaling.md); unset: one process each.
set -euo pipefail
read -r -a mpi <<< "${MPIRUN:-}"
case " $* " in *" -h "*|*" --help "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ $# -ge 4 ] || { echo "usage: onpolicy-kd.sh TEACHER STUDENT PROMPTS.jsonl OUT [sft-step options...]" >&2; exit 64; }
teacher=$1 student=$2 prompts=$3 out=$4
shift 4
[ -f "$prompts" ] || { echo "onpolicy-kd.sh: $prompts: no such file" >&2; exit 66; }
rounds=${ROUNDS:-4} threads=${THREADS:-2} lora=${LORA_RANK:-0}
[[ $lora =~ ^[0-9]+$ ]] || { echo "onpolicy-kd.sh: LORA_RANK must be a number" >&2; exit 64; }
policy=$student
for ((i = 1; i <= rounds; i++)); do
    dir=$out/round-$i
    if [ -f "$dir/DONE" ]; then policy=$dir; continue; fi
    mkdir -p "$dir"
    start=(--model "$student") sampler=(--model "$policy")
    [ "$lora" -gt 0 ] && start+=(--lora-rank "$lora")
    [ "$i" -gt 1 ] && start+=(--continue "$policy")
    [ "$lora" -gt 0 ] && [ "$i" -gt 1 ] && sampler=(--model "$student" --adapter "$policy")
    tokenize --tokenizer "$student" < "$prompts" \
      | ${mpi[@]+"${mpi[@]}"} rollout "${sampler[@]}" -G "${G:-2}" --temperature "${TEMPERATURE:-1}" \
          --max-new-tokens "${MAX_NEW:-256}" --seed $(( ${SEED:-1337} + i )) --threads "$threads" -q \
      | ${mpi[@]+"${mpi[@]}"} teacher-logits --model "$teacher" --top-k "${TOP_K:-16}" --threads "$threads" -q \
      > "$dir/samples.mp"
    ${mpi[@]+"${mpi[@]}"} sft-step "${start[@]}" --out "$dir" --loss kd --kd rkl --threads "$threads" "$@" \
        "$dir/samples.mp" > "$dir/metrics.mp"
    echo "onpolicy-kd.sh: round $i/$rounds -> $dir" >&2
    touch "$dir/DONE"
    [ "$i" -gt 1 ] && rm -rf "$policy"/state-*   # superseded by this round's optimizer state
    policy=$dir
done
