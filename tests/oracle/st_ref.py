#!/usr/bin/python3
"""st_ref.py — PyTorch oracle for srlm's safetensors and checkpoint I/O (tests/cli/model-io.sh).

Run with /usr/bin/python3 and OPENBLAS_CORETYPE=SkylakeX. Debian has no safetensors/transformers
packages, so the format is written and read here with struct + json, as the spec describes
(u64 LE header length, JSON header, raw little-endian data), and tensor values come from torch.
Shapes follow transformers' module definitions (LlamaAttention, Qwen2Attention, Qwen3Attention,
*MLP, *RMSNorm), written here independently of the C size table.

Modes:
  gen DIR --arch A --dtype D [--shards N] [--untied] [--lm-head-copy] [--seed S] [--inv-freq]
        a tiny random HF checkpoint (config.json + model.safetensors or shards + index)
  check SRC OUT DTYPE [SRC OUT DTYPE ...]
                          OUT (written by C) holds SRC's tensors: names, shapes, dtype, and values
                          equal to torch's SRC.float() (DTYPE f32) or .float().to(bfloat16) (bf16),
                          bit for bit; the file layout is the reference library's. One line per
                          triple, "ok OUT" or "FAIL OUT: reason"; exit 1 if any failed.
  check-init DIR          a random init: normal(0, initializer_range) weights, zero biases, unit norms
  conv-gen FILE           edge values: all 65536 f16 and bf16 bit patterns, f32 ties, subnormals,
                          inf, nan, overflow, and random bit patterns
  conv-check SRC OUT DTYPE   every tensor of OUT == torch's SRC.float().to(DTYPE), bit for bit
                          (NaN only has to stay NaN: torch's own scalar and vector paths differ)
  corrupt SRC PREFIX KIND...   broken copies PREFIX-KIND of checkpoint SRC (see corrupt())
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

DT = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
NAMES = {"f32": "F32", "bf16": "BF16", "f16": "F16"}
SIZE = {"F32": 4, "BF16": 2, "F16": 2}


class Mismatch(Exception):
    pass


def fail(msg):
    raise Mismatch(msg)


# ------------------------------------------------------------------------------------------
# the format

def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_st(path, tensors, metadata=None, header_hook=None, pad=True):
    """tensors: list of (name, torch tensor) in data order."""
    header, data, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors:
        b = tensor_bytes(t)
        dt = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}[t.dtype]
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        data.append(b)
        off += len(b)
    if header_hook:
        header = header_hook(header)
    h = json.dumps(header, separators=(",", ":")).encode() if isinstance(header, dict) else header
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(data))


def read_st(path, strict=False):
    """Returns (header dict, {name: tensor}) after the reference library's checks."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        fail(f"{path}: header length {n} beyond the file")
    hb = raw[8:8 + n]
    if strict:
        if (8 + n) % 8:
            fail(f"{path}: data region not 8-byte aligned (header length {n})")
        if hb.rstrip(b" ") != hb.rstrip():
            fail(f"{path}: header padded with something else than spaces")
        if b" " in hb.rstrip(b" "):
            fail(f"{path}: header is not compact JSON")
    header = json.loads(hb)
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    out, spans = {}, []
    for name, info in header.items():
        b, e = info["data_offsets"]
        spans.append((b, e, name))
        dt = info["dtype"]
        numel = int(np.prod(info["shape"])) if info["shape"] else 1
        if e - b != numel * SIZE[dt]:
            fail(f"{path}: {name}: size mismatch")
        buf = data[b:e]
        if dt == "BF16":
            t = torch.from_numpy(np.frombuffer(buf, dtype=np.int16).copy()).view(torch.bfloat16)
        elif dt == "F16":
            t = torch.from_numpy(np.frombuffer(buf, dtype=np.float16).copy())
        else:
            t = torch.from_numpy(np.frombuffer(buf, dtype=np.float32).copy())
        out[name] = t.reshape(info["shape"])
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            fail(f"{path}: {name}: offsets not contiguous")
        pos = e
    if pos != len(data):
        fail(f"{path}: data region not covered exactly")
    if strict:
        names = [s[2] for s in spans]
        if names != sorted(names):
            fail(f"{path}: tensors not in name order as the reference library writes them")
        if list(header.keys()) != names:
            fail(f"{path}: header order differs from data order")
        if not meta or meta.get("format") != "pt":
            fail(f"{path}: __metadata__.format is not \"pt\" (transformers refuses such files)")
    return header, meta, out


