#!/usr/bin/env bash
# seqkd.sh — sequence-level knowledge distillation (rejection sampling): the teacher writes
# solutions, score keeps the correct ones, and the student is fine-tuned on them:
#
#   tokenize < PROMPTS | rollout --model TEACHER -G N | score --task gsm8k
#     | (keep rewards.correct == 1) | sft-step --model STUDENT --out OUT
#
# usage: pipelines/seqkd.sh TEACHER STUDENT PROMPTS.jsonl OUT [sft-step options...]
#
#   TEACHER, STUDENT  Hugging Face directories with the same tokenizer
#   PROMPTS.jsonl     {"id", "prompt", "answer"} lines (make-task, or GSM8K via make-task --convert)
#   OUT               the student's checkpoint directory; OUT/teacher-correct.mp keeps the kept
#                     samples (re-read by --epochs), OUT/metrics.mp the training metrics
# Environment: G (samples per prompt, default 4), TEMPERATURE (default 0.7), MAX_NEW (default
# 256), SEED (default 1337), THREADS (rollout's and sft-step's --threads; default: theirs, every
# CPU this process may use).
# A sample record is also an example (prompt + completion tokens, the completion trained), so the
# filtered stream goes to sft-step unchanged; from-json recounts the end record after jq.
# Exit status: 0 ok, 64 usage, 65 the teacher solved nothing, 66 a missing PROMPTS.jsonl, else
# that of the failing tool.
# MPIRUN: a launcher for the model stages, e.g. MPIRUN="mpirun -q -np 4 --hostfile hosts"
# (docs/scaling.md); unset: one process each.
set -euo pipefail
read -r -a mpi <<< "${MPIRUN:-}"
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
[ $# -ge 4 ] || { echo "usage: seqkd.sh TEACHER STUDENT PROMPTS.jsonl OUT [sft-step options...]" >&2; exit 64; }
teacher=$1 student=$2 prompts=$3 out=$4
shift 4
[ -f "$prompts" ] || { echo "seqkd.sh: $prompts: no such file" >&2; exit 66; }
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
mkdir -p "$out"
tokenize --tokenizer "$teacher" < "$prompts" \
  | ${mpi[@]+"${mpi[@]}"} rollout --model "$teacher" -G "${G:-4}" --temperature "${TEMPERATURE:-0.7}" \
      --max-new-tokens "${MAX_NEW:-256}" --seed "${SEED:-1337}" "${threads[@]}" -q \
  | score --task gsm8k -q \
  | to-json | jq -c 'select(.kind != "sample" or .rewards.correct == 1)' | from-json \
  > "$out/teacher-correct.mp.tmp"
mv "$out/teacher-correct.mp.tmp" "$out/teacher-correct.mp"
kept=$(to-json --no-frame "$out/teacher-correct.mp" | wc -l)
echo "seqkd.sh: $kept correct teacher samples kept" >&2
[ "$kept" -gt 0 ] || { echo "seqkd.sh: the teacher solved nothing: nothing to distil" >&2; exit 65; }
${mpi[@]+"${mpi[@]}"} sft-step --model "$student" --out "$out" "${threads[@]}" "$@" "$out/teacher-correct.mp" > "$out/metrics.mp"
