#!/usr/bin/env bash
# tests/cli/stream.sh — to-json and from-json: round trips, jq edits, independent msgpack
# encoder/decoder (@msgpack/msgpack via tests/oracle/msgpack-fixtures.mjs), flags, bad input,
# full disk, closed pipe, random bytes.
source "$(dirname "$0")/../lib.sh"
D=$TOP/tests/data
ORACLE="node $TOP/tests/oracle/msgpack-fixtures.mjs"
have_node=0; command -v node >/dev/null && [ -d "$TOP/tests/oracle/node_modules/@msgpack" ] && have_node=1

# --- flags -----------------------------------------------------------------------------------
for t in to-json from-json; do
    expect_rc 0 "$t --help" -- $t --help
    grep -q "^usage: $t" "$TMP/out" && ok || bad "$t --help: no usage on stdout"
    expect_rc 0 "$t --version" -- $t --version
    grep -q "^$t " "$TMP/out" && ok || bad "$t --version: $(cat "$TMP/out")"
    expect_rc 64 "$t --bogus" -- $t --bogus
    expect_err "Try '$t --help' for more information." "$t --bogus"
    grep -q "^$t: unknown option '--bogus'" "$TMP/err" && ok || bad "$t --bogus: message: $(cat "$TMP/err")"
    expect_rc 66 "$t missing file" -- $t "$TMP/nonexistent"
    expect_err "$t: open $TMP/nonexistent: No such file or directory" "$t missing file"
    expect_rc 64 "$t two files" -- $t a b
done
expect_rc 64 "to-json bad size" -- to-json --max-record-bytes 12x "$D/stream-suite.mp"
expect_err 'invalid size "12x"' "to-json bad size"
expect_rc 64 "from-json --frame without value" -- from-json --frame

# --- round trips -----------------------------------------------------------------------------
from-json "$D/stream-basic.jsonl" >"$TMP/basic.mp" && ok || bad "from-json stream-basic.jsonl failed"
to-json "$TMP/basic.mp" >"$TMP/basic.jsonl" && ok || bad "to-json basic.mp failed"
expect_same "$TMP/basic.jsonl" "$D/stream-basic.jsonl" "from-json | to-json is the identity on JSON"
to-json <"$TMP/basic.mp" | from-json >"$TMP/basic2.mp"
expect_same "$TMP/basic2.mp" "$TMP/basic.mp" "to-json | from-json is the identity on msgpack"
# Every msgpack-test-suite encoding, printed as expected (docs/stream-tools.md encoding).
expect_rc 0 "to-json suite" -- to-json "$D/stream-suite.mp"
expect_same "$TMP/out" "$D/stream-suite.jsonl" "to-json of every msgpack-test-suite encoding"
# CRLF line ends, blank lines, no final newline, a BOM: all accepted, same stream.
{ printf '\xef\xbb\xbf'; sed 's/$/\r/' "$D/stream-basic.jsonl" | sed '2i\\' ; } | head -c -2 >"$TMP/crlf.jsonl"
expect_rc 0 "from-json CRLF/BOM/blank/no final newline" -- from-json "$TMP/crlf.jsonl"
expect_same "$TMP/out" "$TMP/basic.mp" "from-json CRLF input gives the same stream"

# --- independent encoder and decoder ---------------------------------------------------------
if [ $have_node = 1 ]; then
    $ORACLE encode "$TMP/enc.mp"
    expect_rc 0 "to-json reads @msgpack/msgpack's stream" -- to-json "$TMP/enc.mp"
    $ORACLE check-encoded <"$TMP/out" >/dev/null 2>"$TMP/node.err" && ok || bad "check-encoded: $(cat "$TMP/node.err")"
    to-json "$TMP/enc.mp" | from-json >"$TMP/enc2.mp"
    expect_same "$TMP/enc2.mp" "$TMP/enc.mp" "@msgpack/msgpack stream survives to-json | from-json byte for byte"
    $ORACLE decode-check "$TMP/basic.mp" "$D/stream-basic.jsonl" >/dev/null 2>"$TMP/node.err" && ok ||
        bad "@msgpack/msgpack decodes from-json output: $(cat "$TMP/node.err")"