def read_dir(d):
    """All tensors of a HF model directory (single file or sharded)."""
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        return read_st(single)[2]
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    out = {}
    for shard in sorted(set(idx["weight_map"].values())):
        out.update(read_st(os.path.join(d, shard))[2])
    return out


# ------------------------------------------------------------------------------------------
# checkpoints

def hf_shapes(cfg):
    """Parameter shapes from the transformers module definitions (independent of the C table)."""
    mt, C, L = cfg["model_type"], cfg["hidden_size"], cfg["num_hidden_layers"]
    NH = cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads") or NH
    hs = cfg.get("head_dim") or C // NH
    FF, V = cfg["intermediate_size"], cfg["vocab_size"]
    qkv_bias = mt == "qwen2" or cfg.get("attention_bias", False)
    o_bias = mt != "qwen2" and cfg.get("attention_bias", False)
    s = {"model.embed_tokens.weight": (V, C)}
    for l in range(L):
        p = f"model.layers.{l}."
        s[p + "self_attn.q_proj.weight"] = (NH * hs, C)
        s[p + "self_attn.k_proj.weight"] = (NKV * hs, C)
        s[p + "self_attn.v_proj.weight"] = (NKV * hs, C)
        s[p + "self_attn.o_proj.weight"] = (C, NH * hs)
        if qkv_bias:
            s[p + "self_attn.q_proj.bias"] = (NH * hs,)
            s[p + "self_attn.k_proj.bias"] = (NKV * hs,)
            s[p + "self_attn.v_proj.bias"] = (NKV * hs,)
        if o_bias:
            s[p + "self_attn.o_proj.bias"] = (C,)
        if mt == "qwen3":
            s[p + "self_attn.q_norm.weight"] = (hs,)
            s[p + "self_attn.k_norm.weight"] = (hs,)
        s[p + "mlp.gate_proj.weight"] = (FF, C)
        s[p + "mlp.up_proj.weight"] = (FF, C)
        s[p + "mlp.down_proj.weight"] = (C, FF)
        s[p + "input_layernorm.weight"] = (C,)
        s[p + "post_attention_layernorm.weight"] = (C,)
    s["model.norm.weight"] = (C,)
    if not cfg.get("tie_word_embeddings", False):
        s["lm_head.weight"] = (V, C)
    return s


def tiny_config(arch, tied):
    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                           "qwen3": "Qwen3ForCausalLM"}[arch]],
        "model_type": arch, "vocab_size": 96, "hidden_size": 32, "intermediate_size": 72,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "hidden_act": "silu", "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "tie_word_embeddings": tied, "torch_dtype": "bfloat16",
        "initializer_range": 0.02, "bos_token_id": 1, "eos_token_id": [2, 3], "rope_scaling": None,
    }
    if arch == "qwen3":
        cfg["head_dim"] = 12          # differs from hidden/heads = 8, as Qwen3 allows
        cfg["attention_bias"] = False
    if arch == "llama":
        cfg["attention_bias"] = False
        cfg["mlp_bias"] = False
    if arch != "llama":
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = 4096
    return cfg


