#!/usr/bin/env bash
# sft.sh — supervised fine-tuning: tokenize JSON lines with the model's tokenizer, then sft-step
# (docs/training.md):
#
#   tokenize --tokenizer MODEL < TRAIN.jsonl > OUT/data/train.mp
#   sft-step --model MODEL --out OUT [sft-step options] OUT/data/train.mp > OUT/metrics.mp
#
# usage: pipelines/sft.sh MODEL TRAIN.jsonl OUT [sft-step options...]
#
#   MODEL        a Hugging Face directory with tokenizer.json (and tokenizer_config.json for chat)
#   TRAIN.jsonl  {"prompt", "completion"} or chat {"messages"} lines (tokenize --help)
#   OUT          the checkpoint directory; OUT/data/train.mp is the tokenized data (kept, so
#                --epochs and cosine/linear schedules can re-read it), OUT/metrics.mp the
#                metrics stream (OUT/metrics-<n>.mp for a resumed run), OUT/loss.tsv the losses
#   options      passed to sft-step, e.g. --lr 1e-4 --epochs 3 --schedule cosine --warmup 10
#                --batch-tokens 4096 --grad-accum 4 --resume. TOKENIZE_ARGS (environment) adds
#                arguments to tokenize, e.g. TOKENIZE_ARGS="--max-len 1024".
# Exit status: 0 ok, 64 usage, 66 a missing TRAIN.jsonl or tokenizer, else that of the failing tool.
#
# The tools are found on PATH; from a checkout: PATH="$PWD/bin:$PATH" pipelines/sft.sh ...
# MPIRUN: a launcher for the model stages, e.g. MPIRUN="mpirun -q -np 4 --hostfile hosts"
# (docs/scaling.md); unset: one process each.
set -euo pipefail
read -r -a mpi <<< "${MPIRUN:-}"

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
[ $# -ge 3 ] || { echo "usage: sft.sh MODEL TRAIN.jsonl OUT [sft-step options...] (see --help)" >&2; exit 64; }
model=$1 train=$2 out=$3
shift 3
[ -f "$train" ] || { echo "sft.sh: $train: no such file" >&2; exit 66; }
[ -f "$model/tokenizer.json" ] || { echo "sft.sh: $model/tokenizer.json: no such file" >&2; exit 66; }

mkdir -p "$out/data"
data=$out/data/train.mp
if [ ! -s "$data" ] || [ "$train" -nt "$data" ]; then
    # shellcheck disable=SC2086
    tokenize --tokenizer "$model" ${TOKENIZE_ARGS:-} < "$train" > "$data.tmp"
    mv "$data.tmp" "$data"
fi
metrics=$out/metrics.mp
n=1
while [ -e "$metrics" ] && [[ " $* " == *" --resume "* ]]; do metrics=$out/metrics-$n.mp; n=$((n + 1)); done
${mpi[@]+"${mpi[@]}"} sft-step --model "$model" --out "$out" "$@" "$data" > "$metrics"
to-json "$metrics" | sed -n 's/.*"kind":"metrics","step":\([0-9]*\),"loss":\([^,]*\),.*/\1\t\2/p' > "$out/loss.tsv"
echo "sft.sh: $(wc -l < "$out/loss.tsv") steps, loss $(head -1 "$out/loss.tsv" | cut -f2) -> $(tail -1 "$out/loss.tsv" | cut -f2); checkpoint in $out" >&2
