# tests/lib.sh — sourced by tests/cli/*.sh. Gives a temp dir, the built tools on PATH, and
# assertion helpers that count results; end every script with `finish`.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$TOP/bin:$PATH"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/srlm-test.XXXXXX")
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT
SHARED=${SRLM_SHARED:-$TOP/../shared}
NAME=$(basename "$0" .sh)
pass=0 fail=0

ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "$NAME: FAIL: $*" >&2; }

# expect_rc RC DESC -- CMD...: runs CMD (stdout to $TMP/out, stderr to $TMP/err), checks status.
expect_rc() {
    local want=$1 desc=$2; shift 3
    local rc=0
    timeout 120 "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
    if [ "$rc" = "$want" ]; then ok; else bad "$desc: status $rc, want $want; stderr: $(head -c 300 "$TMP/err")"; fi
}
# expect_err TEXT DESC: the stderr of the previous expect_rc contains TEXT.
expect_err() {
    if grep -qF -- "$1" "$TMP/err"; then ok; else bad "$2: stderr lacks '$1': $(tail -n 2 "$TMP/err")"; fi
}
# expect_eq A B DESC
expect_eq() { if [ "$1" = "$2" ]; then ok; else bad "$3: got '$1', want '$2'"; fi; }
# expect_same FILE1 FILE2 DESC
expect_same() { if cmp -s "$1" "$2"; then ok; else bad "$3: $1 and $2 differ"; fi; }

# need_torch [MODULE...]: the PyTorch oracle's setup — PY, REF (tests/oracle/ref_model.py) and
# OPENBLAS_CORETYPE (torch's OpenBLAS picks slow kernels on AVX-512 VMs, and SkylakeX would crash
# a CPU without AVX-512, hence the check). Without torch (and MODULEs) one failed check ends the
# script: make check installs them.
need_torch() {
    PY=/usr/bin/python3
    grep -q avx512f /proc/cpuinfo 2>/dev/null && export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
    REF="$TOP/tests/oracle/ref_model.py"
    local mods
    mods=$(IFS=,; echo "torch${*:+,$*}")
    if ! $PY -c "import $mods" 2>/dev/null; then
        echo "$NAME: python3 cannot import $mods (make check installs them)" >&2
        echo "$NAME: 0 passed, 1 failed"; exit 1
    fi
}

finish() {
    echo "$NAME: $pass passed, $fail failed"
    [ "$fail" = 0 ]
}
