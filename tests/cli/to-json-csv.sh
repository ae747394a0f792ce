#!/usr/bin/env bash
# tests/cli/to-json-csv.sh — `to-json --csv` (issue 16 §3): a real sft-step metrics stream, read
# back with Python's csv module and compared with the same stream decoded by python3-msgpack
# (tests/oracle/readstream.py), not by srlm; a crafted stream for a field that appears late,
# nested maps, RFC 4180 quoting, null/bool/uint64/NaN cells and skipped arrays; bad input.
source "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
ARITH="$TOP/examples/arith"
RD="$TOP/tests/oracle/readstream.py"

# compare CSV METRICS.mp: every metrics record of the stream (python3-msgpack) is one CSV row,
# with the header = their keys but "kind", in first-seen order; numbers read back exactly.
cat > "$TMP/compare.py" <<'EOF'
import csv, json, math, sys
recs = [json.loads(l) for l in open(sys.argv[2])]
metrics = [r for r in recs if r.get('kind') == 'metrics']
cols = []
def flat(prefix, d, out):
    for k, v in d.items():
        if prefix is None and k == 'kind':
            continue
        name = k if prefix is None else prefix + '/' + k
        if isinstance(v, dict):
            flat(name, v, out)
        elif not isinstance(v, list):
            out[name] = v
            if name not in cols:
                cols.append(name)
rows = []
for r in metrics:
    out = {}
    flat(None, r, out)
    rows.append(out)
with open(sys.argv[1], newline='') as f:
    got = list(csv.reader(f))
assert got, 'empty CSV'
assert got[0] == cols, ('header', got[0], cols)
assert len(got) == len(rows) + 1, ('rows', len(got) - 1, len(rows))
def same(cell, want):
    if want is None:
        return cell == ''
    if isinstance(want, bool):
        return cell == ('true' if want else 'false')
    if isinstance(want, int):
        return int(cell) == want
    if isinstance(want, float):
        v = float(cell)
        return (math.isnan(v) and math.isnan(want)) or v == want
    return cell == want
for i, (cells, want) in enumerate(zip(got[1:], rows)):
    assert len(cells) == len(cols), ('width', i, len(cells))
    for c, cell in zip(cols, cells):
        if c in want:
            assert same(cell, want[c]), ('cell', i, c, cell, want[c])
        else:
            assert cell == '', ('missing field not empty', i, c, cell)
print(len(rows))
EOF

