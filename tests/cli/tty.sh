# tests/cli/tty.sh — a tool never writes msgpack to a terminal (issue 16 §2): with stdout on a
# pseudo-terminal (script(1)) every stream-writing tool exits 64 with one line that says to pipe
# into to-json, before it writes a byte; with stdout on a pipe or a file it runs as before.
. "$(dirname "$0")/../lib.sh"
command -v script >/dev/null || { bad "script(1) missing (util-linux)"; finish; exit 1; }
cd "$TMP"
A=$TOP/examples/arith
init-model -q --config "$A/student.json" --tokenizer "$A" --out m --seed 1
make-task --n 4 --seed 2 > t.jsonl
tokenize -q --tokenizer "$A" t.jsonl > ex.mp
# on_tty NAME CMD: runs CMD with stdout (and stderr) on a pseudo-terminal; checks status and text
on_tty() {
    local name=$1 cmd=$2
    script -qec "$cmd; echo \"rc=\$?\"" /dev/null < /dev/null > tty.out 2>&1
    grep -q 'rc=64' tty.out && ok || bad "$name on a terminal: want status 64: $(tr -d '\r' < tty.out | head -c 300)"
    grep -q "not writing msgpack to a terminal; pipe into to-json" tty.out && ok || bad "$name: message"
    # nothing binary reached the terminal: the output is the message and the status line only
    [ "$(tr -d '\r' < tty.out | grep -cv -e 'not writing msgpack' -e '^rc=')" = 0 ] && ok || bad "$name wrote more than its message"
}
on_tty tokenize "tokenize --tokenizer $A t.jsonl"
on_tty from-json "to-json ex.mp | from-json"
on_tty teacher-logits "teacher-logits --model m --top-k 4 ex.mp"
on_tty rollout "rollout --model m -G 1 --max-new-tokens 4 ex.mp"
on_tty score "rollout --model m -G 1 --max-new-tokens 4 ex.mp | score"
on_tty sft-step "sft-step --model m --out o --steps 1 ex.mp"
# a pipe and a file are still fine
script -qec "tokenize --tokenizer $A t.jsonl | to-json --no-frame | wc -l; echo \"rc=\$?\"" /dev/null < /dev/null > tty.out 2>&1
grep -q '^4' tty.out && grep -q 'rc=0' tty.out && ok || bad "a pipe from a terminal session: $(head -c 200 tty.out)"
finish
