#!/usr/bin/env bash
# tests/cli/tfevents.sh — TensorBoard event files written by common/tfevents.c (through the driver
# mode of the unit test binary, `test-tfevents --write DIR`) and read back by an independent reader
# (tests/oracle/tfevents-read.mjs: @roboflow/tfrecords' CRC-32C and framing, protobufjs with
# TensorBoard's field numbers): every tag, step, wall time and value, the batching of one step's
# scalars into one Event, a flipped bit anywhere detected by the CRCs, and the exit statuses.
source "$(dirname "$0")/../lib.sh"

DRV=$TOP/build/tests/bin/test-tfevents
READ=$TOP/tests/oracle/tfevents-read.mjs
if [ ! -x "$DRV" ] || [ ! -d "$TOP/tests/oracle/node_modules/protobufjs" ]; then
    echo "$NAME: needs build/tests/bin/test-tfevents (make tests) and the npm oracles (make check)" >&2
    echo "$NAME: 0 passed, 1 failed"; exit 1
fi

# Input lines "step wall_time tag value": a trainer-like run (several tags per step, TRL's names
# with slashes) and edge values: float32 extremes, subnormals, rounding, signed zeros, NaN,
# infinities, steps past 2^53 (int64 kept exact) and step 0.
python3 - >"$TMP/in.txt" <<'EOF'
import random
r = random.Random(7)
tags = ["loss", "grad_norm", "learning_rate", "reward", "rewards/format/mean", "completions/clipped_ratio"]
wall = 1764000000.125
for step in range(1, 121):
    for i, t in enumerate(tags):
        v = r.choice([r.uniform(-10, 10), r.lognormvariate(-8, 4), r.random()])
        print(step, repr(wall + step * 0.731 + i * 1e-3), t, repr(v))
edge = ["3.4028234663852886e+38", "-3.4028234663852886e+38", "1.1754943508222875e-38", "1e-45",
        "1.401298464324817e-45", "0.1", "0.3333333333333333", "16777217", "-0.0", "0.0", "nan",
        "inf", "-inf", "1e-50"]
for k, v in enumerate(edge):
    print(1000 + k, "1764000999.5", "edge", v)
print(9007199254740993, "1764001000.0", "big_step", "1.5")
print(0, "1764001001.0", "zero_step", "2.5")
EOF
n_in=$(wc -l <"$TMP/in.txt")

expect_rc 0 "driver writes" -- "$DRV" --write "$TMP/logs/run" <"$TMP/in.txt"
path=$(cat "$TMP/out")
base=$(basename "$path")
if [[ $base =~ ^events\.out\.tfevents\.[0-9]+\.(.+)\.([0-9]+)\.([0-9]+)$ ]] \
   && [ "${BASH_REMATCH[1]}" = "$(hostname)" ]; then ok; else bad "file name $base"; fi
expect_eq "$(dirname "$path")" "$TMP/logs/run" "file in the (created) log dir"

# the reader sees every value the driver was given, exactly
node "$READ" "$path" >"$TMP/read.jsonl" 2>"$TMP/read.err"
expect_eq "$?" 0 "reader accepts the file: $(head -c 300 "$TMP/read.err")"
expect_eq "$(wc -l <"$TMP/read.jsonl")" "$((n_in + 1))" "one line per scalar plus file_version"
python3 - "$TMP/in.txt" "$TMP/read.jsonl" >"$TMP/cmp.out" 2>&1 <<'EOF'
import json, math, struct, sys
lines = [l.split() for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
bad = []
def f32(s):
    return struct.unpack('<f', struct.pack('<f', float(s)))[0]
def js(v):   # the reader's encoding of a double
    if v != v: return "NaN"
    if math.isinf(v): return "Infinity" if v > 0 else "-Infinity"
    if v == 0 and math.copysign(1, v) < 0: return "-0"
    return v
if got[0] != {"record": 0, "wall_time": got[0]["wall_time"], "step": "0", "file_version": "brain.Event:2"}:
    bad.append("record 0: %r" % got[0])
rec, prev, wall0 = 0, None, None
for i, (step, wall, tag, value) in enumerate(lines):
    if step != prev:
        rec, prev, wall0 = rec + 1, step, float(wall)   # a new Event per step, its first wall time
    want = {"record": rec, "wall_time": wall0, "step": step, "tag": tag, "value": js(f32(value))}
    g = got[i + 1] if i + 1 < len(got) else None
    if g != want or (isinstance(want["value"], float) and math.copysign(1, g["value"]) != math.copysign(1, want["value"])):
        bad.append("line %d: got %r, want %r" % (i + 1, g, want))
print("mismatches:", len(bad))
for b in bad[:10]: print(b)
EOF
expect_eq "$(head -n 1 "$TMP/cmp.out")" "mismatches: 0" "every record, step, wall time, tag and value: $(sed -n 2,4p "$TMP/cmp.out")"
expect_eq "$(grep -c '"tag":"loss"' "$TMP/read.jsonl")" 120 "120 loss points"
# one Event per step: 120 + 14 + 2 summary records after the file_version one
expect_eq "$(tail -n 1 "$TMP/read.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["record"])')" 136 "scalars of a step batched"

# A flipped bit anywhere is caught: in a length, in an Event's data, in a stored CRC.
size=$(stat -c %s "$path")
flip() {   # flip FILE BYTE: xor bit 2 of that byte, into $TMP/flipped
    python3 -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[int(sys.argv[2])] ^= 4
open(sys.argv[3], "wb").write(b)' "$1" "$2" "$TMP/flipped"
}
for spec in "0:length CRC mismatch" "3:length CRC mismatch" "20:data CRC mismatch" \
            "$((size / 2)):CRC mismatch" "$((size - 1)):data CRC mismatch" "$((size - 10)):data CRC mismatch"; do
    off=${spec%%:*} msg=${spec#*:}
    flip "$path" "$off"
    expect_rc 1 "bit flipped at byte $off" -- node "$READ" "$TMP/flipped"
    expect_err "$msg" "bit flipped at byte $off"
done
head -c $((size - 1)) "$path" >"$TMP/cut"
expect_rc 1 "truncated file" -- node "$READ" "$TMP/cut"
expect_err "truncated" "truncated file"
cp "$path" "$TMP/copy"
expect_rc 0 "an unflipped copy reads" -- node "$READ" "$TMP/copy"

# a second writer in the same directory: a new file, the first untouched
cp "$path" "$TMP/first"
printf '1 1.0 loss 1.0\n' >"$TMP/one.txt"
expect_rc 0 "second writer" -- "$DRV" --write "$TMP/logs/run" <"$TMP/one.txt"
expect_eq "$(ls "$TMP/logs/run" | wc -l)" 2 "two files in the log dir"
expect_same "$path" "$TMP/first" "first file untouched"

# exit statuses: a log dir that cannot be created (73), a write error (74: the file size limit)
expect_rc 73 "log dir under a file" -- "$DRV" --write /dev/null/logs
expect_err "test-tfevents: create /dev/null" "73 names the path"
: >"$TMP/plainfile"
expect_rc 73 "log dir is a file" -- "$DRV" --write "$TMP/plainfile"
expect_err "not a directory" "73 says why"
expect_rc 74 "write error" -- bash -c 'trap "" XFSZ; ulimit -f 4; exec "$0" --write "$1" <"$2"' "$DRV" "$TMP/logs/full" "$TMP/in.txt"
expect_err "test-tfevents: write $TMP/logs/full/events.out.tfevents." "74 names the file"
expect_err "File too large" "74 gives the reason"

finish
