#!/usr/bin/env bash
# tests/cli/model-io.sh — init-model's flags, and checkpoint I/O against PyTorch (tests/oracle/st_ref.py):
# checkpoints torch writes (llama/qwen2/qwen3, bf16/f16/f32, sharded) are loaded and saved by C and
# compared with torch's own conversions bit for bit; every f16/bf16 pattern and f32 rounding edge
# case is converted as torch does; corrupt files and configs are refused with exit 65 and one line;
# missing inputs are 66; unwritable outputs 73; a full disk (tmpfs) is 74 and keeps the previous
# checkpoint loadable.
source "$(dirname "$0")/../lib.sh"
T=$TOP/build/tests/bin/test-model
CFG=$TOP/tests/data/model-configs
MNT=()
trap 'for m in "${MNT[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$TMP"' EXIT

# ---------------------------------------------------------------------------------------------
# flags

expect_rc 0 "help" -- init-model --help
grep -q '^usage: init-model' "$TMP/out" && ok || bad "--help prints usage on stdout"
expect_rc 0 "version" -- init-model --version
grep -qE '^init-model .+' "$TMP/out" && ok || bad "--version prints 'init-model VERSION'"
expect_rc 64 "unknown flag" -- init-model --bogus
expect_err "Try 'init-model --help'" "unknown flag hint"
expect_rc 64 "no --out" -- init-model --preset tiny
expect_err "--out DIR is required" "no --out"
expect_rc 64 "no source" -- init-model --out "$TMP/x"
expect_rc 64 "two sources" -- init-model --preset tiny --config "$CFG/micro.json" --out "$TMP/x"
expect_rc 64 "seed negative" -- init-model --preset tiny --seed -1 --out "$TMP/x"
expect_err "out of range" "seed negative"
expect_rc 64 "seed garbage" -- init-model --preset tiny --seed 12abc --out "$TMP/x"
expect_err 'invalid number "12abc"' "seed garbage"
expect_rc 64 "vocab 0" -- init-model --preset tiny --vocab-size 0 --out "$TMP/x"
expect_rc 64 "bad dtype" -- init-model --preset tiny --dtype f8 --out "$TMP/x"
expect_rc 64 "bad preset" -- init-model --preset huge --out "$TMP/x"
expect_err 'unknown preset "huge"' "bad preset"
expect_rc 64 "bad arch" -- init-model --preset tiny --arch gpt2 --out "$TMP/x"
expect_rc 64 "operand" -- init-model --preset tiny --out "$TMP/x" extra
expect_rc 64 "missing argument" -- init-model --preset
expect_rc 66 "missing config" -- init-model --config "$TMP/none.json" --out "$TMP/x"
expect_rc 66 "missing from dir" -- init-model --from "$TMP/none" --out "$TMP/x"
mkdir -p "$TMP/empty"
expect_rc 66 "dir without weights" -- init-model --from "$TMP/empty" --out "$TMP/x"
cp "$CFG/micro.json" "$TMP/empty/config.json"
expect_rc 66 "config but no weights" -- init-model --from "$TMP/empty" --out "$TMP/x"
expect_err "no model.safetensors or model.safetensors.index.json" "config but no weights"
[ ! -e "$TMP/x" ] && ok || bad "failed runs must not create the output"

# Deterministic, seed-dependent, presets as specified.
expect_rc 0 "tiny seed 5" -- init-model -q --preset tiny --seed 5 --out "$TMP/s5a"
expect_rc 0 "tiny seed 5 again" -- init-model -q --preset tiny --seed 5 --out "$TMP/s5b"
expect_rc 0 "tiny seed 6" -- init-model -q --preset tiny --seed 6 --out "$TMP/s6"
expect_same "$TMP/s5a/model.safetensors" "$TMP/s5b/model.safetensors" "same seed, same bytes"
cmp -s "$TMP/s5a/model.safetensors" "$TMP/s6/model.safetensors" && bad "seeds 5 and 6 gave the same weights" || ok
expect_rc 0 "config 0.5b dry run" -- init-model -n --config "$CFG/qwen2.5-0.5b.json"
expect_err "qwen2 L=24 C=896 NH=14 NKV=2 hs=64 FF=4864 V=151936 tied params=494032768" "qwen2.5-0.5b config"
expect_rc 0 "preset 0.5b dry run" -- init-model --preset qwen2.5-0.5b --dry-run
expect_err "qwen2 L=24 C=896 NH=14 NKV=2 hs=64 FF=4864 V=151936 tied params=494032768" "qwen2.5-0.5b preset"
expect_rc 0 "preset qwen3 dry run" -- init-model --preset qwen3-0.6b -n
expect_err "qwen3 L=28 C=1024 NH=16 NKV=8 hs=128 FF=3072 V=151936 tied params=596049920" "qwen3-0.6b preset"
expect_rc 0 "preset small dry run" -- init-model --preset small -n
expect_err "L=8 C=512 NH=8 NKV=2 hs=64 FF=1408 V=8192 tied" "small preset"
expect_rc 0 "llama 3.2 config (llama3 rope scaling)" -- init-model -n --config "$CFG/llama-3.2-1b.json"
expect_err "llama L=16 C=2048 NH=32 NKV=8 hs=64 FF=8192 V=128256 tied params=1235814400" "llama 3.2 config"
expect_rc 0 "qwen3 arch on tiny" -- init-model -q --preset tiny --arch qwen3 --vocab-size 100 --out "$TMP/q3"
expect_rc 0 "dry run on a checkpoint" -- init-model -n --from "$TMP/q3"
expect_err "checked $TMP/q3: qwen3 L=2 C=64 NH=4 NKV=2 hs=16 FF=176 V=100 tied params=" "checkpoint check"

