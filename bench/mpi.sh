#!/usr/bin/env bash
# bench/mpi.sh — the tools across MPI ranks on this machine (issue 12): one process with 2 threads
# against 2 ranks with 1 thread each (mpirun --bind-to core), for training (sft-step) and for
# generation (rollout), alternating the two twice so that both see the same machine.
#
#   bench/mpi.sh [--shape small] [--steps 4] [--prompts 16] [--doc]
#
# The model is random weights of a bench shape (bench/shapes.h) with the arith tokenizer
# (examples/arith): make-task's problems tokenized as training examples (~100 tokens each, packed
# into 512-token micro-batches, 8 per step) and as prompts (rollout -G 4, 64 new tokens, every
# sample runs to its length unless it draws an end-of-sequence id). Training tok/s is the input
# tokens (prompt and completion) of steps 2..N over their time (the metrics stream's elapsed_s;
# step 1 and the model load left out); rollout tok/s is the new tokens over the generation time
# (the tool's summary: the job's tokens over its slowest rank).
# --doc writes the table into docs/performance.md between <!-- mpi:begin --> and <!-- mpi:end -->.
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPE=small STEPS=4 P=16 DOC=0
while [ $# -gt 0 ]; do
    case $1 in
        --shape) SHAPE=$2; shift ;; --steps) STEPS=$2; shift ;; --prompts) P=$2; shift ;;
        --doc) DOC=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "bench/mpi.sh: unknown option $1" >&2; exit 64 ;;
    esac
    shift
done
export PATH=$PWD/bin:$PATH
make -s all
OUT=build/bench/mpi
mkdir -p "$OUT"
MPI=(mpirun -q --bind-to core -np 2)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)

M=$OUT/model-$SHAPE
if [ ! -f "$M/model.safetensors" ]; then
    bench/shape-config.sh "$SHAPE" > "$OUT/config-$SHAPE.json"
    init-model -q --config "$OUT/config-$SHAPE.json" --tokenizer examples/arith --out "$M"
fi
make-task --n 400 --seed 11 | tokenize -q --tokenizer examples/arith > "$OUT/train.mp"
make-task --n "$P" --seed 12 | tokenize -q --tokenizer examples/arith > "$OUT/prompts.mp"

train() {   # launcher-args... : prints tok/s of steps 2..STEPS
    "$@" sft-step -q --model "$M" --out "$OUT/run" --lr 1e-4 --batch-tokens 512 --grad-accum 8 \
        --steps "$STEPS" "$OUT/train.mp" > "$OUT/metrics.mp"
    to-json --no-frame "$OUT/metrics.mp" | jq -s '[.[] | select(.kind == "metrics")] as $m
        | (($m[1:] | map(.input_tokens) | add) / ($m[-1].elapsed_s - $m[0].elapsed_s)) * 10 | round / 10'
}
roll() {   # launcher-args... : prints new tok/s
    "$@" rollout --model "$M" -G 4 --max-new-tokens 64 --seed 3 "$OUT/prompts.mp" \
        2> "$OUT/rollout.err" > /dev/null
    grep -o ' tok/s=[0-9.]*' "$OUT/rollout.err" | tail -n 1 | cut -d= -f2
}
declare -A R
for rep in 1 2; do
    R[train1x2_$rep]=$(train env --)
    R[train2x1_$rep]=$(train "${MPI[@]}")
    R[roll1x2_$rep]=$(roll env --)
    R[roll2x1_$rep]=$(roll "${MPI[@]}")
done
# the single-process runs take their threads from the affinity mask: 2 here
ratio() { awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%.2f", (c + d) / (a + b) }'; }
table=$(cat <<EOF
bench/mpi.sh --shape $SHAPE --steps $STEPS --prompts $P, $(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; two alternating repeats (tokens/s):

| workload | 1 process × 2 threads | 2 ranks × 1 thread | ranks ÷ threads |
|---|---|---|---|
| sft-step $SHAPE, 8 × 512-token micro-batches per step (input tokens/s) | ${R[train1x2_1]} / ${R[train1x2_2]} | ${R[train2x1_1]} / ${R[train2x1_2]} | $(ratio "${R[train1x2_1]}" "${R[train1x2_2]}" "${R[train2x1_1]}" "${R[train2x1_2]}") |
| rollout $SHAPE, $P prompts × G 4 × ≤ 64 new tokens (new tokens/s) | ${R[roll1x2_1]} / ${R[roll1x2_2]} | ${R[roll2x1_1]} / ${R[roll2x1_2]} | $(ratio "${R[roll1x2_1]}" "${R[roll1x2_2]}" "${R[roll2x1_1]}" "${R[roll2x1_2]}") |
EOF
)
echo "$table"
if [ "$DOC" = 1 ]; then
    f=docs/performance.md
    grep -q '<!-- mpi:begin -->' "$f" || printf '\n## Ranks against threads (issue 12)\n\n<!-- mpi:begin -->\n<!-- mpi:end -->\n' >> "$f"
    awk -v t="$table" '/<!-- mpi:begin -->/ { print; print t; skip = 1; next } /<!-- mpi:end -->/ { skip = 0 } !skip' "$f" > "$f.tmp"
    mv "$f.tmp" "$f"
fi
