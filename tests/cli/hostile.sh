# tests/cli/hostile.sh — hostile input for every stream tool (docs/reliability.md), table-driven:
# empty input, header only, a valid stream cut at every byte, random bytes, the wrong schema or
# version, a stream from the wrong upstream tool, token ids out of range, NaN/Inf in numeric
# arrays, a bin32 claiming 4 GB, unknown flags and out-of-range flag values (64), missing,
# unreadable or corrupt model files (65/66). Each must give its documented status and exactly one
# stderr line "<tool>: ...", never another signal, never a hang (every command under a timeout).
# Then reproducibility: the same input, seed and thread count give byte-identical output (and
# checkpoints) from tokenize, teacher-logits, rollout, score, evaluate, sft-step and rl-step.
# Cuts: every byte of the last 512 bytes of each valid stream (the data records and the end
# record; all of a short stream), every SRLM_HOSTILE_STRIDE-th byte (default 4) of the nested
# header before them.
. "$(dirname "$0")/../lib.sh"
cd "$TMP"
TOK=$TOP/tests/data/tok-tiny
stride=${SRLM_HOSTILE_STRIDE:-4}

# one_error TOOL: h.err holds exactly one error line, every line starts "TOOL: " (warnings about
# the input, "TOOL: warning: ...", may come before it; the last line is the reason).
one_error() {
    [ -s h.err ] && ! grep -qv "^$1: " h.err && [ "$(grep -cv "^$1: warning: " h.err)" = 1 ] &&
        ! tail -n 1 h.err | grep -q "^$1: warning: "
}
# hostile WANT DESC INPUT TOOL ARGS...: TOOL ARGS < INPUT exits WANT with one error line on
# stderr (see one_error). Timeout 30 s: a hang is status 124.
hostile() {
    local want=$1 desc=$2 in=$3 tool=$4; shift 4
    local rc=0
    timeout 30 "$tool" "$@" < "$in" > h.out 2> h.err || rc=$?
    if [ "$rc" != "$want" ]; then
        bad "$tool: $desc: status $rc, want $want: $(head -c 300 h.err)"; return
    fi
    if [ "$want" != 0 ] && ! one_error "$tool"; then
        bad "$tool: $desc: stderr is not one '$tool: ' error line: $(head -c 300 h.err)"; return
    fi
    ok
}

# --- fixtures -------------------------------------------------------------------------------
init-model --preset tiny --tokenizer "$TOK" --out M --seed 1 -q || { bad "init-model failed"; finish; exit; }
printf '{"id":"a","prompt":"ab","completion":"c","answer":"4"}\n' > p.jsonl
tokenize --tokenizer "$TOK" < p.jsonl > ex.mp &&
rollout --model M -G 2 --max-new-tokens 2 --seed 1 --threads 1 -q < ex.mp > s.mp &&
score -q < s.mp > sc.mp &&
teacher-logits --model M --top-k 2 --threads 1 -q < ex.mp > tl.mp &&
sft-step --model M --out O --threads 1 -q < ex.mp > met.mp &&
to-json < ex.mp > ex.jsonl || { bad "fixtures failed"; finish; exit; }

# tool | arguments | a valid input | a valid input of another schema (the wrong upstream)
tools=(
  "to-json||ex.mp|"
  "from-json||ex.jsonl|"
  "teacher-logits|--model M --top-k 2 --threads 1|ex.mp|met.mp"
  "sft-step|--model M --out OUT --threads 1|ex.mp|met.mp"
  "rollout|--model M --max-new-tokens 2 --seed 1 --threads 1|ex.mp|met.mp"
  "score||s.mp|ex.mp"
  "rl-step|--model M --out OUT --threads 1|sc.mp|ex.mp"
  "evaluate||sc.mp|ex.mp"
  "tokenize|--tokenizer $TOK|p.jsonl|"
)

# hand-made hostile streams: header for a schema, then raw msgpack bytes
python3 - <<'PY' || bad "hostile stream generation failed"
import random, struct
def s(x):
    b = x.encode(); return bytes([0xa0 | len(b)]) + b if len(b) < 32 else b'\xd9' + bytes([len(b)]) + b
