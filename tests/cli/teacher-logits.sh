# tests/cli/teacher-logits.sh — teacher-logits on tiny random models (tests/oracle/ref_model.py
# init + tests/data/tok-tiny): top-k ids and log-probs equal the PyTorch reference's
# log_softmax(logits / T) top-k at every trained position, for examples and samples, across
# --batch-tokens; a padded-vocabulary teacher never puts padding ids in the top k but normalises
# over all its logits; header; flags; mismatches and bad input.
. "$(dirname "$0")/../lib.sh"
need_torch
CHK="$TOP/tests/oracle/ref_sample.py"

# model DIR VOCAB ARCH: tiny random model + tok-tiny
model() {
    mkdir -p "$1"
    echo "{\"model_type\":\"$3\",\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8,\"vocab_size\":$2,\"max_position_embeddings\":256,\"rope_theta\":10000.0,\"rms_norm_eps\":1e-6,\"tie_word_embeddings\":true,\"hidden_act\":\"silu\"}" > "$1.json"
    $PY "$REF" init "$1.json" "$1" --seed 9 --randomize-all --std 0.3 >/dev/null && cp "$TOP/tests/data/tok-tiny/"* "$1/"
}
M=$TMP/t
model "$M" 16 qwen3 || { bad "reference init failed"; finish; exit 1; }
data() { jq -c 'select(.kind != "header" and .kind != "end")' "$@"; }

cat > "$TMP/ex.jsonl" <<'J'
{"id":"a","prompt":"ab ab","completion":"abc a"}
{"id":"b","prompt":"b","completion":"xx a b c"}
{"id":"c","prompt":"a b c d"}
{"id":"d","prompt":"cab","completion":"é! ab\nabab"}
J
tokenize -t "$M" < "$TMP/ex.jsonl" > "$TMP/ex.mp"

# --- flags
expect_rc 0 "help" -- teacher-logits --help
grep -q '^usage: teacher-logits' "$TMP/out" && ok || bad "help on stdout"
expect_rc 0 "version" -- teacher-logits --version
expect_rc 64 "unknown flag" -- teacher-logits --bogus
expect_err "Try 'teacher-logits --help'" "unknown flag hint"
expect_rc 64 "missing --model" -- teacher-logits --top-k 4
expect_rc 64 "missing --top-k" -- teacher-logits --model "$M"
expect_err "--top-k K is required" "missing --top-k message"
expect_rc 64 "bad --top-k" -- teacher-logits --model "$M" --top-k x
expect_rc 64 "bad --temperature" -- teacher-logits --model "$M" --top-k 2 --temperature 0
expect_rc 64 "--top-k beyond the vocabulary" -- sh -c "teacher-logits --model '$M' --top-k 17 < '$TMP/ex.mp'"
expect_err "exceeds the teacher's vocabulary of 16 ids" "top-k too large message"
# the FILE operand (issue 15): FILE, "-" and stdin give the same stream; a missing FILE is 66
awk 'BEGIN{RS=""} {p=$0} END{print p}' <(teacher-logits --help) | head -n 1 | grep -q '^Exit status:' && ok \
    || bad "--help does not end with an 'Exit status:' paragraph"
teacher-logits -q --model "$M" --top-k 3 < "$TMP/ex.mp" > "$TMP/op-stdin.mp"
expect_rc 0 "FILE operand" -- teacher-logits -q --model "$M" --top-k 3 "$TMP/ex.mp"
expect_same "$TMP/out" "$TMP/op-stdin.mp" "FILE operand == stdin"
expect_rc 0 "- operand" -- sh -c "teacher-logits -q --model '$M' --top-k 3 - < '$TMP/ex.mp'"
expect_same "$TMP/out" "$TMP/op-stdin.mp" "- operand == stdin"
expect_rc 66 "missing FILE" -- teacher-logits --model "$M" --top-k 3 "$TMP/nope.mp"
expect_err "$TMP/nope.mp" "missing FILE named"
expect_rc 64 "two operands" -- teacher-logits --model "$M" --top-k 3 "$TMP/ex.mp" "$TMP/ex.mp"
expect_err "too many operands" "two operands message"
printf 'garbage' > "$TMP/garbage.mp"
expect_rc 65 "bad FILE named in the message" -- teacher-logits --model "$M" --top-k 3 "$TMP/garbage.mp"
expect_err "$TMP/garbage.mp" "bad FILE: message names it"

# --- against the reference: examples, temperatures, batch sizes
cases=()
for args in "4 1 1024" "16 1 3" "5 0.5 20" "3 2.5 1"; do
    read -r K TAU BT <<<"$args"
    teacher-logits -q --model "$M" --top-k "$K" --temperature "$TAU" --batch-tokens "$BT" < "$TMP/ex.mp" | to-json > "$TMP/o$K.jsonl"
    cases+=("$TMP/o$K.jsonl:$K:$TAU")