else
    bad "node or tests/oracle/node_modules missing: run .ci/deps.sh test"
fi

# --- jq edits --------------------------------------------------------------------------------
if command -v jq >/dev/null; then
    to-json "$TMP/basic.mp" | jq -c 'select(.id != "q2")' | from-json >"$TMP/edited.mp"
    expect_rc 0 "jq-filtered stream reads back" -- to-json "$TMP/edited.mp"
    expect_eq "$(tail -n 1 "$TMP/out")" '{"kind":"end","records":3}' "from-json recounts the end record"
    expect_eq "$(grep -c '"kind":"example"' "$TMP/out")" 3 "jq dropped one record"
    to-json "$TMP/basic.mp" | jq -c 'if .kind == "example" then .reward = 1 else . end' | from-json >"$TMP/edited.mp"
    expect_rc 0 "jq-added field reads back" -- to-json "$TMP/edited.mp"
    expect_eq "$(grep -c '"reward":1}' "$TMP/out")" 4 "jq added a field to every record"
    # jq prints 1.0 as 1 (jq 1.6): the value comes back as an int; tensors stay f32.
    to-json "$TMP/basic.mp" | jq -c . | from-json | to-json >"$TMP/jq.jsonl"
    grep -q '"teacher_logprobs":{"dtype":"f32","shape":\[2,2\],"data":\[-0.1,-2.5,"-Infinity",3.4028235e+38\]}' "$TMP/jq.jsonl" &&
        ok || bad "f32 tensor through jq: $(grep q3 "$TMP/jq.jsonl")"
else
    bad "jq missing (apt-get install jq)"
fi

# --- from-json --frame -----------------------------------------------------------------------
printf '{"kind":"example","a":1}\n{"b":[1,2]}\n' >"$TMP/plain.jsonl"
expect_rc 65 "--frame: record without kind" -- from-json --frame srlm.examples "$TMP/plain.jsonl"
expect_err 'line 2: record has no "kind" string' "--frame: record without kind"
expect_rc 0 "--frame --kind" -- from-json --frame srlm.examples --kind example "$TMP/plain.jsonl"
to-json <"$TMP/out" >"$TMP/framed.jsonl" && ok || bad "--frame output does not read back"
head -n 1 "$TMP/framed.jsonl" | grep -q '"schema":"srlm.examples","schema_version":1,"producer":{"name":"from-json"' && ok ||
    bad "--frame header: $(head -n 1 "$TMP/framed.jsonl")"
expect_eq "$(sed -n 3p "$TMP/framed.jsonl")" '{"kind":"example","b":[1,2]}' "--kind goes first"
expect_eq "$(tail -n 1 "$TMP/framed.jsonl")" '{"kind":"end","records":2}' "--frame end record"
expect_rc 65 "--frame on a framed stream" -- from-json --frame srlm.examples "$D/stream-basic.jsonl"
expect_err 'line 1: a "header" record: the input is already a framed stream; drop --frame' "--frame on framed input"
expect_rc 0 "--frame on empty input" -- from-json --frame srlm.x /dev/null
to-json <"$TMP/out" >/dev/null && ok || bad "--frame empty stream does not read back"
# to-json --no-frame | from-json --frame: the data records only.
to-json --no-frame "$TMP/basic.mp" >"$TMP/nf.jsonl"
expect_eq "$(wc -l <"$TMP/nf.jsonl")" 4 "--no-frame prints data records only"
from-json --frame srlm.examples "$TMP/nf.jsonl" | to-json --no-frame | cmp -s - "$TMP/nf.jsonl" && ok ||
    bad "--no-frame | from-json --frame | to-json --no-frame"