def gen(args):
    d = args[0]
    opt = {"--arch": "qwen2", "--dtype": "bf16", "--shards": "1", "--seed": "0"}
    flags = set()
    i = 1
    while i < len(args):
        if args[i] in ("--untied", "--lm-head-copy", "--inv-freq", "--tied"):
            flags.add(args[i])
            i += 1
        else:
            opt[args[i]] = args[i + 1]
            i += 2
    arch, dtype = opt["--arch"], DT[NAMES[opt["--dtype"]]]
    tied = "--untied" not in flags
    cfg = tiny_config(arch, tied)
    cfg["torch_dtype"] = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[opt["--dtype"]]
    g = torch.Generator().manual_seed(int(opt["--seed"]))
    tensors = []
    for name, shape in hf_shapes(cfg).items():
        # Values spread over many binades so every conversion path is exercised.
        t = torch.randn(shape, generator=g) * torch.exp(torch.randn(shape, generator=g) * 2)
        if name.endswith("norm.weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        tensors.append((name, t.to(dtype)))
    if "--lm-head-copy" in flags:          # some tied HF checkpoints carry lm_head anyway
        tensors.append(("lm_head.weight", tensors[0][1].clone()))
    if "--inv-freq" in flags:              # old Llama checkpoints carry RoPE's buffer
        hs = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        tensors.append(("model.layers.0.self_attn.rotary_emb.inv_freq", torch.rand(hs // 2)))
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    n = int(opt["--shards"])
    if n == 1:
        write_st(os.path.join(d, "model.safetensors"), tensors, {"format": "pt"})
        return
    wm, total = {}, 0
    for k in range(n):
        fn = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        part = tensors[k::n]
        write_st(os.path.join(d, fn), part, {"format": "pt"})
        for name, t in part:
            wm[name] = fn
            total += t.numel() * t.element_size()
    json.dump({"metadata": {"total_size": total}, "weight_map": wm},
              open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)


def same_bits(a, b):
    """Bitwise equality of two tensors of one dtype; NaN only has to meet NaN."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    w = torch.int32 if a.dtype == torch.float32 else torch.int16
    na, nb = torch.isnan(a.float()), torch.isnan(b.float())
    if not torch.equal(na, nb):
        return False
    return torch.equal(a.view(w)[~na], b.view(w)[~nb])


def check(args):
    bad = 0
    for i in range(0, len(args), 3):
        try:
            check_one(args[i:i + 3])
            print(f"ok {args[i + 1]}")
        except (Mismatch, OSError, KeyError, ValueError) as e:
            print(f"FAIL {args[i + 1]}: {e}")
            bad += 1
    sys.exit(1 if bad else 0)


def check_one(args):
    src, out, dtype = args[0], args[1], NAMES[args[2]]
    cfg_src = json.load(open(os.path.join(src, "config.json")))
    cfg_out = json.load(open(os.path.join(out, "config.json")))
    want_td = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[dtype]
    if cfg_out.get("torch_dtype") != want_td:
        fail(f"config.json torch_dtype {cfg_out.get('torch_dtype')}, want {want_td}")
    for k, v in cfg_src.items():
        if k != "torch_dtype" and cfg_out.get(k) != v:
            fail(f"config.json key {k}: {cfg_out.get(k)!r}, want {v!r}")
    if set(cfg_out) != set(cfg_src):
        fail(f"config.json keys differ: {sorted(set(cfg_out) ^ set(cfg_src))}")
    header, meta, got = read_st(os.path.join(out, "model.safetensors"), strict=True)
    want = read_dir(src)
    expected = hf_shapes(cfg_src)
    if set(got) != set(expected):
        fail(f"tensor names differ: {sorted(set(got) ^ set(expected))}")
    for name, t in got.items():
        if header[name]["dtype"] != dtype:
            fail(f"{name}: dtype {header[name]['dtype']}, want {dtype}")
        ref = want[name].float().to(DT[dtype])
        if not same_bits(t, ref):
            bad = (t.float() != ref.float()).nonzero()[:3].tolist()
            fail(f"{name}: values differ from torch at {bad}")


def check_init(args):
    d = args[0]
    cfg = json.load(open(os.path.join(d, "config.json")))
    std = cfg.get("initializer_range", 0.02)
    got = read_dir(d)
    big = []
    for name, t in got.items():
        t = t.float()
        if name.endswith("norm.weight"):
            if not torch.equal(t, torch.ones_like(t)):
                fail(f"{name}: norm weights must be ones")
        elif name.endswith(".bias"):
            if not torch.equal(t, torch.zeros_like(t)):
                fail(f"{name}: biases must be zeros")
        else:
            big.append(t.flatten())
    x = torch.cat(big).double()
    n = x.numel()
    # mean and std of n normal draws: standard errors std/sqrt(n) and std/sqrt(2n).
    if abs(x.mean().item()) > 5 * std / n ** 0.5:
        fail(f"weights mean {x.mean().item():.3g} not ~0")
    if abs(x.std().item() - std) > 5 * std / (2 * n) ** 0.5:
        fail(f"weights std {x.std().item():.6g}, want {std}")
    k = ((x / std) ** 4).mean().item()
    if abs(k - 3) > 0.1:
        fail(f"weights kurtosis {k:.3f}, a normal has 3")
    print(f"check-init: {n} weights, std {x.std().item():.6f}")


# ------------------------------------------------------------------------------------------
# conversions

def conv_gen(args):
    every = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    f32 = [
        0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 65536.0, -65520.0, 1e-8, 6e-8,
        2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.5, 2.0 ** -24 * 1.5, 2.0 ** -24 * 2.5, 2.0 ** -14,
        2.0 ** -14 * (1 - 2.0 ** -11), 2.0 ** -15, 3.4028234663852886e38, -3.4028234663852886e38,
        float("inf"), float("-inf"), float("nan"), 1e-45, -1e-45, 1.1754943508222875e-38,
    ]
    ties = []
    for hi in (0x3F80, 0x3F81, 0x0080, 0x0001, 0x7F7F, 0xBF80, 0xBF81, 0x4B00):
        for lo in (0x7FFF, 0x8000, 0x8001):                      # bf16 ties and neighbours
            ties.append((hi << 16) | lo)
    for base in (0x3F800000, 0x3F802000, 0x38800000, 0x387FC000, 0x33000000, 0x33800000, 0x477FE000):
        for lo in (0x0FFF, 0x1000, 0x1001, 0x3000):             # f16 ties and neighbours
            ties.append(base | lo)
    ties += [0x7F800001, 0xFF800001, 0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0x00000001, 0x007FFFFF]
    tie_t = torch.tensor(np.array(ties, dtype=np.uint32).view(np.int32)).view(torch.float32)
    g = np.random.default_rng(7)
    rnd = torch.from_numpy(g.integers(0, 2 ** 32, 200000, dtype=np.uint64).astype(np.uint32).view(np.int32)).view(torch.float32)
    write_st(args[0], [
        ("f16.every", every.view(torch.float16)),
        ("bf16.every", every.view(torch.bfloat16)),
        ("f32.edge", torch.tensor(f32, dtype=torch.float32)),
        ("f32.ties", tie_t),
        ("f32.random", rnd),
        ("f32.matrix", torch.randn(3, 5, 7)),
        ("f32.empty", torch.zeros(0, 4)),
        ("f32.scalar", torch.tensor(2.5)),
    ], {"format": "pt"})


def conv_check(args):
    _, _, src = read_st(args[0])
    dtype = NAMES[args[2]]
    header, _, out = read_st(args[1], strict=True)
    if set(src) != set(out):
        fail("tensor names differ")
    for name, t in src.items():
        ref = t.float().to(DT[dtype])
        if header[name]["dtype"] != dtype or list(out[name].shape) != list(t.shape):
            fail(f"{name}: dtype/shape {header[name]['dtype']} {list(out[name].shape)}")
        if not same_bits(out[name], ref):
            w = torch.int32 if dtype == "F32" else torch.int16
            idx = ((out[name].view(w) != ref.view(w)) & ~torch.isnan(ref.float())).nonzero()[:5].flatten().tolist()
            src_bits = [hex(int(x)) for x in t.flatten().view(torch.int32 if t.dtype == torch.float32 else torch.int16)[idx]]
            fail(f"{name} -> {dtype}: differs from torch at {idx} (source bits {src_bits}): "
                 f"got {out[name].flatten()[idx].tolist()} want {ref.flatten()[idx].tolist()}")
    print(f"conv-check: {sum(t.numel() for t in src.values())} values to {dtype} as torch")


# ------------------------------------------------------------------------------------------
# corruptions of a valid checkpoint

def rewrite(src_file, dst_file, header_fn=None, tensors_fn=None, pad=True):
    _, meta, ts = read_st(src_file)
    items = list(ts.items())
    if tensors_fn:
        items = tensors_fn(items)
    write_st(dst_file, items, meta, header_hook=header_fn, pad=pad)


def corrupt(args):
    for kind in args[2:]:
        corrupt_one(args[0], f"{args[1]}-{kind}", kind)


def corrupt_one(src, out, kind):
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    st = os.path.join(out, "model.safetensors")
    raw = bytearray(open(st, "rb").read()) if os.path.exists(st) else None
    cfgp = os.path.join(out, "config.json")
    cfg = json.load(open(cfgp))
    K = "model.layers.0.self_attn.k_proj.weight"
    V = "model.layers.0.self_attn.v_proj.weight"

    def hdr(fn):
        rewrite(st, st, header_fn=fn)

    def set_cfg(**kw):
        cfg.update(kw)
        json.dump(cfg, open(cfgp, "w"))

    if kind == "truncated":
        open(st, "wb").write(raw[:-10])
    elif kind == "short":
        open(st, "wb").write(raw[:5])
    elif kind == "empty":
        open(st, "wb").write(b"")
    elif kind == "hdrlen":
        raw[0:8] = struct.pack("<Q", len(raw) + 100)
        open(st, "wb").write(raw)
    elif kind == "hdrcap":
        raw[0:8] = struct.pack("<Q", 2 ** 62)
        open(st, "wb").write(raw)
    elif kind == "badjson":
        raw[9:13] = b"{{{{"
        open(st, "wb").write(raw)
    elif kind == "notobject":
        hdr(lambda h: b"[1,2]")
    elif kind == "dupkey":
        def dup(h):
            s = json.dumps(h, separators=(",", ":"))
            first = next(k for k in h if k != "__metadata__")
            return (s[:-1] + "," + json.dumps(first) + ":" + json.dumps(h[first]) + "}").encode()
        hdr(dup)
    elif kind == "offsets":
        def f(h):
            b, e = h[K]["data_offsets"]
            h[K]["data_offsets"] = [b + 10 ** 9, e + 10 ** 9]
            return h
        hdr(f)
    elif kind == "overlap":
        def f(h):
            h[V]["data_offsets"] = list(h[K]["data_offsets"])
            return h
        hdr(f)
    elif kind == "gap":
        def f(h):
            del h[K]
            return h
        hdr(f)
    elif kind == "sizemismatch":
        def f(h):
            b, e = h[K]["data_offsets"]
            h[K]["data_offsets"] = [b, e - 2]
            return h
        hdr(f)
    elif kind in ("dtype-i8", "dtype-unknown", "dtype-f64"):
        def f(h):
            h[K]["dtype"] = {"dtype-i8": "I8", "dtype-unknown": "Q4_K", "dtype-f64": "F64"}[kind]
            return h
        hdr(f)
    elif kind == "missing":
        rewrite(st, st, tensors_fn=lambda it: [x for x in it if x[0] != K])
    elif kind == "extra":
        rewrite(st, st, tensors_fn=lambda it: it + [("model.layers.0.mlp.extra.weight", torch.zeros(4))])
    elif kind == "shape":
        def f(h):
            h[K]["shape"] = list(reversed(h[K]["shape"]))
            return h
        hdr(f)
    elif kind == "nan":
        def f(it):
            return [(n, t.clone().index_fill_(0, torch.tensor([1]), float("nan")) if n == K else t) for n, t in it]
        rewrite(st, st, tensors_fn=f)
    elif kind == "shard-map":
        idxp = os.path.join(out, "model.safetensors.index.json")
        idx = json.load(open(idxp))
        shards = sorted(set(idx["weight_map"].values()))
        name = next(n for n, s in idx["weight_map"].items() if s == shards[0])
        idx["weight_map"][name] = shards[1]
        json.dump(idx, open(idxp, "w"))
    elif kind == "shard-missing":
        idxp = os.path.join(out, "model.safetensors.index.json")
        os.remove(os.path.join(out, sorted(set(json.load(open(idxp))["weight_map"].values()))[0]))
    elif kind == "rope":
        set_cfg(rope_scaling={"type": "yarn", "factor": 2.0})
    elif kind == "rope-llama3":
        set_cfg(rope_scaling={"rope_type": "llama3", "factor": 32.0})
    elif kind == "model-type":
        set_cfg(model_type="mistral")
    elif kind == "sliding":
        set_cfg(use_sliding_window=True)
    elif kind == "mlp-bias":
        set_cfg(mlp_bias=True)
    elif kind == "act":
        set_cfg(hidden_act="gelu")
    elif kind == "heads":
        set_cfg(num_key_value_heads=3)
    elif kind == "vocab":
        set_cfg(vocab_size=cfg["vocab_size"] + 64)
    elif kind == "config-json":
        open(cfgp, "w").write("{\"model_type\": \"qwen2\",")
    else:
        fail(f"unknown corruption {kind}")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mode, args = sys.argv[1], sys.argv[2:]
    try:
        {"gen": gen, "check": check, "check-init": check_init, "conv-gen": conv_gen,
         "conv-check": conv_check, "corrupt": corrupt}[mode](args)
    except Mismatch as e:
        print("st_ref.py: " + str(e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
