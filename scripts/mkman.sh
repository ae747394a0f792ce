#!/usr/bin/env bash
# mkman.sh — writes the man page of one srlm tool, or of the front command, from its --help with
# Debian's help2man (make man; docs/install.md).
#
#   scripts/mkman.sh PROGRAM PAGE_NAME OUT
#
# PROGRAM is bin/<tool> or scripts/srlm; PAGE_NAME the command as installed (srlm-<tool>, srlm).
# The help is given to help2man in the shape it parses (`scripts/mkman.sh --help-of PROGRAM`
# prints it): "Usage:" capitalised with its continuation lines joined (SYNOPSIS; a further
# usage line of the program becomes an "or:" line), and the "Exit status:" paragraph as a
# section of its own (EXIT STATUS: help2man's "*Section*" line). The NAME section's one-line description is in the table below.
set -euo pipefail

if [ "${1:-}" = --help-of ]; then
    "$2" --help | awk '
        NR == 1 && sub(/^usage: /, "Usage: ") { u = 1; line = $0; split($2, w, " "); name = w[1]; next }
        u && /^ +[^ ]/ {
            s = $0; sub(/^ +/, "", s)
            if (index(s, name " ") == 1) { print line; line = "  or: " s } else line = line " " s
            next
        }
        u { print line; u = 0 }
        sub(/^Exit status: /, "") { print "*Exit status*" }
        { print }
        END { if (u) print line }'
    exit
fi
[ $# = 3 ] || { echo "usage: scripts/mkman.sh PROGRAM PAGE_NAME OUT" >&2; exit 64; }
prog=$1 page=$2 out=$3
command -v help2man >/dev/null || { echo "mkman.sh: help2man is missing (apt-get install help2man; .ci/deps.sh installs it)" >&2; exit 69; }

case ${page#srlm-} in
    srlm)           desc="run the tools and pipelines of the srlm toolkit" ;;
    tokenize)       desc="tokenize JSON lines into srlm example records" ;;
    teacher-logits) desc="add a teacher's top-k log-probs to srlm example records" ;;
    sft-step)       desc="supervised fine-tuning or distillation on example records" ;;
    rollout)        desc="sample completions from a model, with per-token log-probs" ;;
    score)          desc="score sampled completions with rewards" ;;
    rl-step)        desc="GRPO, DAPO and Dr. GRPO policy updates on scored samples" ;;
    evaluate)       desc="pass@1, pass@k and maj@k of scored samples, with 95% intervals" ;;
    to-json)        desc="an srlm record stream as JSON lines or CSV" ;;
    from-json)      desc="JSON lines as an srlm record stream" ;;
    init-model)     desc="create a randomly initialised model directory" ;;
    make-task)      desc="generate the arithmetic task, or convert GSM8K-style data" ;;
    lora-merge)     desc="merge a LoRA adapter into its base model" ;;
    *)              desc="a tool of the srlm post-training toolkit" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/srlm-mkman.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prog=$(readlink -f "$prog")
# help2man runs "$page --help" and "--version"; the wrapper carries the page's name and rewrites
# the help for help2man's sections.
self=$(readlink -f "$0")
cat >"$tmp/$page" <<EOF
#!/bin/sh
case \$1 in
    --help) exec "$self" --help-of "$prog" ;;
    *) exec "$prog" "\$@" ;;
esac
EOF
chmod +x "$tmp/$page"
version=$("$prog" --version | head -n 1)
if [ "$page" = srlm ]; then see=".BR srlm-TOOL (1)
for each tool (srlm --list names them),"; else see=".BR srlm (1),"; fi
cat >"$tmp/include" <<EOF
[SEE ALSO]
$see
and the documentation installed with srlm: share/doc/srlm/README.md and share/doc/srlm/docs/
(install.md: the front command and these pages).
EOF
help2man --no-info --no-discard-stderr --section=1 --name="$desc" \
         --version-string="$page ${version#* }" --include="$tmp/include" --output="$out.tmp" "$tmp/$page"
mv "$out.tmp" "$out"
