#!/usr/bin/env bash
# pipelines/eval.sh — evaluate a model on held-out problems: greedy pass@1, and pass@k / maj@k
# from K sampled completions per prompt, each with a 95% confidence interval.
#
#   pipelines/eval.sh MODEL TEST.jsonl OUT [K]
#
# TEST.jsonl holds {id, prompt, answer} lines (make-task --split test, or GSM8K converted with
# make-task --convert); only the prompt is used. Writes OUT.greedy.json and OUT.sampled.json (one
# JSON object each, from `evaluate --json`) and the scored streams OUT.greedy.mp / OUT.sampled.mp.
# Environment: THREADS (default 2), SEED (default 1337), MAX_NEW (default 160 tokens),
# TEMPERATURE (default 0.7).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$here/bin:$PATH"
[ $# -ge 3 ] || { echo "usage: $0 MODEL TEST.jsonl OUT [K]" >&2; exit 64; }
model=$1 test=$2 out=$3 k=${4:-4}
threads=${THREADS:-2} seed=${SEED:-1337} max_new=${MAX_NEW:-160} temp=${TEMPERATURE:-0.7}
label=$(basename "$out")

tokenize --tokenizer "$model" < "$test" \
  | rollout --model "$model" --greedy -G 1 --max-new-tokens "$max_new" --threads "$threads" --seed "$seed" -q \
  | score --task gsm8k -q > "$out.greedy.mp"
evaluate --greedy --json --label "$label" -q < "$out.greedy.mp" > "$out.greedy.json"

tokenize --tokenizer "$model" < "$test" \
  | rollout --model "$model" -G "$k" --temperature "$temp" --max-new-tokens "$max_new" --threads "$threads" --seed "$seed" -q \
  | score --task gsm8k -q > "$out.sampled.mp"
evaluate --k "1,$k" --json --label "$label" -q < "$out.sampled.mp" > "$out.sampled.json"
