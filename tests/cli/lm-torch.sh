# tests/cli/lm-torch.sh — the C model against an independent PyTorch re-implementation of the
# Hugging Face architectures (tests/oracle/ref_model.py) on tiny random models of every supported
# shape: logits, per-token log-probs, loss and every parameter's gradient; three AdamW steps with
# clipping; greedy generation with the KV cache. Weights arrive in f32, bf16 and f16, single-file
# and sharded.
. "$(dirname "$0")/../lib.sh"
need_torch
LM="$TOP/build/tests/bin/test-lm"

# name | config.json body | init flags
configs=(
  'llama-gqa|{"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":61,"max_position_embeddings":64,"rope_theta":10000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"hidden_act":"silu"}|--dtype f32'
  'llama-bias|{"model_type":"llama","hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":2,"vocab_size":61,"max_position_embeddings":64,"rope_theta":500000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":true,"attention_bias":true,"hidden_act":"silu"}|--dtype f32 --shards 2'
  'qwen2-7to1|{"model_type":"qwen2","hidden_size":56,"intermediate_size":72,"num_hidden_layers":2,"num_attention_heads":7,"num_key_value_heads":1,"vocab_size":67,"max_position_embeddings":64,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"tie_word_embeddings":true,"hidden_act":"silu"}|--dtype bf16'
  'llama3-rope|{"model_type":"llama","hidden_size":64,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":61,"max_position_embeddings":1024,"rope_theta":10000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":256},"rms_norm_eps":1e-5,"tie_word_embeddings":true,"hidden_act":"silu"}|--dtype f32'
  'qwen3-linear|{"model_type":"qwen3","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"vocab_size":59,"max_position_embeddings":64,"rope_parameters":{"rope_type":"linear","factor":4.0,"rope_theta":1000000.0},"rms_norm_eps":1e-6,"tie_word_embeddings":true,"hidden_act":"silu"}|--dtype f32'
  'qwen3-hd16|{"model_type":"qwen3","hidden_size":32,"intermediate_size":48,"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"vocab_size":59,"max_position_embeddings":64,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"tie_word_embeddings":true,"hidden_act":"silu"}|--dtype f16 --shards 2'
)
echo '{"seqs": [[1,5,7,9,11,2,3,8,13,21],[3,4,50],[7,7,7,7,6,5]], "mask": [[0,0,0,1,1,1,1,1,1,1],[0,1,1],[0,1,0,1,0,1]]}' > "$TMP/batch.json"
echo '{"seqs": [[1,5,7],[3,4,50,8,9]]}' > "$TMP/prompts.json"

for c in "${configs[@]}"; do
    IFS='|' read -r name body flags <<<"$c"
    d="$TMP/$name"; mkdir -p "$d"
    echo "$body" > "$d/config.json"
    # shellcheck disable=SC2086
    $PY "$REF" init "$d/config.json" "$d/m" --seed 11 --randomize-all --std 0.3 $flags >/dev/null \
        || { bad "$name: reference init failed"; continue; }

    # forward + backward
    if "$LM" forward "$d/m" "$TMP/batch.json" "$d/c.st" 2>"$d/err" \
       && $PY "$REF" forward "$d/m" "$TMP/batch.json" "$d/r.st" >/dev/null; then
        if $PY "$REF" compare "$d/c.st" "$d/r.st" --rtol 2e-5 > "$d/cmp" 2>&1; then ok
        else bad "$name: logits/loss/gradients differ from PyTorch: $(grep -v '^ok' "$d/cmp" | head -3)"; fi
    else bad "$name: forward failed: $(tail -1 "$d/err")"; fi

    # three AdamW steps with clipping. Adam divides by sqrt(v) + eps, so a gradient element at
    # rounding-noise level (1e-9, e.g. a k_proj bias, which softmax nearly cancels) would become a
    # full-size step of random sign with eps = 1e-8; eps = 1e-4 keeps such noise out of the check
    # (an element of 4e-7 differs by 4e-9 between two correct f32 implementations).
    if "$LM" adamw "$d/m" "$TMP/batch.json" "$d/cA" 0.01 0.1 1.0 3 1e-4 > "$d/closs" \
       && $PY "$REF" adamw "$d/m" "$TMP/batch.json" "$d/rA" --lr 0.01 --weight-decay 0.1 --clip 1.0 --steps 3 --eps 1e-4 > "$d/rloss"; then
        if $PY "$REF" compare "$d/cA/model.safetensors" "$d/rA/model.safetensors" --rtol 1e-4 > "$d/cmpA" 2>&1; then ok
        else bad "$name: weights after 3 AdamW steps differ: $(grep -v '^ok' "$d/cmpA" | head -3)"; fi
    else bad "$name: adamw run failed"; fi

    # greedy generation with the KV cache vs full recomputation in PyTorch
    c_tok=$("$LM" generate "$d/m" "$TMP/prompts.json" 16 | $PY -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
    r_tok=$($PY "$REF" generate "$d/m" "$TMP/prompts.json" --max-new-tokens 16 --no-eos | $PY -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
    expect_eq "$c_tok" "$r_tok" "$name: greedy generation"
done
finish
