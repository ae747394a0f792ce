#!/usr/bin/env bash
# tests/cli/install.sh — make install into a temporary prefix (and with DESTDIR), then the tools
# and a pipeline run from that prefix alone (PATH = PREFIX/bin, /usr/bin, /bin): through the front
# command `srlm TOOL`, as srlm-TOOL, and `srlm sft` (a pipeline that calls the tools by their short
# names); every man page renders with man -l; the bash completion loads and completes; make
# uninstall leaves no file behind and nothing else touched.
source "$(dirname "$0")/../lib.sh"

P=$TMP/p
tools=()
for f in "$TOP"/tools/*.c; do f=${f##*/}; tools+=("${f%.c}"); done
pipes=()
for f in "$TOP"/pipelines/*.sh; do f=${f##*/}; pipes+=("${f%.sh}"); done

# "${run[@]}" CMD...: CMD with only the installed prefix and the system on PATH.
run=(env -i HOME="$TMP" LANG=C.UTF-8 PATH="$P/bin:/usr/bin:/bin")

expect_rc 0 "make install PREFIX" -- make -s -C "$TOP" install PREFIX="$P"

# the layout
missing=()
for f in bin/srlm libexec/srlm/MANIFEST share/doc/srlm/README.md share/doc/srlm/docs/install.md \
         share/doc/srlm/docs/metrics.md share/man/man1/srlm.1 share/bash-completion/completions/srlm \
         libexec/srlm/examples/arith/student.json share/srlm/examples/arith/tokenizer.json; do
    [ -e "$P/$f" ] || missing+=("$f")
done
for t in "${tools[@]}"; do
    for f in "bin/srlm-$t" "libexec/srlm/bin/$t" "share/man/man1/srlm-$t.1" \
             "share/bash-completion/completions/srlm-$t"; do
        [ -e "$P/$f" ] || missing+=("$f")
    done
    [ -e "$P/bin/$t" ] && missing+=("bin/$t is on PATH under its short name")
done
for p in "${pipes[@]}"; do [ -x "$P/libexec/srlm/pipelines/$p.sh" ] || missing+=("pipelines/$p.sh"); done
expect_eq "${missing[*]:-}" "" "installed files (${#tools[@]} tools, ${#pipes[@]} pipelines)"

# a small pipeline from the prefix alone, through the front command
expect_rc 1 "the short names are not on PATH" -- "${run[@]}" bash -c 'command -v tokenize'
expect_rc 0 "srlm make-task | srlm tokenize | srlm to-json" -- "${run[@]}" bash -c \
    'set -o pipefail; srlm make-task --split train --n 20 | srlm tokenize --tokenizer "$1" | srlm to-json' \
    _ "$P/share/srlm/examples/arith"
expect_eq "$(grep -c '"kind":"example"' "$TMP/out")" 20 "20 example records"
expect_eq "$(head -n 1 "$TMP/out" | grep -o '"producer":{"name":"tokenize"')" '"producer":{"name":"tokenize"' \
    "the tool runs under its own name"
expect_rc 0 "the same as srlm-TOOL commands" -- "${run[@]}" bash -c \
    'set -o pipefail; srlm-make-task --split train --n 20 | srlm-tokenize --tokenizer "$1" | srlm-to-json' \
    _ "$P/share/srlm/examples/arith"
expect_eq "$(grep -c '"kind":"example"' "$TMP/out")" 20 "20 example records through srlm-TOOL"
expect_rc 0 "srlm --list" -- "${run[@]}" srlm --list
expect_eq "$(tr '\n' ' ' <"$TMP/out")" "$(printf '%s ' "${tools[@]}" "${pipes[@]}")" "srlm --list names every tool and pipeline"
expect_rc 0 "srlm --version" -- "${run[@]}" srlm --version
expect_eq "$(cat "$TMP/err")" "" "srlm --version: empty stderr"
expect_eq "$(cut -d' ' -f1 "$TMP/out")" srlm "srlm --version"
expect_rc 64 "srlm with an unknown command" -- "${run[@]}" srlm no-such-tool
expect_err "srlm: 'no-such-tool' is not an srlm tool or pipeline" "unknown command message"
expect_rc 64 "srlm alone" -- "${run[@]}" srlm
expect_rc 64 "a path is no command" -- "${run[@]}" srlm ../bin/tokenize
expect_rc 0 "srlm help tokenize" -- "${run[@]}" srlm help tokenize
expect_eq "$(head -c 15 "$TMP/out")" "usage: tokenize" "srlm help TOOL is its --help"

# a pipeline (sft.sh calls tokenize and sft-step by their short names): srlm puts them on PATH
cd "$TMP" || exit 1
expect_rc 0 "srlm init-model" -- "${run[@]}" srlm init-model -q --config "$P/share/srlm/examples/arith/student.json" \
    --tokenizer "$P/share/srlm/examples/arith" --out "$TMP/m0"
