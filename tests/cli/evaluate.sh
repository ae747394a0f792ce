#!/usr/bin/env bash
# (The tool is not called `eval`: that name is a shell builtin, which `eval --help` would run.)
# tests/cli/evaluate.sh — evaluate: pass@k against a direct combinatorial computation in Python (exact
# fractions), maj@k with answer equivalence and tie-breaking, Wilson intervals against the formula,
# bootstrap determinism, output formats, and bad input. Streams are made with python3-msgpack
# (tests/oracle/mkstream.py), not with srlm's own writer.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
mk() { $PY "$TOP/tests/oracle/mkstream.py" "$@"; }

# --- flags
expect_rc 0 "help" -- evaluate --help
grep -q '^usage: evaluate' "$TMP/out" && ok || bad "help on stdout"
expect_rc 0 "version" -- evaluate --version
expect_rc 64 "unknown flag" -- evaluate --bogus
expect_err "Try 'evaluate --help'" "unknown flag hint"
expect_rc 64 "bad k" -- evaluate --k 1,x
expect_rc 64 "k zero" -- evaluate --k 0
expect_rc 64 "k twice" -- evaluate --k 2,2
expect_rc 64 "json and csv" -- evaluate --json --csv
expect_rc 64 "greedy with k" -- evaluate --greedy --k 4
expect_rc 64 "bad bootstrap" -- evaluate --bootstrap 0
awk 'BEGIN{RS=""} {p=$0} END{print p}' <(evaluate --help) | head -n 1 | grep -q '^Exit status:' && ok \
    || bad "--help does not end with an 'Exit status:' paragraph"
expect_rc 66 "missing FILE" -- evaluate "$TMP/nope.mp"
expect_err "$TMP/nope.mp" "missing FILE named"
expect_rc 66 "a directory as FILE" -- evaluate "$TMP"
expect_err "Is a directory" "directory message"
expect_rc 64 "two operands" -- evaluate a b
expect_err "too many operands" "two operands message"

# --- a hand-computed case
# prompt a: 5 (ok), 6, 6.0, 5 (ok)    c=2 of 4; maj@2: tie 5/6 -> 5 (first) ok; maj@4: tie 2-2 -> 5 ok
# prompt b: none, 1, 2 (ok), 2 (ok)   c=2 of 4; maj@2: only "1" votes -> wrong; maj@4: 2 wins, ok
cat > "$TMP/h.jsonl" <<'J'
{"id":"a","sample":0,"group_size":4,"reward":1.0,"rewards":{"correct":1.0},"pred":"5"}
{"id":"a","sample":1,"group_size":4,"reward":0.0,"rewards":{"correct":0.0},"pred":"6"}
{"id":"a","sample":2,"group_size":4,"reward":0.0,"rewards":{"correct":0.0},"pred":"6.0"}
{"id":"a","sample":3,"group_size":4,"reward":1.0,"rewards":{"correct":1.0},"pred":"5"}
{"id":"b","sample":0,"group_size":4,"reward":0.1,"rewards":{"correct":0.0}}
{"id":"b","sample":1,"group_size":4,"reward":0.1,"rewards":{"correct":0.0},"pred":"1"}
{"id":"b","sample":2,"group_size":4,"reward":1.1,"rewards":{"correct":1.0},"pred":"2"}
{"id":"b","sample":3,"group_size":4,"reward":1.1,"rewards":{"correct":1.0},"pred":"2"}
J
mk srlm.samples < "$TMP/h.jsonl" > "$TMP/h.mp"
evaluate --json < "$TMP/h.mp" > "$TMP/h.json" 2> "$TMP/h.err"
$PY - "$TMP/h.json" <<'P' && ok || bad "hand-computed pass@k / maj@k"
import json, sys, math
o = json.load(open(sys.argv[1]))
m = o['metrics']
assert list(m) == ['pass@1', 'pass@2', 'pass@4', 'maj@2', 'maj@4'], list(m)
assert m['pass@1']['value'] == 0.5 and abs(m['pass@2']['value'] - 5 / 6) < 1e-15 and m['pass@4']['value'] == 1.0
assert m['maj@2']['value'] == 0.5 and m['maj@4']['value'] == 1.0
assert o['prompts'] == 2 and o['samples'] == 8 and o['group_size'] == 4 and o['no_answer_frac'] == 0.125
assert abs(o['reward_mean'] - 0.55) < 1e-12
# every prompt has pass@1 = 0.5: the bootstrap interval collapses; maj@k / pass@4 are proportions: Wilson
assert m['pass@1']['ci'] == 'bootstrap' and m['pass@1']['ci_low'] == 0.5 == m['pass@1']['ci_high']
def wilson(s, n, z=1.959963984540054):
    p = s / n; d = 1 + z * z / n; c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0, c - h), min(1, c + h)
