# tests/cli/score.sh — score: GSM8K answer checking on every test problem, reward components,
# the external verifier protocol and its failures, and bad input. Streams are made and read with
# python3-msgpack (tests/oracle/mkstream.py, readstream.py), not with srlm's own code.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
mk() { $PY "$TOP/tests/oracle/mkstream.py" "$@"; }
rd() { $PY "$TOP/tests/oracle/readstream.py"; }
field() { $PY -c "import json,sys; [print(json.loads(l).get('$1')) for l in sys.stdin if json.loads(l)['kind'] not in ('header','end')]"; }

# --- flags
expect_rc 0 "help" -- score --help
grep -q '^usage: score' "$TMP/out" && ok || bad "help on stdout"
grep -q '\[file\]$' "$TMP/out" && ok || bad "help shows the FILE operand"
expect_rc 0 "version" -- score --version
expect_rc 64 "unknown flag" -- score --bogus
expect_err "Try 'score --help'" "unknown flag hint"
expect_rc 64 "bad reward component" -- score --reward nonsense=1
expect_err 'unknown component "nonsense"' "bad component message"
expect_rc 64 "bad weight" -- score --reward correct=abc
expect_rc 64 "length without max-len" -- score --reward length=1
expect_rc 64 "exec-timeout out of range" -- score --exec true --exec-timeout -1

# --- a long answer is cut at a UTF-8 boundary: 300 bytes of "é" after "####" (a random policy
# writes such text) must give a pred that is valid UTF-8 (to-json refuses anything else)
printf '{"id":"u","sample":0,"group_size":1,"answer":"#### 1","text":"#### %s"}\n' "$(printf 'é%.0s' $(seq 150))" \
    | mk srlm.samples > "$TMP/utf.mp"
score -q < "$TMP/utf.mp" > "$TMP/utf-s.mp" && to-json "$TMP/utf-s.mp" > "$TMP/utf.json" 2> "$TMP/utf.err" \
    && ok || bad "a long non-ASCII answer: pred is not valid UTF-8: $(head -c 200 "$TMP/utf.err")"
n=$(jq -r 'select(.kind == "sample") | .pred | utf8bytelength' "$TMP/utf.json" 2>/dev/null)
expect_eq "$n" 254 "the pred of a long answer is cut to whole characters (254 of 255 bytes)"

# --- GSM8K: every gold solution scores 1, every altered one 0
G=$SHARED/data/gsm8k/test.jsonl
if [ -f "$G" ]; then
    mk srlm.samples --gsm8k "$G" > "$TMP/gold.mp"
    mk srlm.samples --gsm8k "$G" --alter > "$TMP/alt.mp"
    score < "$TMP/gold.mp" 2>/dev/null | rd | field reward > "$TMP/r1"
    expect_eq "$(sort "$TMP/r1" | uniq -c | sed 's/^ *//')" "1319 1.0" "gold GSM8K test answers all score 1"
    score < "$TMP/alt.mp" 2>/dev/null | rd | field reward > "$TMP/r0"
    expect_eq "$(sort "$TMP/r0" | uniq -c | sed 's/^ *//')" "1319 0.0" "altered GSM8K answers all score 0"
else
    echo "score: skipping GSM8K checks: $G not found" >&2
fi

# --- answer forms
cat > "$TMP/forms.jsonl" <<'J'
{"id":"a","answer":"#### 1,000","text":"so the total is $1,000."}
{"id":"b","answer":"#### 18","text":"The answer is \\boxed{18.00}"}
{"id":"c","answer":"#### 0.5","text":"half: \\boxed{\\frac{1}{2}}"}
{"id":"d","answer":"#### 7","text":"<think>3+4</think> #### 7"}
{"id":"e","answer":"#### 7","text":"no number here"}
{"id":"f","answer":"#### 12","text":"#### 12\n"}
{"id":"g","answer":"#### -3","text":"it drops to -3 degrees"}
{"id":"h","answer":"#### 12","text":"I think 12, no wait: 13"}
J
mk srlm.samples < "$TMP/forms.jsonl" > "$TMP/forms.mp"
score --reward correct=1,format=0.5 < "$TMP/forms.mp" | rd | field reward | tr '\n' ' ' > "$TMP/fr"
expect_eq "$(cat "$TMP/fr")" "1.0 1.0 1.0 1.5 0.0 1.0 1.0 0.0 " "answer forms and format bonus"
score < "$TMP/forms.mp" | rd | field pred | tr '\n' '|' > "$TMP/pr"
expect_eq "$(cat "$TMP/pr")" '1,000|18.00|\frac{1}{2}|7|None|12|-3|13|' "extracted answers"

# --- pass-through and components
score < "$TMP/forms.mp" | rd > "$TMP/all"; sed -n 2p "$TMP/all" > "$TMP/one"
$PY -c "
import json; r = json.load(open('$TMP/one'))
assert r['id'] == 'a' and r['answer'] == '#### 1,000' and r['rewards'] == {'correct': 1.0}, r
" && ok || bad "fields pass through, components listed"

# --- a NUL byte in a completion (a byte-level model can emit one) is read as a space
$PY -c "
import msgpack, sys
o = sys.stdout.buffer
o.write(msgpack.packb({'kind': 'header', 'schema': 'srlm.samples', 'schema_version': 1}))
o.write(msgpack.packb({'kind': 'sample', 'id': 'n', 'answer': '#### 4', 'text': 'x\x00 #### 4'}))
o.write(msgpack.packb({'kind': 'end', 'records': 1}))" > "$TMP/nul.mp"
score < "$TMP/nul.mp" | rd | field reward > "$TMP/nul"
expect_eq "$(cat "$TMP/nul")" "1.0" "NUL byte in a completion"

