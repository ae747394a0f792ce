#!/usr/bin/env bash
# tests/fuzz/run.sh — runs the libFuzzer harnesses (build/fuzz/bin/fuzz-*; `make fuzz-build`).
#
#   tests/fuzz/run.sh [--runs N] [HARNESS...]   short, reproducible: replay tests/fuzz/regress/<h>/*,
#                                               then N mutations (default 4000, fixed -seed) from
#                                               the committed seeds (tests/fuzz/corpus/<h>)
#   tests/fuzz/run.sh --long SECONDS [H...]     SECONDS of fuzzing per harness, keeping the grown
#                                               corpus in build/fuzz/corpus/<h> across runs
#
# A crash, a sanitizer report, a property violation (FUZZ_FAIL), an undocumented exit status or
# an input running longer than FUZZ_TIMEOUT seconds (default 60: generous, since a fuzz run niced
# on a busy machine can stall for seconds; the slowest seed takes 0.05 s) fails the run; the
# input is saved under build/fuzz/crashes/<h>/ with the command that reproduces it. Copy it to tests/fuzz/regress/<h>/ once the bug is fixed.
# Prints one line per harness: "fuzz-<h>: N inputs replayed, N executions, N s, cov N, ok|FAIL".
# Exit status: 0 clean, 1 a failure, 2 usage or harness missing.
set -u
cd "$(dirname "$0")/../.."
runs=4000 long=0 tmo=${FUZZ_TIMEOUT:-60}
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --long) long=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=($(ls tests/fuzz/fuzz-*.c | sed 's|.*/fuzz-||; s|\.c$||'))
tmp=$(mktemp -d "${TMPDIR:-/tmp}/srlm-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export TMPDIR=$tmp
# Leaks are checked (libFuzzer runs LeakSanitizer after inputs that malloc more than they free).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for h in "${harnesses[@]}"; do
    bin=build/fuzz/bin/fuzz-$h
    [ -x "$bin" ] || { echo "run.sh: $bin missing (make fuzz-build)" >&2; exit 2; }
    crashes=build/fuzz/crashes/$h; mkdir -p "$crashes"
    log=$tmp/$h.log nreg=0 res=ok
    # 1. regression inputs: each must now be handled (return or a documented exit)
    if [ -d tests/fuzz/regress/$h ] && [ -n "$(ls -A tests/fuzz/regress/$h)" ]; then
        nreg=$(ls tests/fuzz/regress/$h | wc -l)
        if ! timeout 300 "$bin" -close_fd_mask=3 -timeout=$tmo tests/fuzz/regress/$h/* >"$log" 2>&1; then
            res=FAIL; echo "fuzz-$h: a regression input fails again:" >&2; grep -E 'Running:|ERROR|SUMMARY|property|trap:' "$log" | tail -n 6 >&2
        fi
    fi
    # 2. fuzzing
    if [ "$long" != 0 ]; then
        corpus=build/fuzz/corpus/$h; mkdir -p "$corpus"
        # fork mode: keep fuzzing after a crash (each is saved), one job at a time
        opts=(-max_total_time="$long" -fork=1 -ignore_crashes=1 -ignore_timeouts=1)
    else
        corpus=$tmp/corpus-$h; mkdir -p "$corpus"
        opts=(-runs="$runs" -seed=1 -max_len=8192)
    fi
    t0=$SECONDS
    if ! timeout $(( long > 0 ? long + 600 : 600 )) "$bin" "${opts[@]}" -timeout=$tmo -rss_limit_mb=2048 \
            -close_fd_mask=3 -print_final_stats=1 -dict=tests/fuzz/fuzz.dict \
            -artifact_prefix="$crashes/" "$corpus" tests/fuzz/corpus/$h >"$log" 2>&1; then
        res=FAIL
        echo "fuzz-$h: failure:" >&2
        grep -E 'ERROR|SUMMARY|property|trap:|Test unit written' "$log" | sort -u | head -n 8 >&2
        grep -E '^ +#[0-9]+ ' "$log" | head -n 12 >&2   # the first stack: enough to diagnose a flake
        a=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        [ -n "$a" ] && echo "fuzz-$h: reproduce: $bin $a" >&2
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\): cov.*/\1/p' "$log" | tail -n 1)   # fork mode
    if [ "$long" != 0 ]; then
        n=$(ls "$crashes" | wc -l)
        [ "$n" = 0 ] || { res=FAIL; echo "fuzz-$h: $n crashing inputs in $crashes" >&2; }
        cp "$log" "build/fuzz/$h.log"
    fi
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
    echo "fuzz-$h: $nreg inputs replayed, ${execs:-0} executions, $((SECONDS - t0)) s, cov ${cov:-?}, $res"
    [ $res = ok ] || status=1
done
exit $status
