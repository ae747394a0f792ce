# tests/cli/log-dir.sh — the trainers' --log-dir: TensorBoard event files that hold every number of
# every metrics record, read back by an independent reader (tests/oracle/tfevents-read.mjs:
# @roboflow/tfrecords' CRC-32C framing and protobufjs with TensorBoard's field numbers), value for
# value against the metrics stream (as float32, TensorBoard's simple_value), for sft-step and
# rl-step; a run that continues another (--continue) appends its steps to the same log dir.
. "$(dirname "$0")/../lib.sh"
need_torch msgpack
READ="$TOP/tests/oracle/tfevents-read.mjs"
[ -d "$TOP/tests/oracle/node_modules/protobufjs" ] || { bad "npm oracles missing (make check installs them)"; finish; exit 1; }
cd "$TMP"
ARITH="$TOP/examples/arith"
init-model -q --config "$ARITH/student.json" --tokenizer "$ARITH" --out s0 --seed 3
make-task --n 12 --seed 5 | tokenize -q --tokenizer "$ARITH" > ex.mp

# compare LOGDIR METRICS...: every (step, train/<field>) of the metrics records == the event files
compare() {
    local dir=$1; shift
    for f in "$dir"/events.out.tfevents.*; do node "$READ" "$f" || return 1; done > events.jsonl
    for m; do to-json --no-frame "$m"; done > metrics.jsonl
    $PY - events.jsonl metrics.jsonl <<'PY'
import json, struct, sys
ev = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if "tag" in r:
        ev[(int(r["step"]), r["tag"])] = r["value"]
want = {}
def walk(step, pre, o):
    for k, v in o.items():
        if k in ("kind", "step"): continue
        if isinstance(v, dict): walk(step, pre + k + "/", v)
        elif isinstance(v, bool): want[(step, pre + k)] = float(v)
        elif isinstance(v, (int, float)): want[(step, pre + k)] = struct.unpack("<f", struct.pack("<f", float(v)))[0]
for l in open(sys.argv[2]):
    r = json.loads(l)
    if r.get("kind") == "metrics": walk(r["step"], "train/", r)
assert want, "no metrics"
missing = [k for k in want if k not in ev]
assert not missing, f"missing in the event files: {missing[:3]}"
extra = [k for k in ev if k not in want]
assert not extra, f"not in the metrics stream: {extra[:3]}"
bad = [(k, want[k], ev[k]) for k in want if want[k] != ev[k]]
assert not bad, f"values differ: {bad[:3]}"
print(len(want))
PY
}
sft-step --model s0 --out o1 --lr 1e-3 --steps 4 --batch-tokens 80 --truncate -q --log-dir tb1 ex.mp > m1.mp 2>/dev/null
n=$(compare tb1 m1.mp) && [ "$n" -gt 20 ] && ok || bad "sft-step --log-dir: event files differ from the metrics ($n)"
sft-step --continue o1 --out o2 --steps 6 --batch-tokens 80 --truncate -q --log-dir tb1 ex.mp > m2.mp 2>/dev/null
n=$(compare tb1 m1.mp m2.mp) && ok || bad "--continue with the same --log-dir: steps 1-6 not all there ($n)"
expect_rc 73 "--log-dir that cannot be created" -- sft-step --model s0 --out o3 --steps 1 --log-dir /dev/null/x ex.mp
finish