done
if $PY "$CHK" teacher "$M" "${cases[@]}" > "$TMP/chk" 2>&1; then ok
else bad "top-k at several temperatures and batch sizes differs from the reference: $(tail -n 3 "$TMP/chk")"; fi
# batching does not change the values
teacher-logits -q --model "$M" --top-k 4 --batch-tokens 1 < "$TMP/ex.mp" | to-json --no-frame | jq -c '.teacher_ids' > "$TMP/b1"
teacher-logits -q --model "$M" --top-k 4 --batch-tokens 4096 < "$TMP/ex.mp" | to-json --no-frame | jq -c '.teacher_ids' > "$TMP/b2"
expect_same "$TMP/b1" "$TMP/b2" "same ids whatever --batch-tokens"

# record layout: P = trained positions, passthrough, prompt-only records get [0, K]
teacher-logits --model "$M" --top-k 3 < "$TMP/ex.mp" 2>"$TMP/err" | to-json > "$TMP/o.jsonl"
grep -q 'tok/s=' "$TMP/err" && ok || bad "throughput reported"
data "$TMP/o.jsonl" | jq -e '([.mask[] | select(. == 1)] | length) as $p | .teacher_ids.shape == [$p, 3]
    and .teacher_logprobs.shape == [$p, 3] and .teacher_ids.dtype == "i32" and .prompt != null' > "$TMP/lay" \
    && ! grep -q false "$TMP/lay" && ok || bad "teacher tensors [P, K] and pass-through"
data "$TMP/o.jsonl" | jq -se 'map(select(.id == "c"))[0].teacher_ids.shape == [0, 3]' >/dev/null && ok || bad "prompt-only record: [0, K]"
data "$TMP/o.jsonl" | jq -e '[.teacher_logprobs.data | _nwise(3) | (.[0] >= .[1] and .[1] >= .[2])] | all' > "$TMP/ord" \
    && ! grep -q false "$TMP/ord" && ok || bad "most likely first"
head -n 1 "$TMP/o.jsonl" | jq -e '.schema == "srlm.examples" and .teacher.top_k == 3 and .teacher.temperature == 1
    and .teacher.vocab_size == 16 and (.teacher.model_xxh3 | length) == 16 and .teacher.tokenizer_xxh3 == .upstream.tokenizer_xxh3
    and (has("model_xxh3") or has("tokenizer_xxh3") or has("vocab_size") | not)' >/dev/null && ok || bad "header fields"
# re-running replaces the teacher fields
teacher-logits -q --model "$M" --top-k 2 < <(teacher-logits -q --model "$M" --top-k 3 < "$TMP/ex.mp") | to-json --no-frame \
    | jq -e '.teacher_ids.shape[1] == 2 and ([keys[] | select(. == "teacher_ids")] | length) == 1' > "$TMP/re" \
    && ! grep -q false "$TMP/re" && ok || bad "a second run replaces the teacher fields"

# --- samples from rollout (on-policy distillation)
rollout -q --model "$M" -G 3 --max-new-tokens 10 < "$TMP/ex.mp" > "$TMP/s.mp"
teacher-logits -q --model "$M" --top-k 4 --temperature 0.8 < "$TMP/s.mp" | to-json > "$TMP/so.jsonl"
head -n 1 "$TMP/so.jsonl" | jq -e '.schema == "srlm.samples" and (.upstream.model_xxh3 | length) == 16 and (has("model_xxh3") | not)' >/dev/null \
    && ok || bad "samples stream keeps its schema; the policy's provenance stays upstream"
if $PY "$CHK" teacher "$M" "$TMP/so.jsonl" --top-k 4 --temperature 0.8 > "$TMP/chk" 2>&1; then ok
else bad "samples: differs from the reference: $(tail -n 3 "$TMP/chk")"; fi

# --- padded teacher: 24 embedding rows for 16 tokenizer ids. Scale the padding rows up so that
# they would dominate the top k if they were not excluded.
model "$TMP/pad" 24 qwen2
$PY - "$TMP/pad" "$TOP/tests/oracle" <<'P' || bad "scaling padded rows"
import sys
sys.path.insert(0, sys.argv[2])
import st_io
d = sys.argv[1]
T = st_io.load_file(d + "/model.safetensors")
T["model.embed_tokens.weight"][16:] *= 4
st_io.save_file(T, d + "/model.safetensors", {"format": "pt"})
P
teacher-logits -q --model "$TMP/pad" --top-k 5 --temperature 1.3 < "$TMP/ex.mp" | to-json > "$TMP/po.jsonl"
expect_eq "$(data "$TMP/po.jsonl" | jq '[.teacher_ids.data[]] | max' | sort -n | tail -n 1)" 15 "padded ids never in the top k"
if $PY "$CHK" teacher "$TMP/pad" "$TMP/po.jsonl" --top-k 5 --temperature 1.3 --vocab-limit 16 > "$TMP/chk" 2>&1; then ok
else bad "padded teacher differs from the reference: $(tail -n 3 "$TMP/chk")"; fi
$PY "$CHK" teacher "$TMP/pad" "$TMP/po.jsonl" --top-k 5 --temperature 1.3 > "$TMP/chk" 2>&1 \
    && bad "the padded rows should have reached the unrestricted top k (test is not sensitive)" || ok
