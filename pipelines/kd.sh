#!/usr/bin/env bash
# kd.sh — knowledge distillation from a teacher's top-k log-probs (docs/training.md):
#
#   tokenize --tokenizer STUDENT < TRAIN.jsonl
#     | teacher-logits --model TEACHER --top-k K --temperature TAU > OUT/data/train-kd.mp
#   sft-step --model STUDENT --out OUT --loss kd [sft-step options] OUT/data/train-kd.mp > OUT/metrics.mp
#
# usage: pipelines/kd.sh TEACHER STUDENT TRAIN.jsonl OUT [sft-step options...]
#
#   TEACHER, STUDENT  Hugging Face directories with the same tokenizer (sft-step refuses a teacher
#                     whose tokenizer_xxh3 differs from the student's)
#   TRAIN.jsonl       {"prompt", "completion"} or chat {"messages"} lines: the traces to distil on
#                     (for sequence-level KD make them with rollout --model TEACHER first)
#   OUT               the student's checkpoint directory; OUT/data/train-kd.mp keeps the teacher
#                     stream (re-read by --epochs), OUT/metrics.mp, OUT/loss.tsv
#   options           passed to sft-step, e.g. --kd rkl --kd-temperature 2 --kd-alpha 0.5
#                     --lr 1e-4 --epochs 2 (--loss kd is added)
# Environment: TOP_K (default 32), TEACHER_TEMPERATURE (default 1), THREADS (teacher-logits'
# --threads; default: its own, every CPU this process may use; sft-step takes --threads among
# the options), TOKENIZE_ARGS. The teacher stream is made once and reused while it is newer than
# TRAIN.jsonl.
# Exit status: 0 ok, 64 usage, 66 a missing TRAIN.jsonl or tokenizer, else that of the failing tool.
# MPIRUN: a launcher for the model stages, e.g. MPIRUN="mpirun -q -np 4 --hostfile hosts"
# (docs/scaling.md); unset: one process each.
set -euo pipefail
read -r -a mpi <<< "${MPIRUN:-}"

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
[ $# -ge 4 ] || { echo "usage: kd.sh TEACHER STUDENT TRAIN.jsonl OUT [sft-step options...] (see --help)" >&2; exit 64; }
teacher=$1 student=$2 train=$3 out=$4
shift 4
[ -f "$train" ] || { echo "kd.sh: $train: no such file" >&2; exit 66; }
[ -f "$student/tokenizer.json" ] || { echo "kd.sh: $student/tokenizer.json: no such file" >&2; exit 66; }

threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
mkdir -p "$out/data"
data=$out/data/train-kd.mp
if [ ! -s "$data" ] || [ "$train" -nt "$data" ]; then
    # shellcheck disable=SC2086
    tokenize --tokenizer "$student" ${TOKENIZE_ARGS:-} < "$train" \
        | ${mpi[@]+"${mpi[@]}"} teacher-logits --model "$teacher" --top-k "${TOP_K:-32}" \
            --temperature "${TEACHER_TEMPERATURE:-1}" "${threads[@]}" -q > "$data.tmp"
    mv "$data.tmp" "$data"
fi
metrics=$out/metrics.mp
n=1
while [ -e "$metrics" ] && [[ " $* " == *" --resume "* ]]; do metrics=$out/metrics-$n.mp; n=$((n + 1)); done
${mpi[@]+"${mpi[@]}"} sft-step --model "$student" --out "$out" --loss kd "$@" "$data" > "$metrics"
to-json "$metrics" | sed -n 's/.*"kind":"metrics","step":\([0-9]*\),"loss":\([^,]*\),.*/\1\t\2/p' > "$out/loss.tsv"
echo "kd.sh: $(wc -l < "$out/loss.tsv") steps, loss $(head -1 "$out/loss.tsv" | cut -f2) -> $(tail -1 "$out/loss.tsv" | cut -f2); checkpoint in $out" >&2
