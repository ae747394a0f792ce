# tests/cli/lora-torch.sh — LoRA adapters against a PyTorch reference (tests/oracle/ref_lora.py,
# PEFT's lora.Linear on ref_model.py's Hugging Face-faithful model), and the lora-merge tool.
# Per model shape (llama untied, qwen2 with q/k/v bias and 7:1 GQA, qwen3 with q/k norms) and
# adapter kind (all targets; q,v with rslora; a mixed set stored in bf16 by "PEFT"):
#   - logits, log-probs, loss and every adapter gradient (base frozen) match within 1e-4 relative;
#   - two AdamW steps with clipping on the adapters give the same adapters;
#   - lora-merge's weights match torch's W + scaling·B·A, and the merged model's logits equal the
#     adapted model's, both in torch and in C.
# Then: a fresh C adapter has PEFT's exact file layout and init (checked in python); lora-merge's
# flags and its errors (64 usage, 65 bad adapter, 66 missing input, 73 unwritable output).
. "$(dirname "$0")/../lib.sh"
need_torch
RL="$TOP/tests/oracle/ref_lora.py"
LM="$TOP/build/tests/bin/test-lm"
LO="$TOP/build/tests/bin/test-lora"

# name | config.json body | model init flags | adapter flags
configs=(
  'llama|{"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":61,"max_position_embeddings":64,"rope_theta":10000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"hidden_act":"silu"}|--dtype f32|--r 4 --alpha 8 --targets q,k,v,o,gate,up,down'
  'qwen2|{"model_type":"qwen2","hidden_size":56,"intermediate_size":72,"num_hidden_layers":2,"num_attention_heads":7,"num_key_value_heads":1,"vocab_size":67,"max_position_embeddings":64,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"tie_word_embeddings":true,"hidden_act":"silu"}|--dtype bf16|--r 2 --alpha 4 --targets q,v --rslora'
  'qwen3|{"model_type":"qwen3","hidden_size":32,"intermediate_size":48,"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"vocab_size":59,"max_position_embeddings":64,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"tie_word_embeddings":true,"hidden_act":"silu"}|--dtype f16 --shards 2|--r 3 --alpha 5 --targets q,k,o,up,down --dtype bf16 --dropout 0.05'
)
echo '{"seqs": [[1,5,7,9,11,2,3,8,13,21],[3,4,50],[7,7,7,7,6,5]], "mask": [[0,0,0,1,1,1,1,1,1,1],[0,1,1],[0,1,0,1,0,1]]}' > "$TMP/batch.json"

for c in "${configs[@]}"; do
    IFS='|' read -r name body mflags aflags <<<"$c"
    d="$TMP/$name"; mkdir -p "$d"
    echo "$body" > "$d/config.json"
    # shellcheck disable=SC2086
    if ! $PY "$REF" init "$d/config.json" "$d/m" --seed 11 --randomize-all --std 0.3 $mflags >/dev/null \
       || ! $PY "$RL" init-adapter "$d/m" "$d/ad" --seed 3 --b-std 0.3 $aflags; then
        bad "$name: reference init failed"; continue
    fi

    # forward + adapter gradients
    if "$LO" forward "$d/m" "$d/ad" "$TMP/batch.json" "$d/c.st" 2>"$d/err"; then
        if $PY "$RL" forward "$d/m" "$d/ad" "$TMP/batch.json" "$d/r.st" --against "$d/c.st" --rtol 1e-4 > "$d/cmp" 2>&1; then ok
        else bad "$name: logits/loss/adapter gradients differ from PyTorch: $(grep -v '^ok' "$d/cmp" | head -3)"; fi
    else bad "$name: C forward failed: $(tail -1 "$d/err")"; fi
    if [ "$name" = qwen3 ]; then
        grep -q "lora_dropout 0.05 ignored" "$d/err" && ok || bad "$name: no warning about lora_dropout"
    fi

    # two AdamW steps on the adapters (eps 1e-4: see lm-torch.sh on rounding-noise gradients)
    if "$LO" adamw "$d/m" "$d/ad" "$TMP/batch.json" "$d/cA" 0.01 0.1 1.0 2 1e-4 > "$d/closs" 2>"$d/err"; then
        if $PY "$RL" adamw "$d/m" "$d/ad" "$TMP/batch.json" "$d/rA" --lr 0.01 --weight-decay 0.1 --clip 1.0 --steps 2 \
               --eps 1e-4 --against "$d/cA" --rtol 1e-4 > "$d/cmpA" 2>&1; then ok
        else bad "$name: adapters after AdamW differ: $(grep -v '^ok' "$d/cmpA" | head -3)"; fi
    else bad "$name: C adamw failed: $(tail -1 "$d/err")"; fi

    # merge: C tool vs torch; merged logits vs adapted logits, in torch and in C
    if lora-merge -q --model "$d/m" --adapter "$d/ad" --out "$d/cM" 2>"$d/err" \
       && "$LM" forward "$d/cM" "$TMP/batch.json" "$d/cm.st" 2>"$d/err"; then
        if $PY "$RL" merge "$d/m" "$d/ad" "$TMP/batch.json" "$d/rM" --against "$d/cM" --c-logits "$d/c.st" "$d/cm.st" \
               --rtol 1e-4 > "$d/cmpM" 2>&1; then ok
        else bad "$name: merged weights or merged logits differ: $(grep -v '^ok\|^#' "$d/cmpM" | head -3)"; fi
    else bad "$name: lora-merge or the merged forward failed: $(tail -1 "$d/err")"; fi