"${run[@]}" srlm make-task --split train --n 16 >"$TMP/train.jsonl"
expect_rc 0 "srlm sft (a pipeline) from the prefix" -- "${run[@]}" srlm sft "$TMP/m0" "$TMP/train.jsonl" "$TMP/s1" --batch-tokens 512 -q
[ -s "$TMP/s1/model.safetensors" ] && [ "$(wc -l <"$TMP/s1/loss.tsv")" -ge 2 ] && ok || bad "sft pipeline wrote no model or losses"
expect_rc 0 "srlm grpo.sh --help" -- "${run[@]}" srlm grpo.sh --help
expect_eq "$(grep -c '^usage: pipelines/grpo.sh' "$TMP/out")" 1 "srlm grpo.sh --help is the pipeline's help"

# man pages: every one renders, under its installed name, also found by man -M
for page in srlm "${tools[@]/#/srlm-}"; do
    out=$(MANWIDTH=100 man -l "$P/share/man/man1/$page.1" 2>"$TMP/man.err")
    if grep -q "^NAME" <<<"$out" && grep -Eq "^ *$page +- " <<<"$out" && grep -q "^SYNOPSIS" <<<"$out" \
       && [ ! -s "$TMP/man.err" ]; then ok; else bad "man page $page: $(head -c 300 "$TMP/man.err")"; fi
done
expect_eq "$(MANWIDTH=100 man -M "$P/share/man" srlm-tokenize 2>&1 | grep -c -- '--tokenizer')" 2 \
    "man -M finds srlm-tokenize; its options are there"
expect_eq "$(MANWIDTH=100 man -l "$P/share/man/man1/srlm-tokenize.1" | grep -c '^EXIT STATUS')" 1 "EXIT STATUS section"

# bash completion: loads under both names and completes options, tools and pipelines
comp() {   # comp FILE WORD... : the completions of the last word
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _srlm; echo "${COMPREPLY[*]}"' _ "$@"
}
C=$P/share/bash-completion/completions
expect_eq "$(comp "$C/srlm" srlm tokenize --tok)" "--tokenizer" "srlm tokenize --tok<TAB>"
expect_eq "$(comp "$C/srlm-rollout" srlm-rollout --tem)" "--temperature" "srlm-rollout --tem<TAB>"
expect_eq "$(comp "$C/srlm" srlm gr)" "grpo" "srlm gr<TAB>"
expect_eq "$(comp "$C/srlm" srlm grpo --prompts-p)" "--prompts-per-iter" "srlm grpo --prompts-p<TAB>"
expect_eq "$(comp "$C/srlm" srlm help to)" "to-json tokenize" "srlm help to<TAB>"
expect_eq "$(comp "$C/srlm" srlm tokenize fi)" "" "a non-option word is left to file completion"
expect_eq "$(bash -c 'source "$1"; complete -p srlm-sft-step' _ "$C/srlm")" "complete -o default -F _srlm srlm-sft-step" \
    "completion registered for srlm-TOOL"

# uninstall: no file of srlm's left, files of others kept
mkdir -p "$P/share/man/man1"
echo keep >"$P/bin/other-tool"
echo keep >"$P/share/man/man1/other.1"
echo "$P/bin/srlm-retired" >>"$P/libexec/srlm/MANIFEST"   # a tool installed by an older source tree
echo old >"$P/bin/srlm-retired"
expect_rc 0 "make uninstall" -- make -s -C "$TOP" uninstall PREFIX="$P"
left=$(cd "$P" && find . \( -type f -o -type l \) ! -name other-tool ! -name other.1 | sort | tr '\n' ' ')
expect_eq "$left" "" "nothing of srlm's left after make uninstall"
[ -f "$P/bin/other-tool" ] && [ -f "$P/share/man/man1/other.1" ] && ok || bad "uninstall removed others' files"

# DESTDIR: staged under it, paths inside name the final PREFIX, never the staging root
D=$TMP/stage
expect_rc 0 "make install DESTDIR" -- make -s -C "$TOP" install DESTDIR="$D" PREFIX=/opt/srlm
expect_eq "$(grep -c "^root='/opt/srlm/libexec/srlm'$" "$D/opt/srlm/bin/srlm")" 1 "srlm points at the final libexec"
expect_eq "$(readlink "$D/opt/srlm/libexec/srlm/examples")" /opt/srlm/share/srlm/examples "examples link names the final path"
expect_eq "$(grep -rlF "$D" "$D" | head -n 3)" "" "no file mentions the staging root"
expect_eq "$(grep -c '^/opt/srlm/' "$D/opt/srlm/libexec/srlm/MANIFEST")" "$(wc -l <"$D/opt/srlm/libexec/srlm/MANIFEST")" \
    "MANIFEST lists final paths"
expect_rc 0 "make uninstall DESTDIR" -- make -s -C "$TOP" uninstall DESTDIR="$D" PREFIX=/opt/srlm
expect_eq "$(find "$D" \( -type f -o -type l \) | head -n 3)" "" "nothing left under DESTDIR"

finish
