# tests/cli/adapter.sh — rollout and teacher-logits with --adapter (a PEFT LoRA adapter that
# sft-step --lora-rank trained): the policy is base + adapter, merged once at load.
#   - the records equal, byte for byte, those of the same tool on the lora-merge'd model (f32 and
#     --dtype bf16, sampled and greedy), and differ from the base model's (the adapter matters);
#   - the header names the policy: model_xxh3 = lora_policy_hash(base, adapter), recomputed in
#     python (xxh3_64 of the adapter hash's 8 little-endian bytes seeded with the base hash);
#     base_model_xxh3 is the plain base's model_xxh3; adapter_xxh3 is recomputed in python from
#     the safetensors file (lora_hash: r, scaling, then every tensor in PEFT order);
#   - without --adapter the header has none of the new keys;
#   - bad adapter directories (missing, no tensors, no config, corrupt JSON, wrong rank, another
#     model's shape) exit 65/66 with one line on stderr.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
ARITH="$TOP/examples/arith"
have_xxh=1
$PY -c 'import xxhash' 2>/dev/null || { have_xxh=0; bad "python3-xxhash missing (apt-get install python3-xxhash): hash checks skipped"; }

# a tiny qwen2 on the arith tokenizer, and two adapters trained on it with a high learning rate
mkcfg() {   # layers intermediate
    echo "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\",\"vocab_size\":512,\"hidden_size\":32,\"intermediate_size\":$2,\"num_hidden_layers\":$1,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"hidden_act\":\"silu\",\"max_position_embeddings\":256,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":true,\"eos_token_id\":421}"
}
mkcfg 2 64 > "$TMP/cfg.json"
mkcfg 2 48 > "$TMP/cfg-other.json"
init-model -q --config "$TMP/cfg.json" --tokenizer "$ARITH" --out "$TMP/m" --seed 3
init-model -q --config "$TMP/cfg-other.json" --tokenizer "$ARITH" --out "$TMP/mo" --seed 3
make-task --n 48 --seed 5 > "$TMP/train.jsonl"
make-task --n 6 --seed 9 > "$TMP/q.jsonl"
tokenize -q --tokenizer "$ARITH" < "$TMP/train.jsonl" > "$TMP/train.mp"
tokenize -q --tokenizer "$ARITH" < "$TMP/q.jsonl" > "$TMP/q.mp"
SFT=(sft-step -q --threads 1 --lr 5e-2 --batch-tokens 400 --steps 4)
"${SFT[@]}" --model "$TMP/m" --out "$TMP/ad" --lora-rank 4 "$TMP/train.mp" > /dev/null \
    && "${SFT[@]}" --model "$TMP/m" --out "$TMP/adqv" --lora-rank 2 --lora-targets q,v "$TMP/train.mp" > /dev/null \
    && "${SFT[@]}" --model "$TMP/mo" --out "$TMP/ado" --lora-rank 4 "$TMP/train.mp" > /dev/null \
    || { bad "sft-step --lora-rank failed"; finish; exit 1; }
for a in ad adqv; do lora-merge -q --model "$TMP/m" --adapter "$TMP/$a" --out "$TMP/merged-$a" || bad "lora-merge $a"; done

data() { to-json "$1" | jq -c 'select(.kind != "header" and .kind != "end")'; }
hdr() { to-json "$1" | head -n 1; }
# the header without what names the model: equal for the adapter run and the merged model's run
hdr_rest() { hdr "$1" | jq -c 'del(.model_xxh3, .base_model_xxh3, .adapter_xxh3, .options.model, .options.adapter,
                                   .teacher.model_xxh3, .teacher.base_model_xxh3, .teacher.adapter_xxh3)'; }

# python: lora_policy_hash and lora_hash, independently of the C code
cat > "$TMP/hash.py" <<'EOF'
import json, math, struct, sys, xxhash
def policy(base_hex, adapter_hex):
    return "%016x" % xxhash.xxh3_64_intdigest(struct.pack("<Q", int(adapter_hex, 16)), seed=int(base_hex, 16))