for k, s in (('maj@2', 1), ('maj@4', 2), ('pass@4', 2)):
    lo, hi = wilson(s, 2)
    assert m[k]['ci'] == 'wilson' and abs(m[k]['ci_low'] - lo) < 1e-12 and abs(m[k]['ci_high'] - hi) < 1e-12, (k, m[k], lo, hi)
P
grep -q 'pass@2 *0.8333 *\[0.8333, 0.8333\] *bootstrap' "$TMP/h.err" && ok || bad "table on stderr: $(cat "$TMP/h.err")"
evaluate --json -q < "$TMP/h.mp" 2> "$TMP/q.err" > /dev/null
# the FILE operand (issue 15): FILE and "-" read what stdin does
expect_rc 0 "FILE operand" -- evaluate --json "$TMP/h.mp"
expect_same "$TMP/out" "$TMP/h.json" "FILE operand == stdin"
expect_rc 0 "- operand" -- sh -c "evaluate --json - < '$TMP/h.mp'"
expect_same "$TMP/out" "$TMP/h.json" "- operand == stdin"
expect_rc 65 "k above a group, FILE named" -- evaluate --k 8 "$TMP/h.mp"
expect_err "$TMP/h.mp: --k 8" "error names FILE"
expect_eq "$(cat "$TMP/q.err")" "" "-q: no table"

# the msgpack record equals the JSON one, inside a srlm.metrics stream with provenance
evaluate -q --label run1 < "$TMP/h.mp" | $PY "$TOP/tests/oracle/readstream.py" > "$TMP/h.rd"
$PY - "$TMP/h.rd" "$TMP/h.json" <<'P' && ok || bad "srlm.metrics stream"
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
j = json.load(open(sys.argv[2]))
h, r, e = L
assert h['schema'] == 'srlm.metrics' and h['upstream']['producer']['name'] == 'mkstream.py'
assert h['options']['k'] == [1, 2, 4] and h['options']['label'] == 'run1'
assert e == {'kind': 'end', 'records': 1}
assert r['label'] == 'run1'; r['label'] = None
assert r == j, (r, j)
P
evaluate --csv --label 'x,y' -q < "$TMP/h.mp" > "$TMP/h.csv"
expect_eq "$(sed -n '1p;3p' "$TMP/h.csv")" 'label,metric,k,value,ci_low,ci_high,ci,prompts,samples
"x,y",pass@2,2,0.83333333333333326,0.83333333333333326,0.83333333333333326,bootstrap,2,8' "csv output"

# --- pass@k against exact combinatorics, on random groups (and n=1000 below)
$PY - > "$TMP/r.jsonl" <<'P'
import json, random
rnd = random.Random(5)
groups = [(16, rnd.randint(0, 16)) for _ in range(60)]
for i, (n, c) in enumerate(groups):
    ok = [1] * c + [0] * (n - c); rnd.shuffle(ok)
    for s in range(n):
        print(json.dumps({'id': f'p{i}', 'sample': s, 'group_size': n, 'rewards': {'correct': float(ok[s])}, 'pred': str(rnd.randint(0, 3))}))
P
mk srlm.samples < "$TMP/r.jsonl" > "$TMP/r.mp"
evaluate --json --k 1,2,3,5,8,15,16 < "$TMP/r.mp" > "$TMP/r.json" 2>/dev/null
$PY - "$TMP/r.jsonl" "$TMP/r.json" <<'P' && ok || bad "pass@k equals 1 - C(n-c,k)/C(n,k)"
import json, sys
from fractions import Fraction
from math import comb
recs = [json.loads(l) for l in open(sys.argv[1])]
o = json.load(open(sys.argv[2]))
groups = {}
for r in recs: groups.setdefault(r['id'], []).append(r['rewards']['correct'] >= 0.5)
for k in (1, 2, 3, 5, 8, 15, 16):
    exact = sum(1 - Fraction(comb(len(g) - sum(g), k), comb(len(g), k)) for g in groups.values()) / len(groups)
    got = o['metrics'][f'pass@{k}']['value']
    assert abs(got - float(exact)) < 1e-12, (k, got, float(exact))
    lo, hi = o['metrics'][f'pass@{k}']['ci_low'], o['metrics'][f'pass@{k}']['ci_high']
    assert lo <= got <= hi and hi - lo > 0.01, (k, lo, got, hi)