def hdr(schema, ver=1):
    return b'\x83' + s('kind') + s('header') + s('schema') + s(schema) + s('schema_version') + bytes([ver])
end0 = b'\x82' + s('kind') + s('end') + s('records') + b'\x00'
for schema in ('srlm.examples', 'srlm.samples'):
    n = schema.split('.')[1]
    open(f'hdr-only-{n}.mp', 'wb').write(hdr(schema))
    open(f'version2-{n}.mp', 'wb').write(hdr(schema, 2) + end0)
    # a record whose "tokens" is a bin32 claiming 4 GB, then end of input
    open(f'bin4g-{n}.mp', 'wb').write(hdr(schema) + b'\x82' + s('kind') + s('x') + s('tokens') + b'\xc6\xff\xff\xff\xff' + b'\0' * 64)
    # an array32 claiming 4 billion elements
    open(f'arr4g-{n}.mp', 'wb').write(hdr(schema) + b'\x82' + s('kind') + s('x') + s('tokens') + b'\xdd\xff\xff\xff\xff' + b'\x01' * 64)
    # nesting 100 deep
    open(f'deep-{n}.mp', 'wb').write(hdr(schema) + b'\x81' + s('x') + b'\x91' * 100 + b'\x01' + end0)
    # a 0xc1 (never used) byte in the first record
    open(f'c1-{n}.mp', 'wb').write(hdr(schema) + b'\x81' + s('kind') + b'\xc1' + end0)
open('wrong-schema.mp', 'wb').write(hdr('srlm.metrics') + end0)
open('not-a-map.mp', 'wb').write(b'\x93\x01\x02\x03')
rnd = random.Random(7)
for i in range(4):
    open(f'random{i}.bin', 'wb').write(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 600))))
open('random-text.bin', 'wb').write(bytes(rnd.randrange(32, 127) for _ in range(500)))
PY
: > empty

# --- every tool: bad streams ------------------------------------------------------------------
for entry in "${tools[@]}"; do
    IFS='|' read -r tool args valid wrong <<<"$entry"
    read -ra a <<<"${args//OUT/out-$tool}"
    hostile 0 "valid input" "$valid" "$tool" "${a[@]}"
    case $tool in tokenize)
        # JSON lines in: empty input is an empty stream; junk lines are 65
        hostile 0 "empty input" empty "$tool" "${a[@]}"
        for f in random0.bin random1.bin random-text.bin ex.mp; do hostile 65 "$f" "$f" "$tool" "${a[@]}"; done
        continue ;;
    esac
    hostile 65 "empty input" empty "$tool" "${a[@]}"
    for f in random0.bin random1.bin random2.bin random3.bin random-text.bin; do
        hostile 65 "random bytes $f" "$f" "$tool" "${a[@]}"
    done
    [ "$tool" = from-json ] && { hostile 65 "msgpack instead of JSON" ex.mp "$tool"; }
    if [ "$tool" != from-json ]; then
        n=examples; [ "$valid" = ex.mp ] || n=samples
        [ "$tool" = to-json ] || hostile 65 "header only" hdr-only-$n.mp "$tool" "${a[@]}"
        [ "$tool" = to-json ] || hostile 65 "schema_version 2" version2-$n.mp "$tool" "${a[@]}"
        hostile 65 "bin32 claiming 4 GB" bin4g-$n.mp "$tool" "${a[@]}"
        hostile 65 "array32 claiming 4 G elements" arr4g-$n.mp "$tool" "${a[@]}"
        hostile 65 "nested 100 deep" deep-$n.mp "$tool" "${a[@]}"
        hostile 65 "0xc1 byte" c1-$n.mp "$tool" "${a[@]}"
        hostile 65 "top-level array" not-a-map.mp "$tool" "${a[@]}"
        if [ -n "$wrong" ]; then
            hostile 65 "wrong schema" wrong-schema.mp "$tool" "${a[@]}"
            hostile 65 "wrong upstream ($wrong)" "$wrong" "$tool" "${a[@]}"
        fi
    fi
    # the valid input cut at every byte (every cut loses the end record at least)
    size=$(wc -c < "$valid") cutbad=0
    # from-json: a cut just before the final newline is a complete stream
    [ "$tool" = from-json ] && size=$((size - 1))
    for ((n = 0; n < size; n++)); do
        [ $n -ge $((size - 512)) ] || [ $((n % stride)) = 0 ] || continue
        head -c $n "$valid" > cut
        rc=0; timeout 30 "$tool" "${a[@]}" < cut > h.out 2> h.err || rc=$?
        if [ $rc != 65 ] || ! one_error "$tool"; then
            cutbad=$((cutbad + 1))
            [ $cutbad -le 3 ] && bad "$tool: $valid cut at byte $n: status $rc, want 65 and one line: $(head -c 200 h.err)"
        else ok; fi
    done
    [ $cutbad -le 3 ] || bad "$tool: $((cutbad - 3)) more bad cuts"
