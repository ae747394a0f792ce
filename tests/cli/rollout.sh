# tests/cli/rollout.sh — rollout on tiny random models (tests/oracle/ref_model.py init, with the
# tests/data/tok-tiny tokenizer): greedy completions equal the PyTorch reference's token for token;
# every reported log-prob equals the reference forward's log_softmax at the sampled token; same
# seed gives the same bytes; splitting the input, batching and threads give the same samples;
# groups are contiguous; eos / stop / length endings; padded vocabularies; flags and bad input.
. "$(dirname "$0")/../lib.sh"
need_torch
CHK="$TOP/tests/oracle/ref_sample.py"

# model DIR VOCAB [EXTRA_JSON]: a tiny qwen2 with peaked (std 0.3) random weights + tok-tiny
model() {
    mkdir -p "$1"
    echo "{\"model_type\":\"qwen2\",\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":$2,\"max_position_embeddings\":256,\"rope_theta\":10000.0,\"rms_norm_eps\":1e-6,\"tie_word_embeddings\":false,\"hidden_act\":\"silu\"${3:-}}" > "$1.json"
    $PY "$REF" init "$1.json" "$1" --seed 5 --randomize-all --std 0.3 >/dev/null && cp "$TOP/tests/data/tok-tiny/"* "$1/"
}
M=$TMP/m
model "$M" 16 || { bad "reference init failed"; finish; exit 1; }
data() { jq -c 'select(.kind != "header" and .kind != "end")' "$@"; }

# prompts: 10 ids, lengths 3..21; one record with a completion (only its prompt is used)
for i in $(seq 1 10); do echo "{\"id\":\"q$i\",\"prompt\":\"$(printf 'ab%.0s' $(seq 1 "$i")) a\",\"gold\":$i}"; done > "$TMP/q.jsonl"
echo '{"id":"c1","prompt":"ba","completion":"ab"}' >> "$TMP/q.jsonl"
tokenize -t "$M" < "$TMP/q.jsonl" > "$TMP/q.mp"
head -n 4 "$TMP/q.jsonl" | tokenize -t "$M" > "$TMP/q1.mp"
tail -n +5 "$TMP/q.jsonl" | tokenize -t "$M" > "$TMP/q2.mp"

# --- flags
expect_rc 0 "help" -- rollout --help
grep -q '^usage: rollout' "$TMP/out" && ok || bad "help on stdout"
expect_rc 0 "version" -- rollout --version
grep -q '^rollout ' "$TMP/out" && ok || bad "version text"
expect_rc 64 "unknown flag" -- rollout --bogus
expect_err "Try 'rollout --help'" "unknown flag hint"
expect_rc 64 "missing --model" -- rollout -G 2
expect_err "--model DIR is required" "missing --model message"
expect_rc 64 "bad number" -- rollout --model "$M" -G abc
expect_rc 64 "G = 0" -- rollout --model "$M" -G 0
expect_rc 64 "top-p > 1" -- rollout --model "$M" --top-p 1.5
expect_rc 64 "negative temperature" -- rollout --model "$M" --temperature -1
expect_rc 64 "empty stop string" -- rollout --model "$M" --stop ''
# the FILE operand (issue 15): FILE, "-" and stdin give the same stream; a missing FILE is 66
awk 'BEGIN{RS=""} {p=$0} END{print p}' <(rollout --help) | head -n 1 | grep -q '^Exit status:' && ok \
    || bad "--help does not end with an 'Exit status:' paragraph"
rollout -q --model "$M" -G 2 --max-new-tokens 4 < "$TMP/q1.mp" > "$TMP/op-stdin.mp"
expect_rc 0 "FILE operand" -- rollout -q --model "$M" -G 2 --max-new-tokens 4 "$TMP/q1.mp"
expect_same "$TMP/out" "$TMP/op-stdin.mp" "FILE operand == stdin"
expect_rc 0 "- operand" -- sh -c "rollout -q --model '$M' -G 2 --max-new-tokens 4 - < '$TMP/q1.mp'"
expect_same "$TMP/out" "$TMP/op-stdin.mp" "- operand == stdin"
expect_rc 66 "missing FILE" -- rollout --model "$M" "$TMP/nope.mp"
expect_err "$TMP/nope.mp" "missing FILE named"
expect_rc 64 "two operands" -- rollout --model "$M" "$TMP/q1.mp" "$TMP/q1.mp"
expect_err "too many operands" "two operands message"
printf 'garbage' > "$TMP/garbage.mp"
expect_rc 65 "bad FILE named in the message" -- rollout --model "$M" "$TMP/garbage.mp"
expect_err "$TMP/garbage.mp" "bad FILE: message names it"
expect_rc 66 "missing model" -- sh -c "rollout --model '$TMP/nope' < '$TMP/q.mp'"