head -n 1 "$TMP/po.jsonl" | jq -e '.teacher.vocab_size == 24 and .options.vocab_limit == 16' >/dev/null && ok || bad "padded header"

# --- mismatches and bad input
tokenize -t "$TOP/tests/data/tok-tiny-pairs" < "$TMP/ex.jsonl" > "$TMP/other.mp" 2>/dev/null
expect_rc 65 "tokenizer mismatch" -- sh -c "teacher-logits --model '$M' --top-k 2 < '$TMP/other.mp'"
OTHER=$(to-json "$TMP/other.mp" | head -n 1 | jq -r .tokenizer_xxh3)
MINE=$(to-json "$TMP/ex.mp" | head -n 1 | jq -r .tokenizer_xxh3)
expect_err "$OTHER" "mismatch names the stream's tokenizer"
expect_err "$MINE" "mismatch names the teacher's tokenizer"
# the stream's tokenizer is found down the upstream chain too (this header has none of its own)
mkdir -p "$TMP/t2"; cp "$M/"* "$TMP/t2/"; cp "$TOP/tests/data/tok-tiny-pairs/tokenizer.json" "$TMP/t2/"
teacher-logits -q --model "$M" --top-k 2 < "$TMP/ex.mp" > "$TMP/chain.mp"
expect_rc 65 "tokenizer mismatch down the upstream chain" -- sh -c "teacher-logits --model '$TMP/t2' --top-k 2 < '$TMP/chain.mp'"
expect_err "$MINE" "chain mismatch names the stream's tokenizer"
expect_rc 0 "matching tokenizer down the chain: no warning" -- sh -c "teacher-logits -q --model '$M' --top-k 2 < '$TMP/chain.mp'"
expect_eq "$(cat "$TMP/err")" "" "no warning when the chain has the tokenizer"
echo '{"id":"x","tokens":[12,3,20],"mask":[0,1,1],"prompt_len":1}' | from-json --frame srlm.examples --kind example > "$TMP/oov.mp"
expect_rc 65 "token beyond the teacher's vocabulary" -- sh -c "teacher-logits --model '$M' --top-k 2 < '$TMP/oov.mp'"
expect_err "token id 20 is beyond the teacher's vocabulary of 16 ids" "out-of-range message"
echo '{"id":"x","tokens":[12,3,2],"mask":[0,1],"prompt_len":1}' | from-json --frame srlm.examples --kind example > "$TMP/len.mp"
expect_rc 65 "mask length" -- sh -c "teacher-logits --model '$M' --top-k 2 < '$TMP/len.mp'"
echo '{"id":"x","tokens":[12,3],"mask":[1,1],"prompt_len":0}' | from-json --frame srlm.examples --kind example > "$TMP/m0.mp"
expect_rc 65 "mask[0] = 1" -- sh -c "teacher-logits --model '$M' --top-k 2 < '$TMP/m0.mp'"
expect_rc 65 "not a stream" -- sh -c "echo garbage | teacher-logits --model '$M' --top-k 2"
head -c 50 "$TMP/ex.mp" > "$TMP/trunc.mp"
expect_rc 65 "truncated" -- sh -c "teacher-logits --model '$M' --top-k 2 < '$TMP/trunc.mp'"
expect_rc 66 "missing model" -- sh -c "teacher-logits --model '$TMP/nope' --top-k 2 < '$TMP/ex.mp'"
if [ -w /dev/full ]; then
    expect_rc 74 "full disk" -- sh -c "teacher-logits --model '$M' --top-k 2 < '$TMP/ex.mp' > /dev/full"
    expect_err "No space left on device" "full disk message"
fi
for i in $(seq 1 300); do echo "{\"id\":\"p$i\",\"prompt\":\"ab\",\"completion\":\"ab ab ab ab\"}"; done | tokenize -t "$M" > "$TMP/many.mp"
st=$(bash -c 'set -o pipefail; trap "" PIPE; teacher-logits --model "$1" --top-k 16 --batch-tokens 64 < "$2" 2>"$3" | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}' \
     sh "$M" "$TMP/many.mp" "$TMP/pipe.err")
expect_eq "$st" 141 "teacher-logits | head -c 1: status"
expect_eq "$(cat "$TMP/pipe.err")" "" "teacher-logits | head -c 1: quiet"
finish