def adapter(d, layers):
    cfg = json.load(open(d + "/adapter_config.json"))
    raw = open(d + "/adapter_model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n]); body = raw[8 + n:]
    r = cfg["r"]; a = cfg["lora_alpha"]
    scaling = a / math.sqrt(r) if cfg.get("use_rslora") else a / r
    h = xxhash.xxh3_64(); h.update(struct.pack("<i", r)); h.update(struct.pack("<f", scaling))
    for l in range(layers):
        for t in ["q", "k", "v", "o", "gate", "up", "down"]:
            if t + "_proj" not in cfg["target_modules"]: continue
            for ab in "AB":
                blk = "self_attn" if t in "qkvo" else "mlp"
                e = head["base_model.model.model.layers.%d.%s.%s_proj.lora_%s.weight" % (l, blk, t, ab)]
                assert e["dtype"] == "F32"
                h.update(body[e["data_offsets"][0]:e["data_offsets"][1]])
    return h.hexdigest()
if sys.argv[1] == "policy": print(policy(sys.argv[2], sys.argv[3]))
else: print(adapter(sys.argv[2], int(sys.argv[3])))
EOF

# --- rollout: adapter == lora-merge'd model, record for record
ROLL=(rollout -q --threads 1 --max-new-tokens 16)
for a in ad adqv; do
    for mode in "-G 3 --seed 4" "--greedy" "--dtype bf16 -G 2"; do
        # shellcheck disable=SC2086
        "${ROLL[@]}" $mode --model "$TMP/m" --adapter "$TMP/$a" "$TMP/q.mp" > "$TMP/ra.mp" 2>"$TMP/err" || bad "$a $mode: rollout --adapter failed: $(tail -1 "$TMP/err")"
        # shellcheck disable=SC2086
        "${ROLL[@]}" $mode --model "$TMP/merged-$a" "$TMP/q.mp" > "$TMP/rm.mp"
        # shellcheck disable=SC2086
        "${ROLL[@]}" $mode --model "$TMP/m" "$TMP/q.mp" > "$TMP/rb.mp"
        expect_eq "$(data "$TMP/ra.mp" | md5sum)" "$(data "$TMP/rm.mp" | md5sum)" "rollout $a $mode: records == the merged model's"
        expect_eq "$(hdr_rest "$TMP/ra.mp")" "$(hdr_rest "$TMP/rm.mp")" "rollout $a $mode: header == the merged model's but the model names"
        [ "$(data "$TMP/ra.mp" | jq -c .logprobs)" != "$(data "$TMP/rb.mp" | jq -c .logprobs)" ] && ok \
            || bad "rollout $a $mode: the adapter changes nothing (the test would prove nothing)"
    done
    H=$(hdr "$TMP/ra.mp")
    expect_eq "$(jq -r .options.adapter <<<"$H")" "$TMP/$a" "rollout $a: options.adapter"
    expect_eq "$(jq -r .base_model_xxh3 <<<"$H")" "$(hdr "$TMP/rb.mp" | jq -r .model_xxh3)" "rollout $a: base_model_xxh3 = the base's model_xxh3"
    if [ $have_xxh = 1 ]; then
        expect_eq "$(jq -r .model_xxh3 <<<"$H")" "$($PY "$TMP/hash.py" policy "$(jq -r .base_model_xxh3 <<<"$H")" "$(jq -r .adapter_xxh3 <<<"$H")")" \
            "rollout $a: model_xxh3 = lora_policy_hash(base, adapter) (python)"
        expect_eq "$(jq -r .adapter_xxh3 <<<"$H")" "$($PY "$TMP/hash.py" adapter "$TMP/$a" 2)" "rollout $a: adapter_xxh3 = lora_hash (python)"
    fi
    [ "$(jq -r .model_xxh3 <<<"$H")" != "$(hdr "$TMP/rm.mp" | jq -r .model_xxh3)" ] && ok \
        || bad "rollout $a: model_xxh3 should name base + adapter, not the merged weights"
done
# without --adapter: no new keys (the stream is as before; the options hold no batching keys, whose
# values do not change the output: issue 13)
expect_eq "$(hdr "$TMP/rb.mp" | jq -c '[has("base_model_xxh3"), has("adapter_xxh3"), (.options | has("adapter")), (keys | length), (.options | keys | length)]')" \
    '[false,false,false,12,11]' "rollout without --adapter: header keys unchanged"
# a different adapter, a different policy hash; the same adapter twice, the same bytes
"${ROLL[@]}" --model "$TMP/m" --adapter "$TMP/ad" "$TMP/q.mp" > "$TMP/r1.mp"
"${ROLL[@]}" --model "$TMP/m" --adapter "$TMP/ad" < "$TMP/q.mp" > "$TMP/r2.mp"
expect_same "$TMP/r1.mp" "$TMP/r2.mp" "rollout --adapter: rerun gives the same bytes"
"${ROLL[@]}" --model "$TMP/m" --adapter "$TMP/adqv" "$TMP/q.mp" > "$TMP/r3.mp"
[ "$(hdr "$TMP/r1.mp" | jq -r .model_xxh3)" != "$(hdr "$TMP/r3.mp" | jq -r .model_xxh3)" ] && ok || bad "two adapters, one model_xxh3"

# --- teacher-logits: likewise
TL=(teacher-logits -q --threads 1 --top-k 8)
"${TL[@]}" --model "$TMP/m" --adapter "$TMP/ad" "$TMP/train.mp" > "$TMP/ta.mp" 2>"$TMP/err" || bad "teacher-logits --adapter failed: $(tail -1 "$TMP/err")"
"${TL[@]}" --model "$TMP/merged-ad" "$TMP/train.mp" > "$TMP/tm.mp"
"${TL[@]}" --model "$TMP/m" "$TMP/train.mp" > "$TMP/tb.mp"
expect_eq "$(data "$TMP/ta.mp" | md5sum)" "$(data "$TMP/tm.mp" | md5sum)" "teacher-logits --adapter: records == the merged model's"
expect_eq "$(hdr_rest "$TMP/ta.mp")" "$(hdr_rest "$TMP/tm.mp")" "teacher-logits --adapter: header == the merged model's but the model names"
[ "$(data "$TMP/ta.mp" | md5sum)" != "$(data "$TMP/tb.mp" | md5sum)" ] && ok || bad "teacher-logits: the adapter changes nothing"
H=$(hdr "$TMP/ta.mp")
expect_eq "$(jq -r .options.adapter <<<"$H")" "$TMP/ad" "teacher-logits: options.adapter"
expect_eq "$(jq -r .teacher.base_model_xxh3 <<<"$H")" "$(hdr "$TMP/tb.mp" | jq -r .teacher.model_xxh3)" "teacher-logits: base_model_xxh3 = the base's model_xxh3"
expect_eq "$(jq -r .teacher.adapter_xxh3 <<<"$H")" "$(hdr "$TMP/r1.mp" | jq -r .adapter_xxh3)" "teacher-logits and rollout: one adapter_xxh3"
if [ $have_xxh = 1 ]; then
    expect_eq "$(jq -r .teacher.model_xxh3 <<<"$H")" "$($PY "$TMP/hash.py" policy "$(jq -r .teacher.base_model_xxh3 <<<"$H")" "$(jq -r .teacher.adapter_xxh3 <<<"$H")")" \
        "teacher-logits: teacher.model_xxh3 = lora_policy_hash(base, adapter) (python)"
fi
expect_eq "$(hdr "$TMP/tb.mp" | jq -c '[(.teacher | keys | length), (.options | has("adapter"))]')" '[5,false]' \
    "teacher-logits without --adapter: header keys unchanged"

# --- bad adapter directories: exit 65/66, one line on stderr naming the tool
bad_case() {   # rc desc text dir
    local rc=$1 desc=$2 text=$3 dir=$4
    expect_rc "$rc" "rollout: $desc" -- rollout --model "$TMP/m" --adapter "$dir" "$TMP/q.mp"
    expect_err "$text" "rollout: $desc: message"
    expect_eq "$(wc -l < "$TMP/err")" 1 "rollout: $desc: one line"
    grep -q '^rollout: ' "$TMP/err" && ok || bad "rollout: $desc: message not prefixed with the tool name"
    expect_rc "$rc" "teacher-logits: $desc" -- teacher-logits --model "$TMP/m" --top-k 4 --adapter "$dir" "$TMP/q.mp"
    expect_err "$text" "teacher-logits: $desc: message"
    expect_eq "$(wc -l < "$TMP/err")" 1 "teacher-logits: $desc: one line"
}
mkbad() { rm -rf "$TMP/$1"; cp -r "$TMP/ad" "$TMP/$1"; }
bad_case 66 "missing directory" "$TMP/nope" "$TMP/nope"
mkbad no-st; rm "$TMP/no-st/adapter_model.safetensors"
bad_case 66 "no adapter_model.safetensors" "adapter_model.safetensors" "$TMP/no-st"
mkbad no-cfg; rm "$TMP/no-cfg/adapter_config.json"
bad_case 66 "no adapter_config.json" "adapter_config.json" "$TMP/no-cfg"
mkbad corrupt; printf '{"r": 4, "lora_alpha": ' > "$TMP/corrupt/adapter_config.json"
bad_case 65 "corrupt JSON" "adapter_config.json" "$TMP/corrupt"
mkbad rank; jq '.r = 8' "$TMP/ad/adapter_config.json" > "$TMP/rank/adapter_config.json"
bad_case 65 "config rank != tensors' rank" "adapter_model.safetensors" "$TMP/rank"
mkbad trunc; head -c 1000 "$TMP/ad/adapter_model.safetensors" > "$TMP/trunc/adapter_model.safetensors"
bad_case 65 "truncated safetensors" "adapter_model.safetensors" "$TMP/trunc"
# an adapter trained for another base model (intermediate_size 48, not 64) is refused
bad_case 65 "adapter of another model" "shape" "$TMP/ado"
expect_rc 64 "rollout: --adapter without a value" -- rollout --model "$TMP/m" --adapter

finish