done

# --- values out of range ----------------------------------------------------------------------
# token ids beyond the vocabulary (16), negative ids, a mask that is not 0/1
sed 's/"tokens":\[12,5,2,13\]/"tokens":[12,5,2,999999]/' ex.jsonl | from-json > oov.mp
sed 's/"tokens":\[12,5,2,13\]/"tokens":[12,-5,2,13]/' ex.jsonl | from-json > neg.mp
sed 's/"mask":\[0,0,1,1\]/"mask":[0,0,7,1]/' ex.jsonl | from-json > mask7.mp
for t in teacher-logits sft-step rollout; do
    e=${tools[*]}; for entry in "${tools[@]}"; do [[ $entry == "$t|"* ]] && IFS='|' read -r _ args _ _ <<<"$entry"; done
    read -ra a <<<"${args//OUT/out-oov-$t}"
    hostile 65 "token id 999999" oov.mp $t "${a[@]}"
    hostile 65 "negative token id" neg.mp $t "${a[@]}"
done
hostile 65 "mask value 7" mask7.mp sft-step --model M --out out-mask --threads 1
# NaN / Inf in numeric arrays and scalars
to-json < tl.mp > tl.jsonl; to-json < sc.mp > sc.jsonl
python3 - <<'PY'
import json
def rewrite(src, dst, f):
    out = []
    for line in open(src):
        r = json.loads(line)
        if r['kind'] not in ('header', 'end'): f(r)
        out.append(json.dumps(r))
    open(dst, 'w').write('\n'.join(out) + '\n')
def tl_nan(r):
    r['teacher_logprobs']['data'][0] = 'NaN'
def tl_inf(r):
    r['teacher_logprobs']['data'][-1] = 'Infinity'
def lp_nan(r):
    r['logprobs']['data'][0] = 'NaN'
def rw_nan(r):
    r['reward'] = 'NaN'; r['rewards']['correct'] = 'NaN'
rewrite('tl.jsonl', 'tl-nan.jsonl', tl_nan)
rewrite('tl.jsonl', 'tl-inf.jsonl', tl_inf)
rewrite('sc.jsonl', 'lp-nan.jsonl', lp_nan)
rewrite('sc.jsonl', 'rw-nan.jsonl', rw_nan)
PY
for f in tl-nan tl-inf lp-nan rw-nan; do from-json < $f.jsonl > $f.mp || bad "from-json $f"; done
hostile 65 "NaN teacher log-prob" tl-nan.mp sft-step --model M --out out-nan --loss kd --threads 1
hostile 65 "+Inf teacher log-prob" tl-inf.mp sft-step --model M --out out-inf --loss kd --threads 1
hostile 65 "NaN sampler log-prob" lp-nan.mp rl-step --model M --out out-lpnan --threads 1
hostile 65 "NaN reward" rw-nan.mp rl-step --model M --out out-rwnan --threads 1
hostile 65 "NaN reward" rw-nan.mp evaluate
[ ! -e out-nan/model.safetensors ] && ok || bad "sft-step wrote a checkpoint from a NaN input"