# maj@k: the majority of the first k answers (ties: first seen), correct if its first sample is
def maj(rs, k):
    cnt, first = {}, {}
    for i, r in enumerate(rs[:k]):
        p = float(r['pred']); cnt[p] = cnt.get(p, 0) + 1; first.setdefault(p, i)
    best = max(cnt, key=lambda p: (cnt[p], -first[p]))
    return rs[first[best]]['rewards']['correct'] >= 0.5
byid = {}
for r in recs: byid.setdefault(r['id'], []).append(r)
for k in (2, 3, 5, 8, 15, 16):
    want = sum(maj(rs, k) for rs in byid.values()) / len(byid)
    assert abs(o['metrics'][f'maj@{k}']['value'] - want) < 1e-12, (k, o['metrics'][f'maj@{k}'], want)
P
# large n: the product form stays exact where binomials overflow a double (C(1000,500) ~ 1e299)
$PY -c "
import json
for s in range(1000): print(json.dumps({'id':'big','sample':s,'group_size':1000,'reward':1.0 if s < 3 else 0.0}))
" | mk srlm.samples > "$TMP/big.mp"
evaluate --json --k 1,500,998 < "$TMP/big.mp" 2>/dev/null > "$TMP/big.json"
$PY - "$TMP/big.json" <<'P' && ok || bad "pass@k with n=1000"
import json, sys
from fractions import Fraction
from math import comb
m = json.load(open(sys.argv[1]))['metrics']
for k in (1, 500, 998):
    want = float(1 - Fraction(comb(997, k), comb(1000, k)))
    assert abs(m[f'pass@{k}']['value'] - want) < 1e-12, (k, m[f'pass@{k}']['value'], want)
P

# --- bootstrap: fixed seed reproducible, the seed changes it
evaluate --json --k 1 < "$TMP/r.mp" 2>/dev/null > "$TMP/b1"
evaluate --json --k 1 < "$TMP/r.mp" 2>/dev/null > "$TMP/b2"
evaluate --json --k 1 --seed 9 < "$TMP/r.mp" 2>/dev/null > "$TMP/b3"
expect_same "$TMP/b1" "$TMP/b2" "bootstrap is deterministic"
cmp -s "$TMP/b1" "$TMP/b3" && bad "--seed changes the bootstrap" || ok

# --- greedy: one sample per prompt, Wilson interval
$PY -c "
import json
for i in range(10): print(json.dumps({'id': str(i), 'rewards': {'correct': 1.0 if i < 7 else 0.0}, 'pred': '1'}))
" | mk srlm.samples > "$TMP/g.mp"
evaluate --json --greedy < "$TMP/g.mp" 2> "$TMP/g.err" > "$TMP/g.json"
$PY - "$TMP/g.json" <<'P' && ok || bad "greedy pass@1 with Wilson interval"
import json, sys, math
o = json.load(open(sys.argv[1]))
assert o['greedy'] is True and list(o['metrics']) == ['pass@1']
m = o['metrics']['pass@1']
z = 1.959963984540054; n = 10; p = 0.7; d = 1 + z * z / n; c = (p + z * z / (2 * n)) / d
h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
assert m['value'] == 0.7 and m['ci'] == 'wilson' and abs(m['ci_low'] - (c - h)) < 1e-12 and abs(m['ci_high'] - (c + h)) < 1e-12, m
P
grep -qF "pass@1 (greedy)" "$TMP/g.err" && ok || bad "greedy marked in the table"
expect_rc 65 "greedy on a sampled stream" -- sh -c "evaluate --greedy < '$TMP/h.mp'"
expect_err "--greedy, but prompts have up to 4 samples" "greedy message"

# --- correctness from reward when there is no rewards.correct; --threshold
printf '%s\n' '{"id":"a","reward":0.6}' '{"id":"b","reward":0.4}' | mk srlm.samples > "$TMP/t.mp"
expect_eq "$(evaluate --json < "$TMP/t.mp" 2>/dev/null | jq -c '.metrics["pass@1"].value')" "0.5" "reward >= 0.5 counts"
expect_eq "$(evaluate --json --threshold 0.3 < "$TMP/t.mp" 2>/dev/null | jq -c '.metrics["pass@1"].value')" "1" "--threshold"

# --- end to end: gold solutions of the task through score, then eval
make-task --n 50 --split test --format qa | $PY -c "
import json, sys
for l in sys.stdin:
    o = json.loads(l)
    for s in range(2):
        print(json.dumps({'id': o['id'], 'sample': s, 'group_size': 2, 'answer': o['answer'], 'text': o['answer'] if s == 0 else 'no idea'}))