# --- greedy == the PyTorch reference, token for token, and log-probs == the training forward
rollout --model "$M" --greedy -G 2 --max-new-tokens 12 < "$TMP/q.mp" 2>"$TMP/err" | to-json > "$TMP/g.jsonl"
expect_eq "$(data "$TMP/g.jsonl" | wc -l)" 22 "greedy: 11 prompts x 2 samples"
if $PY "$CHK" samples "$M" "$TMP/g.jsonl" --greedy --max-new-tokens 12 --eos 13 > "$TMP/chk" 2>&1; then ok
else bad "greedy rollout differs from ref_model generate: $(tail -n 3 "$TMP/chk")"; fi

grep -q 'tok/s=' "$TMP/err" && ok || bad "tokens/s reported on stderr"

# --- --dtype bf16: decoding from bf16 weights. On a checkpoint stored in bf16 (PyTorch wrote it)
# nothing is rounded, so greedy completions and log-probs still match the PyTorch reference; on an
# f32 checkpoint the header names the policy as loaded (rl-step trains those weights).
$PY "$REF" init "$M.json" "$TMP/mb" --seed 5 --randomize-all --std 0.3 --dtype bf16 >/dev/null && cp "$TOP/tests/data/tok-tiny/"* "$TMP/mb/"
rollout --model "$TMP/mb" --dtype bf16 --greedy -G 2 --max-new-tokens 12 < "$TMP/q.mp" 2>"$TMP/err" | to-json > "$TMP/gb.jsonl"
expect_eq "$(data "$TMP/gb.jsonl" | wc -l)" 22 "bf16 greedy: 11 prompts x 2 samples"
if $PY "$CHK" samples "$TMP/mb" "$TMP/gb.jsonl" --greedy --max-new-tokens 12 --eos 13 > "$TMP/chk" 2>&1; then ok
else bad "bf16 greedy rollout differs from ref_model generate on the bf16 checkpoint: $(tail -n 3 "$TMP/chk")"; fi
expect_eq "$(head -n 1 "$TMP/gb.jsonl" | jq -r .options.dtype)" bf16 "header options.dtype"
rollout --model "$TMP/mb" --greedy -G 2 --max-new-tokens 12 < "$TMP/q.mp" 2>/dev/null | to-json > "$TMP/gb32.jsonl"
expect_eq "$(data "$TMP/gb.jsonl" | jq -c .tokens | md5sum)" "$(data "$TMP/gb32.jsonl" | jq -c .tokens | md5sum)" \
    "bf16 checkpoint: --dtype bf16 and f32 decode the same tokens"
rollout --model "$M" --dtype bf16 --greedy --max-new-tokens 4 < "$TMP/q1.mp" 2>/dev/null | to-json > "$TMP/gbf.jsonl"
expect_eq "$(head -n 1 "$TMP/gbf.jsonl" | jq -r .model_xxh3)" "$(head -n 1 "$TMP/g.jsonl" | jq -r .model_xxh3)" \
    "--dtype bf16 on an f32 checkpoint: model_xxh3 is the policy as loaded"
expect_rc 64 "--dtype f16" -- rollout --model "$M" --dtype f16
expect_err "--dtype: f32 or bf16" "--dtype message"
data "$TMP/g.jsonl" | jq -se 'map(select(.id == "c1")) | length == 2 and all(.prompt_len == 3 and .tokens[0:3] == [12, 1, 0] and .completion == "ab")' >/dev/null \
    && ok || bad "a record with a completion contributes its prompt only (fields pass through)"

# sampled, every filter on: log-probs are the unmodified policy's (temperature 1, no filter)
rollout --model "$M" -G 4 --temperature 0.7 --top-p 0.9 --top-k 6 --min-p 0.01 --max-new-tokens 24 --seed 7 \
    < "$TMP/q.mp" 2>/dev/null | to-json > "$TMP/s.jsonl"
if $PY "$CHK" samples "$M" "$TMP/s.jsonl" --tol 1e-4 > "$TMP/chk" 2>&1; then ok
else bad "sampled log-probs differ from the reference forward: $(tail -n 3 "$TMP/chk")"; fi

