#!/usr/bin/env bash
# eval.sh — evaluate a model on held-out problems: greedy pass@1, and pass@k / maj@k from K
# sampled completions per prompt, each with a 95% confidence interval (docs/eval.md):
#
#   tokenize --tokenizer MODEL < TEST.jsonl | rollout --model MODEL --greedy -G 1
#     | score --task gsm8k > OUT.greedy.mp;   evaluate --greedy --json < OUT.greedy.mp > OUT.greedy.json
#   tokenize ... | rollout --model MODEL -G K --temperature T | score ... > OUT.sampled.mp
#     evaluate --k 1,K --json < OUT.sampled.mp > OUT.sampled.json
#
# usage: pipelines/eval.sh MODEL TEST.jsonl OUT [K]
#
#   MODEL       a Hugging Face directory with tokenizer.json (a checkpoint of sft.sh, grpo.sh, ...)
#   TEST.jsonl  {id, prompt, answer} lines (make-task --split test, or GSM8K converted with
#               make-task --convert); the prompt is sampled, the answer is the gold
#   OUT         a path prefix: writes OUT.greedy.json and OUT.sampled.json (one JSON object each,
#               from `evaluate --json`) and the scored streams OUT.greedy.mp / OUT.sampled.mp;
#               the label is OUT's last component
#   K           samples per prompt for pass@K and maj@K (default 4)
#
# Environment: THREADS (rollout's --threads; default: rollout's own, every CPU this process may
# use), SEED (default 1337), MAX_NEW (default 160 tokens), TEMPERATURE (default 0.7).
# Exit status: 0 ok, 64 usage, 66 a missing MODEL or TEST.jsonl, else that of the failing tool.
# MPIRUN: a launcher for the model stages, e.g. MPIRUN="mpirun -q -np 4 --hostfile hosts"
# (docs/scaling.md); unset: one process each.
set -euo pipefail
read -r -a mpi <<< "${MPIRUN:-}"

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
[ $# -ge 3 ] && [ $# -le 4 ] || { echo "usage: eval.sh MODEL TEST.jsonl OUT [K] (see --help)" >&2; exit 64; }
model=$1 test=$2 out=$3 k=${4:-4}
[[ $k =~ ^[1-9][0-9]*$ ]] || { echo "eval.sh: K must be a positive integer, not \"$k\"" >&2; exit 64; }
[ -f "$test" ] || { echo "eval.sh: $test: no such file" >&2; exit 66; }
[ -f "$model/tokenizer.json" ] || { echo "eval.sh: $model/tokenizer.json: no such file" >&2; exit 66; }
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$here/bin:$PATH"
seed=${SEED:-1337} max_new=${MAX_NEW:-160} temp=${TEMPERATURE:-0.7}
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
label=$(basename "$out")

tokenize --tokenizer "$model" < "$test" \
  | ${mpi[@]+"${mpi[@]}"} rollout --model "$model" --greedy -G 1 --max-new-tokens "$max_new" "${threads[@]}" --seed "$seed" -q \
  | score --task gsm8k -q > "$out.greedy.mp"
evaluate --greedy --json --label "$label" -q < "$out.greedy.mp" > "$out.greedy.json"

tokenize --tokenizer "$model" < "$test" \
  | ${mpi[@]+"${mpi[@]}"} rollout --model "$model" -G "$k" --temperature "$temp" --max-new-tokens "$max_new" "${threads[@]}" --seed "$seed" -q \
  | score --task gsm8k -q > "$out.sampled.mp"
evaluate --k "1,$k" --json --label "$label" -q < "$out.sampled.mp" > "$out.sampled.json"