# --- a real metrics stream: sft-step with KD, checkpoints between the steps ---------------------
cat > "$TMP/cfg.json" <<'EOF'
{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":512,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"hidden_act":"silu","max_position_embeddings":256,"rms_norm_eps":1e-6,"rope_theta":10000.0,"tie_word_embeddings":true,"eos_token_id":421}
EOF
init-model -q --config "$TMP/cfg.json" --tokenizer "$ARITH" --out "$TMP/m0" --seed 3
init-model -q --config "$TMP/cfg.json" --tokenizer "$ARITH" --out "$TMP/tm" --seed 7
make-task --n 16 --seed 5 | tokenize -q --tokenizer "$ARITH" \
    | teacher-logits -q --model "$TMP/tm" --top-k 4 > "$TMP/kd.mp"
sft-step -q --model "$TMP/m0" --out "$TMP/o" --loss kd --kd-alpha 0.5 --steps 4 --save-every 2 \
    --batch-tokens 300 "$TMP/kd.mp" > "$TMP/met.mp"
expect_rc 0 "--csv on sft-step metrics" -- to-json --csv "$TMP/met.mp"
cp "$TMP/out" "$TMP/met.csv"
expect_eq "$(cat "$TMP/err")" "" "--csv: nothing on stderr"
$PY "$RD" < "$TMP/met.mp" > "$TMP/met.jsonl"
expect_eq "$(grep -c '"kind": "checkpoint"' "$TMP/met.jsonl")" 2 "the stream has checkpoint records (left out of the CSV)"
expect_eq "$($PY "$TMP/compare.py" "$TMP/met.csv" "$TMP/met.jsonl" 2>&1)" 4 "sft-step CSV = its metrics records (python csv vs python3-msgpack)"
expect_eq "$(head -n 1 "$TMP/met.csv" | cut -d, -f1-3)" "step,loss,learning_rate" "header row starts step,loss,learning_rate"
# jq agrees on a column: the loss of every step
to-json "$TMP/met.mp" | jq -r 'select(.kind == "metrics") | .loss' > "$TMP/loss.jq"
col=$(head -n 1 "$TMP/met.csv" | tr ',' '\n' | grep -nx loss | cut -d: -f1)
tail -n +2 "$TMP/met.csv" | cut -d, -f"$col" > "$TMP/loss.csv"
expect_eq "$($PY -c "import sys; a=[float(x) for x in open('$TMP/loss.jq')]; b=[float(x) for x in open('$TMP/loss.csv')]; print(a == b and len(a))")" 4 "loss column = jq's .loss"
# stdin and "-" give the same CSV
expect_rc 0 "--csv from stdin" -- sh -c "to-json --csv < '$TMP/met.mp'"
expect_same "$TMP/out" "$TMP/met.csv" "--csv: stdin = FILE"
expect_rc 0 "--csv -" -- sh -c "to-json --csv - < '$TMP/met.mp'"
expect_same "$TMP/out" "$TMP/met.csv" "--csv: - = FILE"

# --- a crafted stream: a field that appears late, nested maps, quoting, special values ----------
$PY - > "$TMP/craft.mp" <<'EOF'
import msgpack, sys
o = sys.stdout.buffer
recs = [
    {'kind': 'header', 'schema': 'srlm.metrics', 'schema_version': 1},
    {'kind': 'metrics', 'step': 1, 'loss': 0.1, 'note': 'a,b', 'rewards': {'correct': {'mean': 0.5, 'std': 0.25}}},
    {'kind': 'checkpoint', 'step': 1, 'path': '/x'},
    {'kind': 'metrics', 'step': 2, 'loss': float('nan'), 'note': 'say "hi"\nnext line',
     'rewards': {'correct': {'mean': 1.0, 'std': 0.0}}, 'sample_model_xxh3': 'abc', 'ok': True,
     'none': None, 'big': 2**64 - 1, 'neg': -5, 'ids': [1, 2, 3]},
    {'kind': 'metrics', 'step': 3, 'loss': 1e300, 'note': '', 'ok': False},
    {'kind': 'end', 'records': 4},
]
for r in recs:
    o.write(msgpack.packb(r))
EOF
expect_rc 0 "--csv crafted stream" -- to-json --csv "$TMP/craft.mp"
cp "$TMP/out" "$TMP/craft.csv"
$PY "$RD" < "$TMP/craft.mp" > "$TMP/craft.jsonl"
expect_eq "$($PY "$TMP/compare.py" "$TMP/craft.csv" "$TMP/craft.jsonl" 2>&1)" 3 "crafted CSV = its metrics records"
expect_eq "$(head -n 1 "$TMP/craft.csv")" "step,loss,note,rewards/correct/mean,rewards/correct/std,sample_model_xxh3,ok,none,big,neg" \
    "columns in first-seen order, a late field added, nested maps flattened, the array left out"
expect_eq "$(sed -n 2p "$TMP/craft.csv")" '1,0.1,"a,b",0.5,0.25,,,,,' "row 1: quoted comma, empty cells for fields it lacks"
expect_eq "$(sed -n 3,4p "$TMP/craft.csv")" '2,NaN,"say ""hi""
next line",1.0,0.0,abc,true,,18446744073709551615,-5' "row 2: doubled quotes, a line break inside quotes, NaN, uint64"
expect_eq "$(sed -n 5p "$TMP/craft.csv")" '3,1e+300,,,,,false,,,' "row 3: an empty string, false"

# --- bad input and options --------------------------------------------------------------------
head -c -1 "$TMP/met.mp" > "$TMP/cut.mp"
expect_rc 65 "--csv: a cut-off stream" -- to-json --csv "$TMP/cut.mp"
expect_eq "$(wc -c < "$TMP/out")" 0 "--csv: nothing printed for a cut-off stream"
make-task --n 2 | tokenize -q --tokenizer "$ARITH" > "$TMP/ex.mp"
expect_rc 65 "--csv: not a metrics stream" -- to-json --csv "$TMP/ex.mp"
expect_err "to-json: $TMP/ex.mp: record 1: --csv reads a srlm.metrics stream (sft-step, rl-step), not srlm.examples" "--csv: wrong schema message"
printf '%s\n' '{"kind":"eval","label":"x"}' | $PY "$TOP/tests/oracle/mkstream.py" srlm.metrics > "$TMP/eval.mp"
expect_rc 0 "--csv: no metrics records" -- to-json --csv "$TMP/eval.mp"
expect_eq "$(wc -c < "$TMP/out")" 0 "--csv: no metrics records, no output"
expect_err 'no "metrics" records' "--csv: no metrics records warning"
for f in --raw --no-frame --no-decode; do
    expect_rc 64 "--csv $f" -- to-json --csv $f "$TMP/met.mp"
    expect_err "--csv does not go with" "--csv $f message"
done
expect_rc 74 "--csv: full disk" -- sh -c "to-json --csv '$TMP/met.mp' > /dev/full"
expect_err "No space left on device" "--csv: full disk message"

# --- the FILE operand: a directory, two operands ------------------------------------------------
expect_rc 66 "to-json a directory" -- to-json "$TMP"
expect_err "to-json: open $TMP: Is a directory" "to-json a directory message"
expect_rc 64 "to-json two operands" -- to-json "$TMP/met.mp" "$TMP/met.mp"
expect_err "too many operands" "to-json two operands message"
finish