# --- record layout: groups contiguous, in sample order; fields
data "$TMP/s.jsonl" | jq -r '"\(.id) \(.sample) \(.group_size)"' > "$TMP/ids"
for i in $(seq 1 10) ; do for s in 0 1 2 3; do echo "q$i $s 4"; done; done > "$TMP/want"
for s in 0 1 2 3; do echo "c1 $s 4"; done >> "$TMP/want"
expect_same "$TMP/ids" "$TMP/want" "-G 4: groups contiguous and in sample order"
data "$TMP/s.jsonl" | jq -e '.kind == "sample" and (.tokens | length) == (.mask | length)
    and .mask == ([range(.prompt_len)] | map(0)) + ([range((.tokens | length) - .prompt_len)] | map(1))
    and .logprobs.shape == [(.tokens | length) - .prompt_len] and (.text | type) == "string"
    and (.id == "c1" or (.gold | type) == "number")' > "$TMP/lay" && ! grep -q false "$TMP/lay" && ok || bad "sample fields and mask layout"
head -n 1 "$TMP/s.jsonl" | jq -e '.schema == "srlm.samples" and (.model_xxh3 | length) == 16 and .seed == 7
    and .tokenizer_xxh3 == .upstream.tokenizer_xxh3 and .vocab_size == 16 and .options.group_size == 4
    and .options.top_p == 0.9 and .options.top_k == 6 and .eos_ids == [13]' >/dev/null && ok || bad "header fields"
# text = the completion decoded with special tokens skipped
data "$TMP/s.jsonl" | jq -c '{tokens: [.tokens[.prompt_len:]], text}' | head -n 3 > "$TMP/texts"
$PY - "$TMP/texts" "$M" <<'P' && ok || bad "text is the decoded completion"
import json, sys
tok = json.load(open(sys.argv[2] + "/tokenizer.json"))
inv = {v: k for k, v in tok["model"]["vocab"].items()}
special = {a["id"] for a in tok["added_tokens"] if a["special"]}
inv.update({a["id"]: a["content"] for a in tok["added_tokens"]})
for line in open(sys.argv[1]):
    r = json.loads(line)
    s = "".join(inv[t] for t in r["tokens"][0] if t not in special)
    # ByteLevel: the tiny vocabulary uses Ġ for a space and ASCII otherwise
    s = s.replace("\u0120", " ").replace("\u010a", "\n")
    assert "\ufffd" in r["text"] or s == r["text"], (s, r["text"])
P

# --- reproducibility: same seed -> same bytes; another seed -> other samples
F="-G 4 --temperature 0.9 --top-p 0.95 --max-new-tokens 30"
rollout -q --model "$M" $F < "$TMP/q.mp" > "$TMP/r1.mp"
rollout -q --model "$M" $F < "$TMP/q.mp" > "$TMP/r2.mp"
expect_same "$TMP/r1.mp" "$TMP/r2.mp" "same seed: byte-identical output"
rollout -q --model "$M" $F --seed 99 < "$TMP/q.mp" > "$TMP/r3.mp"
cmp -s "$TMP/r1.mp" "$TMP/r3.mp" && bad "another seed gives other samples" || ok

# splitting the stream, batching and threads: the same samples, and the same bytes (issue 13)
key() { to-json --no-frame | jq -c '[.id, .sample, .tokens, .text, .finish_reason]'; }
key < "$TMP/r1.mp" > "$TMP/k1"
{ rollout -q --model "$M" $F --batch-prompts 1 < "$TMP/q1.mp"; } | key > "$TMP/ks"
{ rollout -q --model "$M" $F --batch-prompts 5 < "$TMP/q2.mp"; } | key >> "$TMP/ks"
expect_same "$TMP/k1" "$TMP/ks" "split into two runs: same samples"
rollout -q --model "$M" $F --batch-prompts 3 --threads 2 < "$TMP/q.mp" > "$TMP/r4.mp"
expect_same "$TMP/r1.mp" "$TMP/r4.mp" "--batch-prompts 3 --threads 2: the same bytes"

# --- batch invariance (issue 13): a sequence's tokens and log-probs do not depend on the
# sequences decoded beside it, the prefill packing, the batching mode or the thread count. A
# wider model, so that the products have K > 256 (several BLIS KC blocks) and K % 16 != 0 (the
# kernels' tails): hidden 264, MLP 300. Temperature 1 over 40 tokens, so that completions end at
# different steps and the batch changes while it decodes.
MW=$TMP/mw
model "$MW" 16 ',"hidden_size":264,"intermediate_size":300' || bad "wide reference init failed"
FW="-G 3 --temperature 1 --max-new-tokens 40"
for dt in f32 bf16; do
    rollout -q --model "$MW" $FW --dtype $dt --batching static --batch-prompts 1 --threads 1 < "$TMP/q.mp" > "$TMP/bi-ref.mp"
    n=$(to-json --no-frame < "$TMP/bi-ref.mp" | jq -r '(.tokens | length) - .prompt_len' | sort -u | wc -l)
    [ "$n" -ge 3 ] && ok || bad "$dt: completions of several lengths (the batch must change while decoding): $n"
    for v in "--batching static --batch-prompts 4 --threads 2" "--batching static --batch-prompts 11 --threads 1" \
             "--max-batch 3 --threads 2" "--max-batch 7 --threads 1" "--max-batch 64 --threads 2" \
             "--batch-prompts 2 --threads 3"; do
        rollout -q --model "$MW" $FW --dtype $dt $v < "$TMP/q.mp" > "$TMP/bi.mp"
        expect_same "$TMP/bi-ref.mp" "$TMP/bi.mp" "$dt, $v: the same bytes as one prompt at a time"
    done