# --- overlong penalty from the mask
printf '%s\n' '{"id":"x","answer":"#### 1","text":"1","mask":[0,1,1,1,1,1,1,1,1,1]}' \
  | mk srlm.samples | score --reward correct=1,length=1 --max-len 12 --overlong-buffer 4 | rd | field reward > "$TMP/ol"
expect_eq "$(cat "$TMP/ol")" "0.75" "soft overlong penalty (9 tokens, max 12, buffer 4)"

# --- external verifier
cat > "$TMP/v.py" <<'P'
import sys, json
for line in sys.stdin:
    s = json.loads(line)
    print(json.dumps({"reward": 1.0 if "7" in s["text"] else 0.0, "len": len(s["text"])}))
P
score --exec "$PY $TMP/v.py" < "$TMP/forms.mp" | rd | field reward | tr '\n' ' ' > "$TMP/ex"
expect_eq "$(cat "$TMP/ex")" "0.0 0.0 0.0 1.0 0.0 0.0 0.0 0.0 " "external verifier rewards"
expect_rc 70 "verifier exits non-zero" -- sh -c "score --exec 'cat >/dev/null; exit 3' < '$TMP/forms.mp'"
expect_err "exited with status 3" "verifier status reported"
expect_rc 70 "verifier answers too few lines" -- sh -c "score --exec 'head -n 1 >/dev/null; echo 1' < '$TMP/forms.mp'"
expect_err "answered 1 lines" "short answer reported"
expect_rc 70 "verifier answers garbage" -- sh -c "score --exec 'while read l; do echo yes; done' < '$TMP/forms.mp'"
expect_err 'expected a number' "garbage reported"
expect_rc 70 "verifier hangs" -- sh -c "score --exec 'sleep 30' --exec-timeout 0.05 --exec-batch 2 < '$TMP/forms.mp'"
expect_err "timed out" "timeout reported"
expect_rc 70 "verifier missing" -- sh -c "score --exec '/nonexistent/verifier' < '$TMP/forms.mp'"
expect_rc 70 "verifier NaN" -- sh -c "score --exec 'while read l; do echo NaN; done' < '$TMP/forms.mp'"

# --- the FILE operand (issue 15 item 9): a file, "-" and stdin give the same stream
score < "$TMP/forms.mp" > "$TMP/op-stdin.mp"
expect_rc 0 "FILE operand" -- score "$TMP/forms.mp"
expect_same "$TMP/out" "$TMP/op-stdin.mp" "score FILE = score < FILE"
expect_rc 0 "- operand" -- sh -c "score - < '$TMP/forms.mp'"
expect_same "$TMP/out" "$TMP/op-stdin.mp" "score - = score < FILE"
expect_rc 66 "missing file" -- score "$TMP/nonexistent.mp"
expect_err "score: open $TMP/nonexistent.mp: No such file or directory" "missing file message"
expect_rc 66 "directory operand" -- score "$TMP"
expect_err "score: open $TMP: Is a directory" "directory operand message"
expect_rc 66 "directory on stdin" -- sh -c "score < '$TMP'"
expect_err "score: open <stdin>: Is a directory" "directory on stdin message"
expect_rc 64 "two operands" -- score "$TMP/forms.mp" "$TMP/forms.mp"
expect_err "too many operands" "two operands message"
mk srlm.samples --no-end < "$TMP/forms.jsonl" > "$TMP/cut.mp"
expect_rc 65 "errors name the file" -- score "$TMP/cut.mp"
expect_err "$TMP/cut.mp" "errors name the file"

# --- bad input
expect_rc 65 "empty input" -- sh -c "score < /dev/null"
expect_err "empty input" "empty input message"
mk srlm.samples --no-end < "$TMP/forms.jsonl" > "$TMP/cut.mp"
expect_rc 65 "missing end record" -- sh -c "score < '$TMP/cut.mp'"
expect_err "missing end record" "missing end message"
mk srlm.metrics < "$TMP/forms.jsonl" > "$TMP/wrong.mp"
expect_rc 65 "wrong schema" -- sh -c "score < '$TMP/wrong.mp'"
expect_err 'wrong schema "srlm.metrics"' "wrong schema message"
printf '%s\n' '{"id":"x","answer":"#### 1"}' | mk srlm.samples > "$TMP/notext.mp"
expect_rc 65 "missing text field" -- sh -c "score < '$TMP/notext.mp'"
expect_err 'field "text": missing' "missing field message"
printf '%s\n' '{"id":"x","answer":"#### 1","text":5}' | mk srlm.samples > "$TMP/badtype.mp"
expect_rc 65 "text of wrong type" -- sh -c "score < '$TMP/badtype.mp'"
head -c 100 "$TMP/forms.mp" > "$TMP/trunc.mp"
expect_rc 65 "truncated" -- sh -c "score < '$TMP/trunc.mp'"
expect_err "truncated" "truncated message"
expect_rc 74 "full disk" -- sh -c "score < '$TMP/forms.mp' > /dev/full"
expect_err "No space left on device" "full disk message"
rc=$(bash -c "set -o pipefail; score < '$TMP/gold.mp' 2>'$TMP/pipe.err' | head -c 1 >/dev/null; echo \${PIPESTATUS[0]}" 2>/dev/null)
[ -f "$TMP/gold.mp" ] || rc=141
expect_eq "$rc" "141" "closed pipe ends quietly"
expect_eq "$(cat "$TMP/pipe.err" 2>/dev/null)" "" "closed pipe: no message"
finish