" | mk srlm.samples | score 2>/dev/null | evaluate --json 2>/dev/null > "$TMP/e2e.json"
expect_eq "$(jq -c '[.metrics["pass@1"].value, .metrics["pass@2"].value, .metrics["maj@2"].value, .no_answer_frac]' "$TMP/e2e.json")" \
    "[0.5,1,1,0.5]" "score | evaluate on gold and unanswered completions"

# --- bad input
expect_rc 65 "empty input" -- sh -c "evaluate < /dev/null"
expect_err "empty input" "empty input message"
printf '' | mk srlm.samples > "$TMP/none.mp"
expect_rc 65 "no samples" -- sh -c "evaluate < '$TMP/none.mp'"
expect_err "no samples to evaluate" "no samples message"
mk srlm.samples --no-end < "$TMP/h.jsonl" > "$TMP/cut.mp"
expect_rc 65 "missing end record" -- sh -c "evaluate < '$TMP/cut.mp'"
expect_err "missing end record" "missing end message"
head -c 150 "$TMP/h.mp" > "$TMP/trunc.mp"
expect_rc 65 "truncated" -- sh -c "evaluate < '$TMP/trunc.mp'"
expect_err "truncated" "truncated message"
mk srlm.metrics < "$TMP/h.jsonl" > "$TMP/wrong.mp"
expect_rc 65 "wrong schema" -- sh -c "evaluate < '$TMP/wrong.mp'"
expect_err 'wrong schema "srlm.metrics"' "wrong schema message"
printf '%s\n' '{"id":"a","pred":"1"}' | mk srlm.samples > "$TMP/unscored.mp"
expect_rc 65 "unscored" -- sh -c "evaluate < '$TMP/unscored.mp'"
expect_err 'no "rewards.correct" or "reward" field (run score first)' "unscored message"
printf '%s\n' '{"pred":"1","reward":1}' | mk srlm.samples > "$TMP/noid.mp"
expect_rc 65 "missing id" -- sh -c "evaluate < '$TMP/noid.mp'"
expect_err 'field "id": missing' "missing id message"
printf '%s\n' '{"id":"a","reward":"yes"}' | mk srlm.samples > "$TMP/badrw.mp"
expect_rc 65 "reward of wrong type" -- sh -c "evaluate < '$TMP/badrw.mp'"
printf '%s\n' '{"id":"a","reward":1}' '{"id":"b","reward":1}' '{"id":"a","reward":0}' | mk srlm.samples > "$TMP/split.mp"
expect_rc 65 "non-contiguous group" -- sh -c "evaluate < '$TMP/split.mp'"
expect_err 'prompt "a": its samples are not contiguous' "non-contiguous message"
printf '%s\n' '{"id":"a","sample":0,"group_size":3,"reward":1}' '{"id":"a","sample":1,"group_size":3,"reward":1}' '{"id":"b","sample":0,"group_size":3,"reward":1}' \
  | mk srlm.samples > "$TMP/short.mp"
expect_rc 65 "short group" -- sh -c "evaluate < '$TMP/short.mp'"
expect_err 'prompt "a": 2 samples, but group_size is 3' "short group message"
printf '%s\n' '{"id":"a","sample":0,"group_size":1,"reward":1}' '{"id":"a","sample":1,"group_size":1,"reward":1}' | mk srlm.samples > "$TMP/long.mp"
expect_rc 65 "long group" -- sh -c "evaluate < '$TMP/long.mp'"
expect_err 'more than group_size=1 samples' "long group message"
printf '%s\n' '{"id":"a","sample":1,"reward":1}' | mk srlm.samples > "$TMP/order.mp"
expect_rc 65 "samples out of order" -- sh -c "evaluate < '$TMP/order.mp'"
expect_err 'field "sample": 1, expected 0' "order message"
expect_rc 65 "k beyond the group" -- sh -c "evaluate --k 8 < '$TMP/h.mp'"
expect_err "--k 8: prompt #1 has only 4 samples" "k beyond message"
printf '%s\n' '{"id":"a","reward":1,"pred":7}' | mk srlm.samples > "$TMP/predint.mp"
expect_rc 65 "pred of wrong type" -- sh -c "evaluate < '$TMP/predint.mp'"
expect_rc 74 "full disk" -- sh -c "evaluate < '$TMP/h.mp' > /dev/full"
expect_err "No space left on device" "full disk message"
finish
