# tests/cli/fuzz.sh — a short, reproducible fuzz run of every harness in tests/fuzz/ (libFuzzer +
# ASan + UBSan; docs/reliability.md): builds them (`make fuzz-build`, clang), replays every
# regression input in tests/fuzz/regress/<harness>/, then runs a fixed number of mutations with a
# fixed seed from the committed seed corpus. One check per harness: no crash, no sanitizer report,
# no property violation, no undocumented exit status, no input slower than 60 s. `make fuzz` runs
# the long version. Fails where clang or its libFuzzer runtime is missing (make check installs them).
. "$(dirname "$0")/../lib.sh"
cd "$TOP"
# as the Makefile picks it: clang, else clang-14 (all that Debian's clang-14 package installs)
export FUZZ_CC=${FUZZ_CC:-$(command -v clang || command -v clang-14 || echo clang)}
if ! command -v "$FUZZ_CC" >/dev/null || ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
        "$FUZZ_CC" -x c -fsanitize=fuzzer -o "$TMP/probe" - 2>/dev/null; then
    # make check installs them (.ci/deps.sh): missing, the harnesses are not run, which is a failure
    bad "clang with libFuzzer missing (apt-get install clang-14 libclang-rt-14-dev)"
    finish; exit
fi
if ! nice -n 10 make -s fuzz-build >"$TMP/build.log" 2>&1; then
    bad "make fuzz-build failed: $(tail -n 3 "$TMP/build.log")"; finish; exit
fi
runs=${SRLM_FUZZ_RUNS:-4000}
for h in $(ls tests/fuzz/fuzz-*.c | sed 's|.*/fuzz-||; s|\.c$||'); do
    if nice -n 10 tests/fuzz/run.sh --runs "$runs" "$h" >"$TMP/$h.out" 2>"$TMP/$h.err"; then
        ok
    else
        bad "fuzz-$h: $(cat "$TMP/$h.out") $(head -c 2400 "$TMP/$h.err")"
    fi
    cat "$TMP/$h.out" >&2
done
finish
