#!/usr/bin/env bash
# examples/gsm8k/download.sh — fetches GSM8K (Cobbe et al. 2021, MIT licence) from the public
# openai/grade-school-math repository and checks it: train 7,473 and test 1,319 problems, each a
# JSON line {"question", "answer"} whose answer ends "#### <number>".
#
#   examples/gsm8k/download.sh [DIR]     (default DIR: examples/gsm8k/data; not committed)
#
# Uses curl, or wget when curl is missing. Files are written to a temporary name and moved into
# place only after their line count checks out, so a failed download never leaves a partial file.
set -euo pipefail
DIR=${1:-$(dirname "$0")/data}
BASE=https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data
mkdir -p "$DIR"
fetch() {
    if command -v curl >/dev/null; then curl -fsSL --retry 3 -o "$2" "$1"
    elif command -v wget >/dev/null; then wget -q -O "$2" "$1"
    else echo "download.sh: need curl or wget" >&2; exit 69; fi
}
for split in train:7473 test:1319; do
    name=${split%%:*} want=${split##*:}
    tmp="$DIR/.$name.jsonl.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    fetch "$BASE/$name.jsonl" "$tmp"
    got=$(wc -l < "$tmp")
    if [ "$got" != "$want" ]; then
        echo "download.sh: $name.jsonl has $got lines, expected $want" >&2; exit 65
    fi
    if [ "$(grep -c '####' "$tmp")" != "$want" ]; then
        echo "download.sh: $name.jsonl: some answers lack the final '#### N' line" >&2; exit 65
    fi
    mv "$tmp" "$DIR/$name.jsonl"
    echo "download.sh: $DIR/$name.jsonl: $got problems" >&2
done