done
# the prompts in another order: each group's records are the same bytes
tac "$TMP/q.jsonl" | tokenize -t "$M" | rollout -q --model "$MW" $FW --max-batch 5 > "$TMP/bi-rev.mp"
rollout -q --model "$MW" $FW < "$TMP/q.mp" > "$TMP/bi-fwd.mp"
to-json --no-frame < "$TMP/bi-fwd.mp" | jq -c '[.id, .sample, .tokens, .logprobs]' | sort > "$TMP/bi-a"
to-json --no-frame < "$TMP/bi-rev.mp" | jq -c '[.id, .sample, .tokens, .logprobs]' | sort > "$TMP/bi-b"
expect_same "$TMP/bi-a" "$TMP/bi-b" "prompts in reverse order: every sample the same"
expect_rc 64 "--max-batch below -G" -- rollout --model "$MW" -G 3 --max-batch 2 "$TMP/q.mp"
expect_rc 64 "--batching bad" -- rollout --model "$MW" --batching dynamic "$TMP/q.mp"
expect_rc 64 "--max-batch with static batches of another size" -- rollout --model "$MW" -G 2 --batching static --batch-prompts 2 --max-batch 5 "$TMP/q.mp"

# --- endings
# length: without eos ids hit, exactly --max-new-tokens tokens
data "$TMP/s.jsonl" | jq -e 'if .finish_reason == "length" then ((.tokens | length) - .prompt_len) == 24
    elif .finish_reason == "eos" then .tokens[-1] == 13 else false end' > "$TMP/fin" && ! grep -q false "$TMP/fin" \
    && ok || bad "finish_reason length / eos consistent with the tokens"
