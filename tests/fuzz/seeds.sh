#!/usr/bin/env bash
# tests/fuzz/seeds.sh — regenerates the seed corpora tests/fuzz/corpus/<harness>/ from tests/data,
# the examples and the built tools (run after `make`). The seeds are committed, so fuzzing does
# not depend on bin/; rerun this only when a format changes. Byte 0 of a seed is the harness's
# mode byte where it has one (see the harness's header comment).
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH=$PWD/bin:$PATH
C=tests/fuzz/corpus
rm -rf "$C"; mkdir -p "$C"/{stream,jsonl,reward,tokload,tokenc,model}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
put() { local f=$1 mode=$2; shift 2; { printf "\\x$mode"; cat "$@"; } > "$f"; }

# streams: the suite stream, a tokenize output, a teacher-logits output (f32 tensors), samples
from-json < tests/data/stream-basic.jsonl > "$tmp/basic.mp"
printf '{"prompt":"1+1=","completion":"2"}\n{"prompt":"hello","completion":" world"}\n' | tokenize --tokenizer tests/data/tok-tiny > "$tmp/tok.mp"
init-model --preset tiny --tokenizer tests/data/tok-tiny --out "$tmp/tiny" --seed 1 -q
teacher-logits --model "$tmp/tiny" --top-k 3 -q < "$tmp/tok.mp" > "$tmp/tl.mp"
rollout --model "$tmp/tiny" -G 2 --max-new-tokens 4 --seed 1 -q < "$tmp/tok.mp" > "$tmp/samples.mp"
for s in basic tok tl samples; do
    put "$C/stream/$s-framed" 00 "$tmp/$s.mp"
    put "$C/stream/$s-getters" 04 "$tmp/$s.mp"
done
put "$C/stream/suite-raw" 01 tests/data/stream-suite.mp
put "$C/stream/suite-raw-getters-small" 07 tests/data/stream-suite.mp

# JSON lines: to-json's view of the streams above, and the stress texts
for s in basic tl samples; do to-json < "$tmp/$s.mp" > "$tmp/$s.jsonl"; put "$C/jsonl/$s" 02 "$tmp/$s.jsonl"; done
put "$C/jsonl/suite" 00 tests/data/stream-suite.jsonl
head -c 3000 tests/data/tok-stress.jsonl > "$tmp/stress.jsonl"; put "$C/jsonl/stress" 00 "$tmp/stress.jsonl"

# rewards: prediction NUL gold
r=0
for pair in $'so 3 + 4 = 7.\n#### 7|7' '<think>hmm</think> The answer is \boxed{\frac{3}{4}}.|0.75' \
            'It costs $1,234.50 in total|1234.5' '<think>a</think>|' '-12/4 apples|-3' '18.0%|$18.00'; do
    printf '%s\0%s' "${pair%%|*}" "${pair#*|}" > "$C/reward/seed$((r++))"
done

# tokenizers (tokenizer.json, NUL, tokenizer_config.json)
{ cat tests/data/tok-tiny/tokenizer.json; printf '\0'; cat tests/data/tok-tiny/tokenizer_config.json; } > "$C/tokload/tok-tiny"
cp examples/arith/tokenizer.json "$C/tokload/arith"
# texts to encode
python3 - "$C/tokenc" <<'PY'
import json, sys
for i, line in enumerate(open('tests/data/tok-stress.jsonl', encoding='utf-8')):
    if i == 40: break
    v = json.loads(line)
    v = v if isinstance(v, str) else v.get('text', '')
    open(f'{sys.argv[1]}/stress{i}', 'wb').write(v.encode('utf-8', 'surrogatepass'))
PY
printf '<|im_start|>user\nWhat is 12*7?<|im_end|>\n' > "$C/tokenc/chat"

# models: mode 0 safetensors, 1 config.json, 2 safetensors beside the fixed config, 3 both
sed -n '/fixed_config\[\] =/,/;$/p' tests/fuzz/fuzz-model.c | sed '1d; s/^ *"//; s/" *;*$//; s/\\"/"/g' | tr -d '\n' > "$tmp/cfg.json"
init-model --config "$tmp/cfg.json" --out "$tmp/m" --seed 1 -q
init-model --config "$tmp/cfg.json" --out "$tmp/mb" --seed 2 --dtype bf16 -q
put "$C/model/st-f32" 00 "$tmp/m/model.safetensors"
put "$C/model/st-bf16" 00 "$tmp/mb/model.safetensors"
put "$C/model/fixed-config-f32" 02 "$tmp/m/model.safetensors"
for f in tests/data/model-configs/*.json; do put "$C/model/config-$(basename "$f" .json)" 01 "$f"; done
{ printf '\x03'; cat "$tmp/m/config.json"; printf '\0'; cat "$tmp/m/model.safetensors"; } > "$C/model/both"
find "$C" -type f -empty -delete
echo "seeds: $(find "$C" -type f | wc -l) files, $(du -sh "$C" | cut -f1)"