# --- flags --------------------------------------------------------------------------------------
# tool | a bad flag value (64) ...
flagcases=(
  "to-json|--bogus|--max-record-bytes 0|--max-record-bytes abc"
  "from-json|--bogus|--max-line-bytes -1|--kind"
  "tokenize|--bogus|--max-len -3|--truncate middle|--tokenizer"
  "teacher-logits|--bogus|--top-k 0|--top-k 5000|--temperature 0|--threads 0|--threads 99999|--batch-tokens abc"
  "sft-step|--bogus|--lr -1|--lr nan|--steps -2|--threads 0|--loss xx|--kd-beta 1.5|--batch-tokens 0|--save-dtype f64"
  "rollout|--bogus|-G 0|--temperature -1|--top-p 1.5|--min-p -0.1|--max-new-tokens -1|--seed x|--stop"
  "score|--bogus|--task xx|--reward correct=abc|--reward nope=1|--exec-timeout -1|--exec-batch 0"
  "rl-step|--bogus|--beta -1|--kl k9|--agg xx|--eps-low 2|--groups-per-step 0|--recipe ppo|--epochs 0"
  "evaluate|--bogus|--k 0|--k a,b|--threshold x|--bootstrap -1"
)
for entry in "${flagcases[@]}"; do
    IFS='|' read -ra f <<<"$entry"
    tool=${f[0]}
    for entry2 in "${tools[@]}"; do [[ $entry2 == "$tool|"* ]] && IFS='|' read -r _ args valid _ <<<"$entry2"; done
    read -ra a <<<"${args//OUT/out-flag-$tool}"
    for ((i = 1; i < ${#f[@]}; i++)); do
        read -ra bf <<<"${f[$i]}"
        rc=0; timeout 30 "$tool" "${a[@]}" "${bf[@]}" < "$valid" > h.out 2> h.err || rc=$?
        # a usage error is the message and the "Try --help" hint: two lines, the first "tool: "
        if [ $rc = 64 ] && head -n 1 h.err | grep -q "^$tool: "; then ok
        else bad "$tool ${f[$i]}: status $rc, want 64: $(head -c 200 h.err)"; fi
    done
done

# --- models -------------------------------------------------------------------------------------
mkdir -p nomodel badcfg badst trunc dirst
cp M/* badcfg/; echo '{"model_type": "llama", "hidden_size": ' > badcfg/config.json
cp M/* badst/; printf 'garbage, not safetensors' > badst/model.safetensors
cp M/* trunc/; head -c 2000 M/model.safetensors > trunc/model.safetensors
cp M/* dirst/; rm dirst/model.safetensors; mkdir dirst/model.safetensors
modelcases=(
  "66|missing directory|/nonexistent/model"
  "66|no files|nomodel"
  "65|corrupt config.json|badcfg"
  "65|garbage model.safetensors|badst"
  "65|truncated model.safetensors|trunc"
  "66|model.safetensors is a directory|dirst"
)
for mc in "${modelcases[@]}"; do
    IFS='|' read -r want desc dir <<<"$mc"
    hostile $want "$desc" ex.mp teacher-logits --model "$dir" --top-k 2
    hostile $want "$desc" ex.mp sft-step --model "$dir" --out out-m1 --threads 1
    hostile $want "$desc" ex.mp rollout --model "$dir" --max-new-tokens 2
    hostile $want "$desc" sc.mp rl-step --model "$dir" --out out-m2 --threads 1
    hostile $want "$desc (--ref)" sc.mp rl-step --model M --ref "$dir" --beta 0.1 --out out-m3 --threads 1
done
[ ! -e out-m1/model.safetensors ] && ok || bad "sft-step wrote a checkpoint with a bad model"
hostile 66 "missing tokenizer" p.jsonl tokenize --tokenizer /nonexistent/tok
printf '{"model": {"type": "WordPiece"}}' > badtok.json
hostile 65 "unsupported tokenizer" p.jsonl tokenize --tokenizer badtok.json
# an output directory that cannot be created: 73
: > afile
hostile 73 "--out under a regular file" ex.mp sft-step --model M --out afile/sub --threads 1

# --- BUG-1 (fixed; found by tests/fuzz/fuzz-jsonl): to-json dropped a map key "" when it was the
# first zero-length string of a record (msgpack-c leaves via.str.ptr NULL, and jansson refuses a
# NULL key; common/json.c ignored the status). The key must be kept, as it is when it comes later.
echo '{"":"x","kind":"example"}' | from-json --frame srlm.test | to-json --no-frame > bug1.jsonl
expect_eq "$(cat bug1.jsonl)" '{"":"x","kind":"example"}' "BUG-1: to-json keeps a leading empty key"

# --- reproducibility: same input, seed and threads => same bytes --------------------------------
# (a metrics record's tokens_per_s / elapsed_s are wall-clock figures and are left out)
metrics_json() { to-json "$1" | python3 -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    for k in ("tokens_per_s", "elapsed_s", "samples_per_s", "seconds"): r.pop(k, None)
    if r.get("kind") == "checkpoint": r.pop("path", None)
    print(json.dumps(r, sort_keys=True))'; }
for th in 1 2; do
    for run in 1 2; do
        d=rep-$th-$run; mkdir -p $d
        ( cd $d && ln -s ../M M && cp ../ex.mp ../sc.mp ../p.jsonl . &&
          tokenize --tokenizer "$TOK" < p.jsonl > tok.mp &&
          teacher-logits --model M --top-k 3 --threads $th -q < ex.mp > tl.mp &&
          rollout --model M -G 3 --max-new-tokens 4 --seed 5 --threads $th -q < ex.mp > s.mp &&
          score -q < s.mp > scored.mp &&
          evaluate -q --seed 3 < scored.mp > ev.mp &&
          sft-step --model M --out sft --threads $th -q --steps 2 --epochs 2 --lr 1e-3 ex.mp > sft.mp &&
          rl-step --model M --out rl --threads $th -q --lr 1e-3 < sc.mp > rl.mp ) || bad "threads $th run $run failed"
        metrics_json $d/sft.mp > $d/sft.json; metrics_json $d/rl.mp > $d/rl.json
    done
    a=rep-$th-1 b=rep-$th-2
    for f in tok.mp tl.mp s.mp scored.mp ev.mp sft/model.safetensors sft/state-2 rl/model.safetensors sft.json rl.json; do
        if [ -d $a/$f ]; then diff -r $a/$f $b/$f >/dev/null && ok || bad "threads $th: $f differs between two identical runs"
        else expect_same $a/$f $b/$f "threads $th: $f differs between two identical runs"; fi
    done
done
# Across batch shapes and thread counts (docs/generation.md): the same tokens, texts and endings;
# log-probs may differ in their last bits (BLIS sums in another order), here within 1e-5.
printf '{"id":"a","prompt":"ab","completion":"c"}\n{"id":"b","prompt":"abcab c","completion":"c"}\n{"id":"c","prompt":"d","completion":"c"}\n' |
    tokenize --tokenizer "$TOK" > ex3.mp
for v in "1 1" "3 1" "3 2"; do
    set -- $v
    rollout --model M -G 2 --max-new-tokens 6 --seed 5 --batch-prompts $1 --threads $2 -q < ex3.mp | to-json --no-frame > bp-$1-$2.jsonl
done
for v in 3-1 3-2; do
    python3 - bp-1-1.jsonl bp-$v.jsonl <<'PY' && ok || bad "rollout: --batch-prompts/--threads ($v) changed the samples"
import json, sys
a, b = ([json.loads(l) for l in open(f)] for f in sys.argv[1:])
assert len(a) == len(b)
for x, y in zip(a, b):
    lx, ly = x.pop('logprobs')['data'], y.pop('logprobs')['data']
    assert x == y, (x, y)
    assert all(abs(p - q) <= 1e-5 * max(1, abs(p)) for p, q in zip(lx, ly)), (lx, ly)
PY
done
finish