# eos from config.json: the first greedy token of q1 not seen before in its completion (after the
# first) becomes an eos id, besides the tokenizer's 13
read -r X LEN < <(data "$TMP/g.jsonl" | jq -r 'select(.id == "q1" and .sample == 0) | .tokens[.prompt_len:] as $c
    | [range(1; $c | length) | select(. as $i | $c[:$i] | index([$c[$i]]) | not)][0] | "\($c[.]) \(. + 1)"')
model "$TMP/me" 16 ",\"eos_token_id\":$X"
rollout -q --model "$TMP/me" --greedy --max-new-tokens 12 < "$TMP/q.mp" | to-json > "$TMP/e.jsonl"
expect_eq "$(data "$TMP/e.jsonl" | jq -r 'select(.id == "q1") | "\(.finish_reason) \((.tokens | length) - .prompt_len) \(.tokens[-1])"')" \
    "eos $LEN $X" "config eos_token_id ends a completion (the eos token kept)"
if $PY "$CHK" samples "$TMP/me" "$TMP/e.jsonl" --greedy --max-new-tokens 12 --eos 13 --eos "$X" > "$TMP/chk" 2>&1; then ok
else bad "greedy with config eos differs from the reference: $(tail -n 3 "$TMP/chk")"; fi
head -n 1 "$TMP/e.jsonl" | jq -e ".eos_ids == [$X, 13]" >/dev/null && ok || bad "eos_ids: config's then tokenizer's"
# stop: a string from the middle of q2's greedy text
T2=$(data "$TMP/g.jsonl" | jq -r 'select(.id == "q2" and .sample == 0) | .text')
STOP=${T2:3:2}
rollout -q --model "$M" --greedy --max-new-tokens 12 --stop "$STOP" --stop "zzz" < "$TMP/q.mp" | to-json > "$TMP/st.jsonl"
data "$TMP/st.jsonl" | jq -r 'select(.id == "q2" and .sample == 0) | .finish_reason' > "$TMP/fr"
expect_eq "$(cat "$TMP/fr")" "stop" "a stop string ends the completion"
$PY - "$TMP/g.jsonl" "$TMP/st.jsonl" "$STOP" <<'P' && ok || bad "stop: completion is the shortest prefix whose text holds the stop string"
import json, sys
def recs(p): return {(r["id"], r["sample"]): r for r in map(json.loads, open(p)) if r["kind"] == "sample"}
full, cut, stop = recs(sys.argv[1]), recs(sys.argv[2]), sys.argv[3]
for k, r in cut.items():
    a, b = full[k]["tokens"], r["tokens"]
    if r["finish_reason"] == "stop":
        assert a[:len(b)] == b and stop in r["text"], (k, r["text"])
    else:
        assert a == b and stop not in r["text"], k
assert any(r["finish_reason"] == "stop" for r in cut.values())
P

# --- padded vocabulary: 20 embedding rows, 16 tokenizer ids: ids >= 16 never sampled, and the
# log-probs still normalise over all 20 logits
model "$TMP/mp" 20
rollout -q --model "$TMP/mp" -G 8 --temperature 1.5 --max-new-tokens 30 < "$TMP/q.mp" | to-json > "$TMP/p.jsonl"
expect_eq "$(data "$TMP/p.jsonl" | jq '[.tokens[.prompt_len:][]] | max' | sort -n | tail -n 1)" 15 "padded ids are never sampled"
if $PY "$CHK" samples "$TMP/mp" "$TMP/p.jsonl" > "$TMP/chk" 2>&1; then ok
else bad "padded model log-probs differ from the reference: $(tail -n 3 "$TMP/chk")"; fi
head -n 1 "$TMP/p.jsonl" | jq -e '.vocab_size == 16 and .model_vocab_size == 20' >/dev/null && ok || bad "padded header sizes"

# --- bad input
expect_rc 65 "not a stream" -- sh -c "echo hello | rollout --model '$M'"
head -c 60 "$TMP/q.mp" > "$TMP/trunc.mp"
expect_rc 65 "truncated stream" -- sh -c "rollout --model '$M' < '$TMP/trunc.mp'"
expect_err "truncated" "truncated message"
head -n 5 "$TMP/q.jsonl" | tokenize -t "$TOP/tests/data/tok-tiny-pairs" > "$TMP/other.mp" 2>/dev/null
expect_rc 65 "tokenizer mismatch" -- sh -c "rollout --model '$M' < '$TMP/other.mp'"
OTHER=$(to-json "$TMP/other.mp" | head -n 1 | jq -r .tokenizer_xxh3)
MINE=$(to-json "$TMP/q.mp" | head -n 1 | jq -r .tokenizer_xxh3)
expect_err "$OTHER" "mismatch names the stream's tokenizer"
expect_err "$MINE" "mismatch names the model's tokenizer"
echo '{"id":"x","tokens":[12,3,16],"mask":[0,0,0],"prompt_len":3}' | from-json --frame srlm.examples --kind example > "$TMP/oov.mp"
expect_rc 65 "token beyond the vocabulary" -- sh -c "rollout --model '$M' < '$TMP/oov.mp'"
expect_err "token id 16 is beyond the model's vocabulary of 16 ids" "out-of-range message"
echo '{"id":"x","tokens":[12,3],"mask":[0,0],"prompt_len":0}' | from-json --frame srlm.examples --kind example > "$TMP/empty.mp"
expect_rc 65 "empty prompt" -- sh -c "rollout --model '$M' < '$TMP/empty.mp'"
echo '{"tokens":[12,3],"mask":[0,0],"prompt_len":2}' | from-json --frame srlm.examples --kind example > "$TMP/noid.mp"
expect_rc 65 "record without id" -- sh -c "rollout --model '$M' < '$TMP/noid.mp'"
expect_err '"id"' "missing id named"
to-json "$TMP/r1.mp" | from-json > /dev/null   # sanity: samples are a valid stream
expect_rc 65 "a samples stream is not prompts" -- sh -c "rollout --model '$M' < '$TMP/r1.mp'"

# --- output errors
if [ -w /dev/full ]; then
    expect_rc 74 "full disk" -- sh -c "rollout --model '$M' < '$TMP/q.mp' > /dev/full"
    expect_err "No space left on device" "full disk message"
fi
for i in $(seq 1 40); do echo "{\"id\":\"p$i\",\"prompt\":\"ab a\"}"; done | tokenize -t "$M" > "$TMP/many.mp"
st=$(bash -c 'set -o pipefail; trap "" PIPE; rollout --model "$1" -G 8 --max-new-tokens 64 < "$2" 2>"$3" | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}' \
     sh "$M" "$TMP/many.mp" "$TMP/pipe.err")
expect_eq "$st" 141 "rollout | head -c 1: status"
expect_eq "$(cat "$TMP/pipe.err")" "" "rollout | head -c 1: quiet"
finish
