#!/usr/bin/python3
"""Convert an srlm / Hugging Face checkpoint to GGUF v3 for the llama.cpp yardstick.

usage: /usr/bin/python3 bench/llamacpp/to_gguf.py MODEL_DIR OUT.gguf [--dtype f32|bf16]

MODEL_DIR holds config.json (model_type llama, qwen2 or qwen3) and one model.safetensors
(F32, BF16 or F16).  Needs only the standard library and numpy (Debian python3-numpy).

What it writes, following llama.cpp's own convert_hf_to_gguf.py:
  * the architecture hyper-parameters ({arch}.block_count, .embedding_length, ...);
  * the weights under llama.cpp's tensor names; 2-D tensors in --dtype (default: the
    checkpoint's dtype, F16 counting as f32), 1-D tensors (norms, biases) always F32;
    f32 -> bf16 rounds to nearest even;
  * for llama, q_proj/k_proj rows permuted the way convert_hf_to_gguf.py does it
    (llama.cpp applies the interleaved "normal" RoPE to LLM_ARCH_LLAMA, HF the
    rotate-half one); qwen2/qwen3 use NEOX RoPE in llama.cpp and need no permutation;
  * a SYNTHETIC vocabulary of vocab_size tokens (tokenizer.ggml.model "gpt2": the 256
    byte tokens, then "t<id>", the last one an <|endoftext|> control token used as
    bos/eos, no merges).  The benchmark feeds token ids directly, so text is meaningless.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGN = 32

# gguf metadata value types
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
# ggml tensor types
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
# llama_ftype
FTYPE = {"f32": 0, "bf16": 32}


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv_bytes(key, vtype, value):
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == T_UINT32:
        out += struct.pack("<I", value)
    elif vtype == T_INT32:
        out += struct.pack("<i", value)
    elif vtype == T_FLOAT32:
        out += struct.pack("<f", value)
    elif vtype == T_BOOL:
        out += struct.pack("<B", 1 if value else 0)
    elif vtype == T_STRING:
        out += gguf_str(value)
    elif vtype == T_ARRAY:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        if etype == T_STRING:
            out += b"".join(gguf_str(x) for x in items)
        elif etype == T_INT32:
            out += np.asarray(items, dtype="<i4").tobytes()
        elif etype == T_FLOAT32:
            out += np.asarray(items, dtype="<f4").tobytes()
        else:
            raise ValueError("unsupported array type %d" % etype)
    else:
        raise ValueError("unsupported value type %d" % vtype)
    return out


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode map (the byte tokens of a "gpt2" vocabulary)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    base = 8 + n
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": "<f4", "BF16": "<u2", "F16": "<f2"}.get(info["dtype"])
        if dt is None:
            sys.exit("to_gguf: %s: unsupported dtype %s" % (name, info["dtype"]))
        a, b = info["data_offsets"]
        arr = mm[base + a:base + b].view(dt).reshape(info["shape"])
        tensors[name] = (info["dtype"], arr)
    return tensors


def to_f32(src_dtype, arr):
    if src_dtype == "F32":
        return np.asarray(arr, dtype="<f4")
    if src_dtype == "BF16":
        return (arr.astype("<u4") << 16).view("<f4")
    return arr.astype("<f4")  # F16


def f32_to_bf16(x):
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4")
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    nan = np.isnan(x)
    if nan.any():
        r[nan] = 0x7FC0
    return r


def convert(src_dtype, arr, out_type):
    """returns (ggml type, little-endian bytes-like array)"""
    if out_type == GGML_BF16:
        if src_dtype == "BF16":
            return GGML_BF16, np.ascontiguousarray(arr)
        return GGML_BF16, f32_to_bf16(to_f32(src_dtype, arr))
    return GGML_F32, np.ascontiguousarray(to_f32(src_dtype, arr))


def permute_llama(w, n_head, n_head_kv=None):
    """convert_hf_to_gguf.py LlamaModel.permute (rotate-half -> interleaved rope layout)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = w.shape
    return w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default=None,
                    help="type of the 2-D weights (default: the checkpoint's; F16 -> f32)")
    args = ap.parse_args()

    with open(os.path.join(args.model_dir, "config.json")) as f:
        cfg = json.load(f)
    arch = cfg.get("model_type")
    if arch not in ("llama", "qwen2", "qwen3"):
        sys.exit("to_gguf: model_type %r not supported (llama, qwen2, qwen3)" % arch)
    st_path = os.path.join(args.model_dir, "model.safetensors")
    if not os.path.exists(st_path):
        sys.exit("to_gguf: %s missing (sharded checkpoints are not supported)" % st_path)
    src = read_safetensors(st_path)

    src_dtypes = {d for d, _ in src.values()}
    dtype = args.dtype or ("bf16" if src_dtypes == {"BF16"} else "f32")
    wtype = GGML_BF16 if dtype == "bf16" else GGML_F32

    C = cfg["hidden_size"]
    L = cfg["num_hidden_layers"]
    NH = cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    V = cfg["vocab_size"]
    head_dim = cfg.get("head_dim") or C // NH
    tied = cfg.get("tie_word_embeddings", False)
    if cfg.get("rope_scaling"):
        print("to_gguf: warning: rope_scaling %r ignored" % (cfg["rope_scaling"],), file=sys.stderr)

    # ---------------------------------------------------------------- metadata
    kvs = [
        ("general.architecture", T_STRING, arch),
        ("general.name", T_STRING, "srlm-" + os.path.basename(os.path.normpath(args.model_dir))),
        ("general.file_type", T_UINT32, FTYPE[dtype]),
        ("general.alignment", T_UINT32, ALIGN),
        (arch + ".vocab_size", T_UINT32, V),
        (arch + ".context_length", T_UINT32, cfg.get("max_position_embeddings", 4096)),
        (arch + ".embedding_length", T_UINT32, C),
        (arch + ".block_count", T_UINT32, L),
        (arch + ".feed_forward_length", T_UINT32, cfg["intermediate_size"]),
        (arch + ".attention.head_count", T_UINT32, NH),
        (arch + ".attention.head_count_kv", T_UINT32, NKV),
        (arch + ".attention.layer_norm_rms_epsilon", T_FLOAT32, float(cfg.get("rms_norm_eps", 1e-6))),
        (arch + ".rope.freq_base", T_FLOAT32, float(cfg.get("rope_theta", 10000.0))),
    ]
    if head_dim != C // NH:
        kvs += [(arch + ".attention.key_length", T_UINT32, head_dim),
                (arch + ".attention.value_length", T_UINT32, head_dim)]
    if arch == "llama":
        kvs.append((arch + ".rope.dimension_count", T_UINT32, head_dim))

    byte_tokens = bytes_to_unicode() if V > 256 else []
    tokens = byte_tokens + ["t%d" % i for i in range(len(byte_tokens), V)]
    tokens[V - 1] = "<|endoftext|>"
    ttypes = [1] * V  # NORMAL
    ttypes[V - 1] = 3  # CONTROL
    kvs += [
        ("tokenizer.ggml.model", T_STRING, "gpt2"),
        ("tokenizer.ggml.pre", T_STRING, "default"),
        ("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens)),
        ("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, ttypes)),
        ("tokenizer.ggml.merges", T_ARRAY, (T_STRING, [])),
        ("tokenizer.ggml.bos_token_id", T_UINT32, V - 1),
        ("tokenizer.ggml.eos_token_id", T_UINT32, V - 1),
        ("tokenizer.ggml.add_bos_token", T_BOOL, False),
    ]

    # ---------------------------------------------------------------- tensors
    names = {  # HF suffix -> llama.cpp name (per layer)
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.o_proj.bias": "attn_output.bias",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    plan = []  # (gguf name, hf name, transform)
    plan.append(("token_embd.weight", "model.embed_tokens.weight", None))
    for i in range(L):
        pre = "model.layers.%d." % i
        for suf, gname in names.items():
            if pre + suf not in src:
                continue
            tf = None
            if arch == "llama" and suf.startswith("self_attn.q_proj."):
                tf = lambda w: permute_llama(w, NH, NH)
            elif arch == "llama" and suf.startswith("self_attn.k_proj."):
                tf = lambda w: permute_llama(w, NH, NKV)
            plan.append(("blk.%d.%s" % (i, gname), pre + suf, tf))
    plan.append(("output_norm.weight", "model.norm.weight", None))
    if not tied and "lm_head.weight" in src:
        plan.append(("output.weight", "lm_head.weight", None))
    used = {h for _, h, _ in plan}
    missing = [h for _, h, _ in plan if h not in src]
    if missing:
        sys.exit("to_gguf: missing tensors: %s" % ", ".join(missing))
    unused = sorted(set(src) - used - ({"lm_head.weight"} if tied else set()))
    if unused:
        sys.exit("to_gguf: unmapped tensors: %s" % ", ".join(unused))
    if src["model.embed_tokens.weight"][1].shape[0] != V:
        sys.exit("to_gguf: embed_tokens rows != vocab_size")

    infos = []  # (name, shape, ggml type, nbytes)
    for gname, hname, _ in plan:
        sdt, arr = src[hname]
        gt = wtype if arr.ndim >= 2 else GGML_F32
        nbytes = int(np.prod(arr.shape)) * (4 if gt == GGML_F32 else 2)
        infos.append((gname, arr.shape, gt, nbytes))

    header = bytearray()
    header += GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(infos), len(kvs))
    for k, t, v in kvs:
        header += kv_bytes(k, t, v)
    off = 0
    for gname, shape, gt, nbytes in infos:
        header += gguf_str(gname) + struct.pack("<I", len(shape))
        header += struct.pack("<%dQ" % len(shape), *reversed(shape))  # ggml order: ne[0] fastest
        header += struct.pack("<IQ", gt, off)
        off += (nbytes + ALIGN - 1) // ALIGN * ALIGN
    header += b"\0" * (-len(header) % ALIGN)

    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        pos = 0
        for (gname, hname, tf), (_, shape, gt, nbytes) in zip(plan, infos):
            sdt, arr = src[hname]
            gt2, data = convert(sdt, arr, gt)
            assert gt2 == gt
            if tf is not None:
                data = np.ascontiguousarray(tf(data))
            b = data.tobytes()
            assert len(b) == nbytes, (gname, len(b), nbytes)
            f.write(b)
            pad = -nbytes % ALIGN
            f.write(b"\0" * pad)
            pos += nbytes + pad
        assert pos == off
    os.replace(tmp, args.out)
    print("to_gguf: wrote %s: %s L=%d C=%d NH=%d NKV=%d V=%d tied=%s weights=%s tensors=%d size=%.1f MB"
          % (args.out, arch, L, C, NH, NKV, V, tied, dtype, len(infos),
             os.path.getsize(args.out) / 1e6), file=sys.stderr)


if __name__ == "__main__":
    main()
