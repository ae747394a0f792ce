#!/usr/bin/env bash
# tests/run.sh — runs every unit test binary (build/tests/bin/test-*) and every CLI test script
# (tests/cli/*.sh), each under a time limit, adds up their "N passed, N failed" lines and prints
# the total as the last line. Exits non-zero if anything failed, crashed or printed no count.
# Usage: tests/run.sh [PATTERN]   (run only the tests whose name contains PATTERN)
set -u
cd "$(dirname "$0")/.."
pat=${1:-}
# PyTorch's BLAS may be OpenBLAS, which picks slow kernels on AVX-512 VMs unless told (see
# docs/oracle.md); forcing SkylakeX on a CPU without AVX-512 would crash it, hence the check.
grep -q avx512f /proc/cpuinfo 2>/dev/null && export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
total_p=0 total_f=0
run_one() {
    local name=$1; shift
    local t0=$SECONDS out rc=0
    out=$(timeout 1200 "$@" 2>"build/tests/$name.err") || rc=$?
    local line p f
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        p=0 f=1
        echo "FAIL $name: no result line (status $rc)"; tail -n 5 "build/tests/$name.err" | sed 's/^/    /'
    else
        p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")
        f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; echo "FAIL $name: status $rc"; fi
        [ "$f" != 0 ] && { tail -n 20 "build/tests/$name.err" | sed 's/^/    /'; }
        printf '%-28s %s (%ds)\n' "$name" "$(sed -E 's/.*: //' <<<"$line")" $((SECONDS - t0))
    fi
    total_p=$((total_p + p)); total_f=$((total_f + f))
}
mkdir -p build/tests
for t in build/tests/bin/test-*; do
    [ -x "$t" ] || continue
    n=$(basename "$t"); [[ -n $pat && $n != *$pat* ]] && continue
    run_one "$n" "$t"
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    n=cli-$(basename "$t" .sh); [[ -n $pat && $n != *$pat* ]] && continue
    run_one "$n" bash "$t"
done
echo "$total_p passed, $total_f failed"
[ "$total_f" = 0 ]