# --tokenizer: copied beside the model; the tiny preset takes its vocabulary size.
mkdir -p "$TMP/tok"
printf '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"c":299}},"added_tokens":[{"id":300,"content":"<|x|>"}]}' >"$TMP/tok/tokenizer.json"
printf '{"chat_template":"x"}' >"$TMP/tok/tokenizer_config.json"
expect_rc 0 "tokenizer" -- init-model --preset tiny --tokenizer "$TMP/tok/tokenizer.json" --out "$TMP/wt"
expect_err "V=301" "vocab size from tokenizer"
expect_same "$TMP/tok/tokenizer.json" "$TMP/wt/tokenizer.json" "tokenizer.json copied"
expect_same "$TMP/tok/tokenizer_config.json" "$TMP/wt/tokenizer_config.json" "tokenizer_config.json copied"
expect_rc 0 "convert keeps tokenizer" -- init-model -q --from "$TMP/wt" --out "$TMP/wt2"
expect_same "$TMP/tok/tokenizer_config.json" "$TMP/wt2/tokenizer_config.json" "--from copies tokenizer files"
expect_rc 66 "missing tokenizer" -- init-model --preset tiny --tokenizer "$TMP/none/tokenizer.json" --out "$TMP/x2"
ls "$TMP"/wt/*.tmp.* >/dev/null 2>&1 && bad "temp files left behind" || ok

# ---------------------------------------------------------------------------------------------
# PyTorch oracle

PYBIN=/usr/bin/python3
# OpenBLAS needs SkylakeX on AVX-512 VMs (docs/oracle.md) and would crash with it elsewhere.
CORE=()
grep -q avx512f /proc/cpuinfo 2>/dev/null && CORE=(OPENBLAS_CORETYPE=SkylakeX)
if ! env "${CORE[@]}" $PYBIN -c 'import torch, numpy' 2>/dev/null; then
    bad "the PyTorch oracle is missing: /usr/bin/python3 cannot import torch (make check installs python3-torch)"
else
    PY=(env "${CORE[@]}" "$PYBIN" "$TOP/tests/oracle/st_ref.py")

    # Conversions: every f16 and bf16 bit pattern, f32 ties/subnormals/inf/nan/overflow, random bits.
    "${PY[@]}" conv-gen "$TMP/edge.safetensors"
    for d in f32 bf16 f16; do
        expect_rc 0 "st-convert $d" -- "$T" st-convert "$TMP/edge.safetensors" "$TMP/edge-$d.safetensors" $d
        expect_rc 0 "conversions to $d as torch" -- "${PY[@]}" conv-check "$TMP/edge.safetensors" "$TMP/edge-$d.safetensors" $d
    done

    # Checkpoints torch wrote -> C load + save -> torch compares (one python run for all).
    n=0 triples=()
    for spec in "llama bf16 --untied" "qwen2 bf16" "qwen3 bf16" "llama f16" "qwen2 f16 --untied" \
                "qwen3 f16 --untied" "qwen2 f32 --lm-head-copy" "qwen3 bf16 --shards 3" \
                "llama f16 --untied --inv-freq --shards 2"; do
        n=$((n + 1))
        read -r arch dt rest <<<"$spec"
        # shellcheck disable=SC2086
        "${PY[@]}" gen "$TMP/src$n" --arch $arch --dtype $dt --seed $n $rest
        for out in f32 bf16; do
            expect_rc 0 "load+save $spec -> $out" -- init-model -q --from "$TMP/src$n" --out "$TMP/c$n-$out" --dtype $out
            triples+=("$TMP/src$n" "$TMP/c$n-$out" $out)
        done
    done
    "${PY[@]}" check "${triples[@]}" >"$TMP/check.out" 2>&1
    while read -r word rest; do
        case $word in ok) ok ;; *) bad "torch disagrees: $word $rest" ;; esac
    done <"$TMP/check.out"
    [ "$(grep -c '^ok ' "$TMP/check.out")" = 18 ] && ok || bad "torch checked $(grep -c '^ok ' "$TMP/check.out") of 18 outputs"
    expect_rc 0 "random init" -- init-model -q --preset small --seed 9 --out "$TMP/init"
    expect_rc 0 "init is HF's normal(0, 0.02) / zeros / ones" -- "${PY[@]}" check-init "$TMP/init"

    # Corrupt checkpoints: exit 65 with one line naming the problem.
    "${PY[@]}" gen "$TMP/base" --arch qwen2 --dtype bf16
    "${PY[@]}" gen "$TMP/sharded" --arch qwen2 --dtype bf16 --shards 2
    cases=$(cat <<'EOF'
truncated|base|65|model.norm.weight: data_offsets [46592, 46656] beyond the file's 46646 data bytes
short|base|65|too short for a safetensors file
empty|base|65|too short for a safetensors file
hdrlen|base|65|beyond the file's
hdrcap|base|65|exceeds the 104857600-byte cap
badjson|base|65|header is not valid JSON
notobject|base|65|header does not start with '{'
dupkey|base|65|header is not valid JSON: duplicate object key
offsets|base|65|tensor model.layers.0.self_attn.k_proj.weight: data_offsets [1000
overlap|base|65|overlap the previous tensor
gap|base|65|leave a gap after byte
sizemismatch|base|65|needs 1024 bytes
dtype-i8|base|65|dtype I8 not supported
dtype-f64|base|65|dtype F64 not supported
dtype-unknown|base|65|unknown dtype "Q4_K"
missing|base|65|tensor model.layers.0.self_attn.k_proj.weight missing
extra|base|65|unexpected tensor model.layers.0.mlp.extra.weight
shape|base|65|tensor model.layers.0.self_attn.k_proj.weight: shape [32, 16], config.json needs [16, 32]
nan|base|65|model.layers.0.self_attn.k_proj.weight: element 32 is nan
shard-map|sharded|65|but the index puts it in
shard-missing|sharded|66|No such file or directory
rope|base|65|"rope_scaling" of type "yarn" is not supported (linear, llama3)
rope-llama3|base|65|"rope_scaling": "low_freq_factor" missing
model-type|base|65|model_type "mistral" is not supported
sliding|base|65|use_sliding_window true is not supported
mlp-bias|base|65|mlp_bias true is not supported
act|base|65|hidden_act "gelu" is not supported
heads|base|65|not a multiple of num_key_value_heads
vocab|base|65|model.embed_tokens.weight: shape [96, 32], config.json needs [160, 32]
config-json|base|65|config.json: not valid JSON
EOF
)
    "${PY[@]}" corrupt "$TMP/base" "$TMP/bad" $(grep '|base|' <<<"$cases" | cut -d'|' -f1)
    "${PY[@]}" corrupt "$TMP/sharded" "$TMP/bad" $(grep '|sharded|' <<<"$cases" | cut -d'|' -f1)
    while IFS='|' read -r kind src rc text; do
        expect_rc "$rc" "corrupt $kind" -- init-model --from "$TMP/bad-$kind" --out "$TMP/o-$kind"
        expect_err "$text" "corrupt $kind"
        [ "$(wc -l <"$TMP/err")" = 1 ] && ok || bad "corrupt $kind: more than one stderr line"
        [ ! -e "$TMP/o-$kind" ] && ok || bad "corrupt $kind: output written"
    done <<<"$cases"
fi

# ---------------------------------------------------------------------------------------------
# unwritable output, full disk

touch "$TMP/afile"
expect_rc 73 "out under a file" -- init-model --preset tiny --out "$TMP/afile/sub"
expect_err "create $TMP/afile" "out under a file"
mkdir -p "$TMP/ro" "$TMP/full"
if mount -t tmpfs -o size=64k,ro tmpfs "$TMP/ro" 2>/dev/null; then
    MNT+=("$TMP/ro")
    expect_rc 73 "read-only dir" -- init-model --preset tiny --out "$TMP/ro"
    expect_err "Read-only file system" "read-only dir"
else
    echo "$NAME: skipping the read-only mount test (mount failed; needs root)" >&2
fi
if mount -t tmpfs -o size=64k tmpfs "$TMP/full" 2>/dev/null; then
    MNT+=("$TMP/full")
    # micro.json: ~46 KB of f32 weights; one copy fits in 64 KB, the temp file beside it does not.
    expect_rc 0 "first save fits" -- init-model -q --config "$CFG/micro.json" --seed 1 --out "$TMP/full/m"
    cp "$TMP/full/m/model.safetensors" "$TMP/prev.safetensors"
    expect_rc 74 "disk full" -- init-model -q --config "$CFG/micro.json" --seed 2 --out "$TMP/full/m"
    expect_err "No space left on device" "disk full"
    expect_same "$TMP/prev.safetensors" "$TMP/full/m/model.safetensors" "previous checkpoint intact"
    ls "$TMP"/full/m/*.tmp.* >/dev/null 2>&1 && bad "temp file left on the full disk" || ok
    expect_rc 0 "previous checkpoint loadable" -- init-model -q --from "$TMP/full/m" --out "$TMP/reloaded"
else
    echo "$NAME: skipping the full-disk test (mount -t tmpfs failed; needs root)" >&2
fi

finish