done

# ---------------------------------------------------------------------------------------------
# files: a fresh C adapter (PEFT init) and a trained one have PEFT's exact names, shapes, config

M="$TMP/llama/m"
if "$LO" init "$M" "$TMP/fresh" 8 16 q,k,v,o,gate,up,down 7 0 2>"$TMP/err"; then
    if $PY "$RL" check-files "$TMP/fresh" "$M" --r 8 --alpha 16 --targets q,k,v,o,gate,up,down --fresh --base "$M" \
           > "$TMP/chk" 2>&1; then ok; else bad "fresh adapter files: $(grep 'ref_lora' "$TMP/chk" | head -3)"; fi
else bad "test-lora init failed: $(tail -1 "$TMP/err")"; fi
if $PY "$RL" check-files "$TMP/llama/cA" "$M" --r 4 --alpha 8 --targets q,k,v,o,gate,up,down > "$TMP/chk" 2>&1; then ok
else bad "trained adapter files: $(grep 'ref_lora' "$TMP/chk" | head -3)"; fi
"$LO" init "$M" "$TMP/fresh2" 8 16 q,v 7 0 2>/dev/null
python_json() { $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
expect_eq "$(python_json "$TMP/fresh2/adapter_config.json" 'd["target_modules"], d["r"], d["lora_alpha"], d["peft_type"], d["task_type"], d["bias"], d["lora_dropout"], d["fan_in_fan_out"], d["use_rslora"]')" \
    "['q_proj', 'v_proj'] 8 16 LORA CAUSAL_LM none 0.0 False False" "adapter_config.json fields"
# Same seed: the q adapter is the same whether or not other targets are adapted.
$PY -c "
import sys; sys.path.insert(0, '$TOP/tests/oracle'); import st_io, torch
a = st_io.load_file('$TMP/fresh/adapter_model.safetensors'); b = st_io.load_file('$TMP/fresh2/adapter_model.safetensors')
n = 'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight'
sys.exit(0 if torch.equal(a[n], b[n]) else 1)" && ok || bad "A of q_proj depends on the other targets"

# ---------------------------------------------------------------------------------------------
# lora-merge flags and errors

AD="$TMP/llama/ad"
expect_rc 0 "help" -- lora-merge --help
grep -q '^usage: lora-merge' "$TMP/out" && ok || bad "--help prints usage on stdout"
expect_rc 0 "version" -- lora-merge --version
grep -qE '^lora-merge .+' "$TMP/out" && ok || bad "--version prints 'lora-merge VERSION'"
expect_rc 64 "unknown flag" -- lora-merge --bogus
expect_err "Try 'lora-merge --help'" "unknown flag hint"
expect_rc 64 "no --model" -- lora-merge --adapter "$AD" --out "$TMP/x"
expect_err "--model DIR is required" "no --model"
expect_rc 64 "no --adapter" -- lora-merge --model "$M" --out "$TMP/x"
expect_err "--adapter DIR is required" "no --adapter"
expect_rc 64 "no --out" -- lora-merge --model "$M" --adapter "$AD"
expect_err "--out DIR is required" "no --out"
expect_rc 64 "bad dtype" -- lora-merge --model "$M" --adapter "$AD" --out "$TMP/x" --dtype f16
expect_rc 64 "bad threads" -- lora-merge --model "$M" --adapter "$AD" --out "$TMP/x" --threads 0
expect_rc 64 "operand" -- lora-merge --model "$M" --adapter "$AD" --out "$TMP/x" extra
expect_rc 64 "missing argument" -- lora-merge --model
expect_rc 66 "missing model" -- lora-merge --model "$TMP/none" --adapter "$AD" --out "$TMP/x"
expect_rc 66 "missing adapter" -- lora-merge --model "$M" --adapter "$TMP/none" --out "$TMP/x"
mkdir -p "$TMP/ad-noweights"; cp "$AD/adapter_config.json" "$TMP/ad-noweights/"
expect_rc 66 "adapter without weights" -- lora-merge --model "$M" --adapter "$TMP/ad-noweights" --out "$TMP/x"
expect_err "adapter_model.safetensors" "adapter without weights"
mkdir -p "$TMP/ad-noconfig"; cp "$AD/adapter_model.safetensors" "$TMP/ad-noconfig/"
expect_rc 66 "adapter without config" -- lora-merge --model "$M" --adapter "$TMP/ad-noconfig" --out "$TMP/x"

# bad adapters: 65, one line naming the file and the problem
bad_adapter() {   # DESC PY-EXPR-ON-d EXPECTED-STDERR
    local dd="$TMP/bad-$RANDOM"; mkdir -p "$dd"; cp "$AD"/adapter_* "$dd/"
    $PY -c "import json; p='$dd/adapter_config.json'; d=json.load(open(p)); $2; json.dump(d, open(p, 'w'))"
    expect_rc 65 "$1" -- lora-merge --model "$M" --adapter "$dd" --out "$TMP/x"
    expect_err "$3" "$1"
}
bad_adapter "peft_type IA3" 'd["peft_type"]="IA3"' 'peft_type must be "LORA"'
bad_adapter "use_dora" 'd["use_dora"]=True' '"use_dora" is set'
bad_adapter "fan_in_fan_out" 'd["fan_in_fan_out"]=True' '"fan_in_fan_out" is set'
bad_adapter "lora bias" 'd["bias"]="all"' 'bias must be "none"'
bad_adapter "rank_pattern" 'd["rank_pattern"]={"q_proj": 2}' '"rank_pattern" is set'
bad_adapter "r zero" 'd["r"]=0' '"r" missing or not an integer'
bad_adapter "r mismatch" 'd["r"]=5' 'shape [4, 32], the model and adapter_config.json need [5, 32]'
bad_adapter "r huge" 'd["r"]=60000' 'need [60000, 32]'
bad_adapter "unknown target" 'd["target_modules"]=["q_proj","lm_head"]' 'target_modules[1]: "lm_head" is not one of'
bad_adapter "fewer targets" 'd["target_modules"]=["q_proj"]' 'unexpected tensor base_model.model.model.layers.0.mlp.down_proj.lora_A.weight'
bad_adapter "regex targets" 'd["target_modules"]=".*proj"' 'only a list of module names or "all-linear"'
printf '{"peft_type": "LORA",' > "$TMP/bad-json.json"
mkdir -p "$TMP/bad-json"; cp "$AD/adapter_model.safetensors" "$TMP/bad-json/"; cp "$TMP/bad-json.json" "$TMP/bad-json/adapter_config.json"
expect_rc 65 "config not JSON" -- lora-merge --model "$M" --adapter "$TMP/bad-json" --out "$TMP/x"
expect_err "not valid JSON" "config not JSON"
# an adapter made for another model shape
expect_rc 65 "adapter for another model" -- lora-merge --model "$TMP/qwen3/m" --adapter "$AD" --out "$TMP/x"
expect_err "shape" "adapter for another model"
# truncated weights
mkdir -p "$TMP/trunc"; cp "$AD/adapter_config.json" "$TMP/trunc/"
head -c 500 "$AD/adapter_model.safetensors" > "$TMP/trunc/adapter_model.safetensors"
expect_rc 65 "truncated adapter" -- lora-merge --model "$M" --adapter "$TMP/trunc" --out "$TMP/x"
# non-finite weights
mkdir -p "$TMP/nan"; cp "$AD/adapter_config.json" "$TMP/nan/"
$PY -c "
import sys; sys.path.insert(0, '$TOP/tests/oracle'); import st_io
d = st_io.load_file('$AD/adapter_model.safetensors'); n = sorted(d)[3]; d[n][0, 0] = float('nan')
st_io.save_file(d, '$TMP/nan/adapter_model.safetensors')"
expect_rc 65 "nan adapter" -- lora-merge --model "$M" --adapter "$TMP/nan" --out "$TMP/x"
expect_err "is nan" "nan adapter"
[ ! -e "$TMP/x" ] && ok || bad "failed runs must not create the output"
# unwritable output
touch "$TMP/file"
expect_rc 73 "out under a file" -- lora-merge --model "$M" --adapter "$AD" --out "$TMP/file/sub"
# bf16 output: config says so, the weights load, and are the rounded f32 merge
expect_rc 0 "bf16 merge" -- lora-merge --model "$M" --adapter "$AD" --out "$TMP/m16" --dtype bf16
expect_eq "$(python_json "$TMP/m16/config.json" 'd["torch_dtype"]')" "bfloat16" "bf16 merge torch_dtype"
expect_rc 0 "bf16 merge loads" -- init-model -n --from "$TMP/m16"
$PY -c "
import sys; sys.path.insert(0, '$TOP/tests/oracle'); import st_io, torch
a = st_io.load_model_dir('$TMP/m16'); b = st_io.load_model_dir('$TMP/llama/cM')
sys.exit(0 if all(torch.equal(a[n].float(), b[n].to(torch.bfloat16).float()) for n in b) else 1)" \
    && ok || bad "bf16 merge is not the rounded f32 merge"

finish