# --- bad JSON lines --------------------------------------------------------------------------
H=$(head -n 1 "$D/stream-basic.jsonl")
bad_line() {   # bad_line DESC TEXT LINE...: a stream whose line 2 is LINE, expecting TEXT
    local desc=$1 text=$2; shift 2
    { echo "$H"; printf '%s\n' "$@"; echo '{"kind":"end","records":1}'; } >"$TMP/bad.jsonl"
    expect_rc 65 "$desc" -- from-json "$TMP/bad.jsonl"
    expect_err "$TMP/bad.jsonl: line 2: $text" "$desc"
}
bad_line "bad JSON" "invalid JSON: " '{"kind":"example",}'
bad_line "trailing garbage" "invalid JSON: " '{"kind":"example"} x'
bad_line "not an object" "expected a JSON object, got array" '[1,2]'
bad_line "invalid UTF-8" "invalid UTF-8 (byte 0xff at column 24)" $'{"kind":"example","s":"\xff"}'
bad_line "overlong UTF-8" "invalid UTF-8" $'{"kind":"example","s":"\xc0\xaf"}'
bad_line "duplicate key" "invalid JSON: duplicate object key" '{"kind":"example","a":1,"a":2}'
bad_line "tensor count" 'field .t: tensor data has 3 values, but its shape needs 4' '{"kind":"example","t":{"dtype":"f32","shape":[2,2],"data":[1,2,3]}}'
bad_line "tensor dtype" 'field .t: tensor dtype must be' '{"kind":"example","t":{"dtype":"f64","shape":[1],"data":[1]}}'
bad_line "bad base64" 'field .b: bin_base64 must be a padded base64 string' '{"kind":"example","b":{"bin_base64":"AAH"}}'
bad_line "too deep" 'field .a[0][0]' "{\"kind\":\"example\",\"a\":$(printf '[%.0s' {1..40})$(printf ']%.0s' {1..40})}"
bad_line "huge int" "invalid JSON: too big integer" '{"kind":"example","a":99999999999999999999}'
bad_line "second header" "a second header" "$H"
printf '%s\n{"kind":"example","a":"x\0y"}\n{"kind":"end","records":1}\n' "$H" >"$TMP/nul.jsonl"
expect_rc 65 "NUL byte" -- from-json "$TMP/nul.jsonl"
expect_err "line 2: NUL byte at column" "NUL byte"
{ echo "$H"; head -c 2000 /dev/zero | tr '\0' ' '; echo; } >"$TMP/long.jsonl"
expect_rc 65 "long line" -- from-json --max-line-bytes 1000 "$TMP/long.jsonl"
expect_err "line 2: line longer than 1000 bytes" "long line"
head -n 3 "$D/stream-basic.jsonl" >"$TMP/noend.jsonl"
expect_rc 65 "missing end line" -- from-json "$TMP/noend.jsonl"
expect_err "missing end record: the input stops after line 3" "missing end line"
tail -n +2 "$D/stream-basic.jsonl" >"$TMP/nohead.jsonl"
expect_rc 65 "missing header line" -- from-json "$TMP/nohead.jsonl"
expect_err "line 1: expected a header record" "missing header line"
{ cat "$D/stream-basic.jsonl"; echo '{"kind":"example"}'; } >"$TMP/after.jsonl"
expect_rc 65 "record after end" -- from-json "$TMP/after.jsonl"
expect_err "line 7: a record after the end record" "record after end"
expect_rc 65 "from-json empty input" -- from-json /dev/null
expect_err "empty input" "from-json empty input"

