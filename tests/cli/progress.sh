# tests/cli/progress.sh — progress reports (issue 16 §2): on a terminal one self-updating line
# (carriage returns, done count, rate, elapsed), in a log a plain line per --progress-every
# (0: every update, so the count is exact), nothing with -q, and the trainers' step lines with
# elapsed and eta. Records and streams are unchanged by any of it.
. "$(dirname "$0")/../lib.sh"
command -v script >/dev/null || { bad "script(1) missing (util-linux)"; finish; exit 1; }
cd "$TMP"
A=$TOP/examples/arith
init-model -q --config "$A/student.json" --tokenizer "$A" --out m --seed 1
make-task --n 12 --seed 2 > t.jsonl
# in a log: one plain line per record with --progress-every 0, the last one "12 records"
tokenize --tokenizer "$A" --progress-every 0 t.jsonl > ex.mp 2> tok.err
expect_eq "$(grep -c '^tokenize: [0-9]* records ' tok.err)" 12 "tokenize: a line per record with --progress-every 0"
grep -q '^tokenize: 12 records .*records/s .*tok/s .*elapsed 0:0' tok.err && ok || bad "tokenize progress line: $(tail -n 2 tok.err)"
tokenize --tokenizer "$A" -q --progress-every 0 t.jsonl > ex2.mp 2> q.err
expect_eq "$(wc -c < q.err)" 0 "-q: no progress"
expect_same ex.mp ex2.mp "progress does not change the stream"
rollout --model m -G 2 --max-new-tokens 4 --batch-prompts 4 --progress-every 0 ex.mp > s.mp 2> ro.err
# continuous batching emits groups one at a time, in input order: a line per prompt group
expect_eq "$(grep -o '^rollout: [0-9]* prompts' ro.err | tr '\n' ',')" "$(seq -f 'rollout: %g prompts' 12 | tr '\n' ',')" \
    "rollout: a line per prompt group, counting up to 12"
teacher-logits --model m --top-k 4 --batch-tokens 64 --progress-every 0 ex.mp > tl.mp 2> tl.err
grep -q '^teacher-logits: 12 records\|^teacher-logits: [0-9]* records' tl.err && ok || bad "teacher-logits progress: $(head -n 2 tl.err)"
score -q s.mp | evaluate --progress-every 0 > /dev/null 2> ev.err
grep -q '^evaluate: 24 samples' ev.err && ok || bad "evaluate progress: $(head -n 2 ev.err)"
expect_rc 64 "--progress-every out of range" -- tokenize --tokenizer "$A" --progress-every -1 t.jsonl
# on a terminal: carriage returns and the clear-to-end-of-line code, and the line is cleared
script -qec "tokenize --tokenizer $A --progress-every 0 t.jsonl > tty.mp" /dev/null < /dev/null > tty.out 2>&1
grep -q $'\r'"tokenize: [0-9]* records" tty.out && ok || bad "tokenize on a terminal: no self-updating line: $(head -c 200 tty.out | cat -v)"
cmp -s tty.mp ex.mp && ok || bad "tokenize on a terminal: another stream"
[ "$(tr -cd '\n' < tty.out | wc -c)" = 0 ] && ok || bad "tokenize on a terminal: the live line printed newlines"
# trainers: elapsed and eta on every step line but the last
sft-step --model m --out o --steps 3 --batch-tokens 100 --truncate ex.mp > /dev/null 2> sft.err
expect_eq "$(grep -c 'step=[12]/3 .* elapsed=[0-9:]* eta=[0-9:]*' sft.err)" 2 "sft-step: elapsed and eta on the step lines"
finish
