#!/usr/bin/env bash
# tests/cli/help.sh — every tool in bin/ and every script in pipelines/ answers -h and --help
# (issue 15 item 4): status 0, its usage on stdout, nothing on stderr; a tool's help ends with
# a paragraph "Exit status: ...". A pipeline given --help does nothing else: it is run from a copy
# of the tree whose bin/ holds stubs that log any call, in an empty working directory, and
# neither the log nor the directory may gain anything.
source "$(dirname "$0")/../lib.sh"

tools=()
for t in "$TOP"/bin/*; do [ -x "$t" ] && tools+=("$(basename "$t")"); done
[ ${#tools[@]} -ge 12 ] && ok || bad "only ${#tools[@]} tools in bin/ (make first)"

# --- tools ---------------------------------------------------------------------------------------
for t in "${tools[@]}"; do
    for h in -h --help; do
        expect_rc 0 "$t $h" -- "$t" "$h"
        head -n 1 "$TMP/out" | grep -q "^usage: $t" && ok || bad "$t $h: stdout does not start with 'usage: $t'"
        [ ! -s "$TMP/err" ] && ok || bad "$t $h: stderr not empty: $(head -c 200 "$TMP/err")"
        last=$(awk -v RS= 'NF { p = $0 } END { print p }' "$TMP/out" | head -n 1)
        [[ $last == "Exit status"* ]] && ok || bad "$t $h: the last paragraph is not the exit statuses: '$last'"
    done
done

# --- pipelines -----------------------------------------------------------------------------------
mkdir -p "$TMP/tree/bin" "$TMP/tree/pipelines" "$TMP/cwd"
cp "$TOP"/pipelines/*.sh "$TMP/tree/pipelines/"
for t in "${tools[@]}" jq gnuplot mkdir; do
    printf '#!/bin/sh\necho "%s $*" >> "%s/ran.log"\nexit 1\n' "$t" "$TMP" > "$TMP/tree/bin/$t"
    chmod +x "$TMP/tree/bin/$t"
done
: > "$TMP/ran.log"
find "$TMP/tree" | sort > "$TMP/tree.before"
for p in "$TOP"/pipelines/*.sh; do
    name=$(basename "$p")
    for h in -h --help; do
        rc=0
        (cd "$TMP/cwd" && PATH="$TMP/tree/bin:$PATH" timeout 60 bash "$TMP/tree/pipelines/$name" "$h") \
            > "$TMP/out" 2> "$TMP/err" || rc=$?
        expect_eq "$rc" 0 "$name $h: exit status"
        grep -qi "usage" "$TMP/out" && ok || bad "$name $h: no usage on stdout"
        [ ! -s "$TMP/err" ] && ok || bad "$name $h: stderr not empty: $(head -c 200 "$TMP/err")"
        [ ! -s "$TMP/ran.log" ] && ok || bad "$name $h ran: $(head -n 3 "$TMP/ran.log" | tr '\n' ';')"
        [ -z "$(ls -A "$TMP/cwd")" ] && ok || bad "$name $h created $(ls -A "$TMP/cwd" | head -n 3 | tr '\n' ' ')"
        find "$TMP/tree" | sort | cmp -s - "$TMP/tree.before" && ok || bad "$name $h wrote into its tree"
        : > "$TMP/ran.log"
        rm -rf "${TMP:?}/cwd" && mkdir "$TMP/cwd"
    done
done
finish