# --- bad msgpack into to-json ----------------------------------------------------------------
n=$(stat -c %s "$TMP/basic.mp")
head -c $((n - 3)) "$TMP/basic.mp" >"$TMP/cut.mp"
expect_rc 65 "to-json truncated" -- to-json "$TMP/cut.mp"
expect_err "truncated" "to-json truncated"
expect_eq "$(wc -l <"$TMP/out")" 5 "to-json prints the whole records before the cut"
head -c $((n - 19)) "$TMP/basic.mp" >"$TMP/cut.mp"            # exactly without the end record
expect_rc 65 "to-json missing end" -- to-json "$TMP/cut.mp"
expect_err "missing end record after 4 records" "to-json missing end"
to-json "$TMP/cut.mp" 2>/dev/null | from-json >/dev/null 2>&1 && bad "from-json accepted a cut-off stream" || ok
cat "$TMP/basic.mp" "$TMP/basic.mp" >"$TMP/twice.mp"
expect_rc 65 "to-json data after end" -- to-json "$TMP/twice.mp"
expect_err "record 7: data after the end record" "to-json data after end"
grep -q '"kind":"end"' "$TMP/out" && bad "to-json printed the end record of a bad stream" || ok
expect_rc 65 "to-json empty" -- to-json /dev/null
expect_err "empty input" "to-json empty"
printf '\x81\xa1a\x01\x81\xa1b\xc4\x01\x00' >"$TMP/raw.mp"
expect_rc 65 "to-json without a header" -- to-json "$TMP/raw.mp"
expect_err "expected a header record first" "to-json without a header"
expect_rc 0 "to-json --raw" -- to-json --raw "$TMP/raw.mp"
expect_eq "$(cat "$TMP/out")" $'{"a":1}\n{"b":{"bin_base64":"AA=="}}' "to-json --raw output"
printf '\x81\xa1a\xa2\xc3\x28' >"$TMP/utf.mp"
expect_rc 65 "to-json invalid UTF-8" -- to-json --raw "$TMP/utf.mp"
expect_err "record 1: field .a: invalid UTF-8" "to-json invalid UTF-8"
printf '\x81\x01\x02' >"$TMP/key.mp"
expect_rc 65 "to-json int key" -- to-json --raw "$TMP/key.mp"
expect_err "JSON object keys must be strings" "to-json int key"

# --- output errors ---------------------------------------------------------------------------
if [ -w /dev/full ]; then
    expect_rc 74 "to-json > /dev/full" -- sh -c 'to-json "$1" >/dev/full' sh "$TMP/basic.mp"
    expect_err "to-json: write <stdout>: No space left on device" "to-json > /dev/full"
    expect_rc 74 "from-json > /dev/full" -- sh -c 'from-json "$1" >/dev/full' sh "$D/stream-basic.jsonl"
    expect_err "from-json: write <stdout>: No space left on device" "from-json > /dev/full"
fi
for i in $(seq 20000); do echo "{\"kind\":\"example\",\"i\":$i,\"text\":\"some words to make it longer\"}"; done >"$TMP/big.jsonl"
from-json --frame srlm.t "$TMP/big.jsonl" >"$TMP/big.mp"
st=$(bash -c 'set -o pipefail; trap "" PIPE; to-json "$1" 2>"$2" | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}' sh "$TMP/big.mp" "$TMP/pipe.err")
expect_eq "$st" 141 "to-json | head -c 1: status"
expect_eq "$(cat "$TMP/pipe.err")" "" "to-json | head -c 1: quiet"
st=$(bash -c 'set -o pipefail; trap "" PIPE; from-json --frame x "$1" 2>"$2" | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}' sh "$TMP/big.jsonl" "$TMP/pipe.err")
expect_eq "$st" 141 "from-json | head -c 1: status"
expect_eq "$(cat "$TMP/pipe.err")" "" "from-json | head -c 1: quiet"

# --- random and mutated bytes: 65 (or 0 for a harmless mutation), never a signal or a hang -------
if [ $have_node = 1 ]; then
    for seed in 1 2 3 4 5 6 7 8; do
        $ORACLE random $seed 4096 >"$TMP/rand.bin"
        expect_rc 65 "to-json random bytes seed $seed" -- to-json "$TMP/rand.bin"
        expect_rc 65 "to-json --raw random bytes seed $seed" -- to-json --raw "$TMP/rand.bin"
        expect_rc 65 "from-json random bytes seed $seed" -- from-json "$TMP/rand.bin"
    done
    odd=0
    for seed in $(seq 1 60); do
        $ORACLE mutate $seed "$TMP/basic.mp" >"$TMP/mut.mp"
        rc=0; timeout 20 to-json "$TMP/mut.mp" >/dev/null 2>"$TMP/mut.err" || rc=$?
        case $rc in 0|65) ;; *) odd=$((odd + 1)); echo "mutation $seed: status $rc: $(cat "$TMP/mut.err")" >&2 ;; esac
    done
    expect_eq $odd 0 "mutated streams end with 0 or 65"
fi

finish
