#!/usr/bin/python3
"""test_ref_model.py: self-checks of the PyTorch reference (ref_model.py) before the C code is
judged against it. Each check could fail: float64 gradcheck of the whole model for each
architecture, packed batch == separate sequences, the model against a naive loop implementation
written independently, tied vs untied heads, safetensors round trips (bf16/f16/sharded), the CLI
(exit codes, compare), AdamW against the update formula written out, greedy generation, RoPE scaling.

Run: OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tests/oracle/test_ref_model.py
Last line: "test_ref_model: N passed, N failed"; exit status 1 on any failure.
"""
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stdout, redirect_stderr

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ref_model as rm  # noqa: E402
import st_io  # noqa: E402

torch.set_num_threads(1)
PASSED, FAILED = 0, 0


def check(cond, what):
    global PASSED, FAILED
    if cond:
        PASSED += 1
    else:
        FAILED += 1
        print(f"FAIL: {what}", file=sys.stderr)


def close(a, b, tol, what):
    d = (a.double() - b.double()).abs().max().item()
    r = d / max(b.double().abs().max().item(), 1e-30)
    check(d <= tol * max(1.0, b.double().abs().max().item()), f"{what}: max diff {d:.3e} (rel {r:.3e})")


# tiny configs: every feature on somewhere (GQA, biases, q/k norm, head_dim != C/NH, tied, scaling)
CFGS = {
    "llama": dict(model_type="llama", vocab_size=11, hidden_size=8, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, intermediate_size=12,
                  rms_norm_eps=1e-5, rope_theta=500.0, attention_bias=True, mlp_bias=True,
                  tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", vocab_size=13, hidden_size=8, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, intermediate_size=10,
                  rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True),
    "qwen3": dict(model_type="qwen3", vocab_size=9, hidden_size=8, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=6, intermediate_size=10,
                  rms_norm_eps=1e-6, rope_theta=1000.0, tie_word_embeddings=False),
    "llama3rope": dict(model_type="llama", vocab_size=11, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, intermediate_size=12,
                       rope_theta=10000.0, tie_word_embeddings=True,
                       rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                         high_freq_factor=4.0, original_max_position_embeddings=200)),
}


def model(name, dtype=torch.float64, seed=0, std=0.3):
    cfg = rm.Config(CFGS[name])
    P = rm.init_params(cfg, seed, randomize_all=True, std=std)
    return cfg, {n: t.to(dtype).requires_grad_(True) for n, t in P.items()}


def rand_batch(cfg, lens, seed):
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(0, cfg.V, (n,), generator=g).tolist() for n in lens]
    masks = [[0] + torch.randint(0, 2, (n - 1,), generator=g).tolist() for n in lens]
    masks[0][-1] = 1  # at least one target
    return seqs, masks


# ---------------------------------------------------------------------------------------------
# naive reference, written independently of ref_model's vectorised code (float64, loops)


def naive_forward(cfg, P, seq):
    W = {n: t.detach().double() for n, t in P.items()}
    T, C, NH, NKV, hd = len(seq), cfg.C, cfg.NH, cfg.NKV, cfg.hd
    half = hd // 2

    def lin(x, name, bias):
        w = W[name + ".weight"]
        y = torch.stack([(w * x[t][None, :]).sum(1) for t in range(x.shape[0])])
        return y + W[name + ".bias"] if bias else y

    def norm(v, w):  # one vector
        return w * (v / math.sqrt((v * v).sum().item() / v.numel() + cfg.eps))

    def freq(i):
        f = cfg.theta ** (-(2.0 * i) / hd)
        rs = cfg.rope_scaling
        if rs:  # llama3 rule, one frequency at a time
            old, lo, hi, fac = (rs["original_max_position_embeddings"], rs["low_freq_factor"],
                                rs["high_freq_factor"], rs["factor"])
            wl = 2 * math.pi / f
            if wl > old / lo:
                f = f / fac
            elif wl >= old / hi:
                s = (old / wl - lo) / (hi - lo)
                f = (1 - s) * f / fac + s * f
        return f

    def rope(v, pos):  # v: (hd,) -> rotate pairs (i, i + half)
        out = v.clone()
        for i in range(half):
            a = pos * freq(i)
            c, s = math.cos(a), math.sin(a)
            out[i] = v[i] * c - v[i + half] * s
            out[i + half] = v[i + half] * c + v[i] * s
        return out

    x = torch.stack([W["model.embed_tokens.weight"][t] for t in seq])
    for l in range(cfg.L):
        p = f"model.layers.{l}."
        h = torch.stack([norm(x[t], W[p + "input_layernorm.weight"]) for t in range(T)])
        q = lin(h, p + "self_attn.q_proj", cfg.qkv_bias)
        k = lin(h, p + "self_attn.k_proj", cfg.qkv_bias)
        v = lin(h, p + "self_attn.v_proj", cfg.qkv_bias)
        y = torch.zeros(T, NH * hd, dtype=torch.float64)
        for hh in range(NH):
            kv = hh // (NH // NKV)
            for t in range(T):
                qv = q[t, hh * hd:(hh + 1) * hd]
                if cfg.qk_norm:
                    qv = norm(qv, W[p + "self_attn.q_norm.weight"])
                qv = rope(qv, t)
                scores = []
                for u in range(t + 1):
                    kvec = k[u, kv * hd:(kv + 1) * hd]
                    if cfg.qk_norm:
                        kvec = norm(kvec, W[p + "self_attn.k_norm.weight"])
                    kvec = rope(kvec, u)
                    scores.append(sum(qv[i].item() * kvec[i].item() for i in range(hd)) / math.sqrt(hd))
                m = max(scores)
                e = [math.exp(s - m) for s in scores]
                z = sum(e)
                for u in range(t + 1):
                    y[t, hh * hd:(hh + 1) * hd] += (e[u] / z) * v[u, kv * hd:(kv + 1) * hd]
        x = x + lin(y, p + "self_attn.o_proj", cfg.o_bias)
        h = torch.stack([norm(x[t], W[p + "post_attention_layernorm.weight"]) for t in range(T)])
        g = lin(h, p + "mlp.gate_proj", cfg.mlp_bias)
        u = lin(h, p + "mlp.up_proj", cfg.mlp_bias)
        act = g / (1 + torch.exp(-g)) * u
        x = x + lin(act, p + "mlp.down_proj", cfg.mlp_bias)
    x = torch.stack([norm(x[t], W["model.norm.weight"]) for t in range(T)])
    head = W["model.embed_tokens.weight"] if cfg.tie else W["lm_head.weight"]
    return torch.stack([(head * x[t][None, :]).sum(1) for t in range(T)])


# ---------------------------------------------------------------------------------------------
# tests


MINI = {  # small enough for an element-by-element (slow mode) gradcheck
    "llama": dict(CFGS["llama"], vocab_size=5, hidden_size=4, intermediate_size=4),
    "qwen2": dict(CFGS["qwen2"], vocab_size=5, hidden_size=4, num_attention_heads=2,
                  num_key_value_heads=1, intermediate_size=4, num_hidden_layers=1),
    "qwen3": dict(CFGS["qwen3"], vocab_size=5, hidden_size=4, head_dim=4, intermediate_size=4,
                  num_hidden_layers=1),
}


def gradcheck_model(cfg, P, seqs, masks, fast):
    names = list(P)

    def f(*ts):
        return rm.compute_forward(cfg, dict(zip(names, ts)), seqs, masks)[2]

    return torch.autograd.gradcheck(f, tuple(P[n] for n in names), eps=1e-6, atol=1e-7, rtol=1e-5,
                                    raise_exception=False, fast_mode=fast)


def test_gradcheck():
    for name in ("llama", "qwen2", "qwen3"):
        # full Jacobian, every parameter element, on a mini model
        cfg = rm.Config(MINI[name])
        P = {n: t.double().requires_grad_(True)
             for n, t in rm.init_params(cfg, 0, randomize_all=True, std=0.5).items()}
        seqs, masks = rand_batch(cfg, [3, 2], seed=1)
        check(gradcheck_model(cfg, P, seqs, masks, fast=False), f"gradcheck {name} mini (slow mode)")
        # random-projection gradcheck (all parameters at once) on the tiny model
        cfg, P = model(name)
        seqs, masks = rand_batch(cfg, [4, 3], seed=1)
        check(gradcheck_model(cfg, P, seqs, masks, fast=True), f"gradcheck {name} (fast mode)")
        # and each parameter tensor on its own, along two random directions: a gradient bug in
        # one tensor cannot hide behind the others
        _, _, loss = rm.compute_forward(cfg, P, seqs, masks)
        grads = dict(zip(P, torch.autograd.grad(loss, list(P.values()))))
        g = torch.Generator().manual_seed(9)
        bad = []
        for n in P:
            for _ in range(2):
                D = torch.randn(P[n].shape, generator=g, dtype=torch.float64)
                h = 1e-5
                with torch.no_grad():
                    lp = rm.compute_forward(cfg, dict(P, **{n: P[n] + h * D}), seqs, masks)[2].item()
                    lm = rm.compute_forward(cfg, dict(P, **{n: P[n] - h * D}), seqs, masks)[2].item()
                fd, an = (lp - lm) / (2 * h), (grads[n] * D).sum().item()
                if abs(fd - an) > 1e-8 + 1e-6 * abs(an):
                    bad.append((n, fd, an))
        check(not bad, f"{name}: per-tensor directional derivatives {bad[:3]}")


def test_gradcheck_direction():
    # a second, independent check: central difference of the loss along a random direction vs
    # <grad, direction>, for the larger llama3-rope config
    cfg, P = model("llama3rope")
    seqs, masks = rand_batch(cfg, [5, 2, 3], seed=2)
    _, _, loss = rm.compute_forward(cfg, P, seqs, masks)
    loss.backward()
    g = torch.Generator().manual_seed(3)
    D = {n: torch.randn(t.shape, generator=g, dtype=torch.float64) for n, t in P.items()}
    dot = sum((P[n].grad * D[n]).sum() for n in P).item()
    h = 1e-5
    with torch.no_grad():
        lp = rm.compute_forward(cfg, {n: P[n] + h * D[n] for n in P}, seqs, masks)[2].item()
        lm = rm.compute_forward(cfg, {n: P[n] - h * D[n] for n in P}, seqs, masks)[2].item()
    fd = (lp - lm) / (2 * h)
    check(abs(fd - dot) <= 1e-7 * max(1, abs(dot)), f"directional derivative {fd} vs {dot}")


def test_packed_vs_separate():
    for name in ("llama", "qwen2", "qwen3"):
        cfg, P = model(name)
        seqs, masks = rand_batch(cfg, [5, 1, 3, 4], seed=4)
        a = rm.forward_packed(cfg, P, seqs)
        b = rm.forward_separate(cfg, P, seqs)
        close(a, b, 1e-12, f"{name}: packed logits == separate logits")
        # gradients: packed loss vs the same loss assembled from separate forwards
        _, _, l1 = rm.compute_forward(cfg, P, seqs, masks)
        g1 = torch.autograd.grad(l1, list(P.values()))
        lp = rm.token_logprobs(seqs, rm.forward_separate(cfg, P, seqs))
        l2 = rm.batch_loss(seqs, masks, lp)
        g2 = torch.autograd.grad(l2, list(P.values()))
        close(l1, l2, 1e-12, f"{name}: packed loss == separate loss")
        check(all((x - y).abs().max() < 1e-12 for x, y in zip(g1, g2)),
              f"{name}: packed gradients == separate gradients")
        # a packed sequence is unaffected by what precedes it in the row
        c = rm.forward_packed(cfg, P, [seqs[2]])
        close(a[6:9], c, 1e-12, f"{name}: sequence alone == sequence inside a pack")


def test_naive():
    for name in ("llama", "qwen2", "qwen3", "llama3rope"):
        cfg, P = model(name, seed=5)
        seq = rand_batch(cfg, [6], seed=6)[0][0]
        ref = naive_forward(cfg, P, seq)
        got = rm.forward_separate(cfg, P, [seq])
        close(got, ref, 1e-11, f"{name}: vectorised forward (f64) == naive loops")
        P32 = {n: t.detach().float() for n, t in P.items()}
        close(rm.forward_separate(cfg, P32, [seq]), ref, 2e-5, f"{name}: f32 forward ~= naive f64")


def test_logprobs_loss():
    cfg, P = model("qwen2")
    seqs, masks = [[1, 2, 3], [4, 5]], [[0, 1, 0], [0, 1]]
    logits, lp, loss = rm.compute_forward(cfg, P, seqs, masks)
    ls = torch.log_softmax(logits, -1)
    want = [0.0, ls[0, 2].item(), ls[1, 3].item(), 0.0, ls[3, 5].item()]
    close(lp, torch.tensor(want, dtype=torch.float64), 1e-14, "logprobs[t] = log p(tok t | <t)")
    close(loss, torch.tensor(-(want[1] + want[4]) / 2, dtype=torch.float64), 1e-14,
          "loss = mean NLL over mask")
    ce = torch.nn.functional.cross_entropy(logits[[0, 3]], torch.tensor([2, 5]))
    close(loss, ce, 1e-13, "loss == torch cross_entropy on shifted targets")
    _, _, l0 = rm.compute_forward(cfg, P, [[1, 2]], [[0, 0]])
    check(l0.item() == 0.0, "no targets -> loss 0")


def test_tied_vs_untied():
    cfg_t, Pt = model("qwen2")
    raw = dict(CFGS["qwen2"], tie_word_embeddings=False)
    cfg_u = rm.Config(raw)
    Pu = {n: t.detach().clone().requires_grad_(True) for n, t in Pt.items()}
    Pu["lm_head.weight"] = Pt["model.embed_tokens.weight"].detach().clone().requires_grad_(True)
    check("lm_head.weight" not in rm.param_shapes(cfg_t), "tied model has no lm_head tensor")
    seqs, masks = rand_batch(cfg_t, [4, 3], seed=7)
    _, _, lt = rm.compute_forward(cfg_t, Pt, seqs, masks)
    _, _, lu = rm.compute_forward(cfg_u, Pu, seqs, masks)
    close(lt, lu, 1e-13, "tied loss == untied loss with lm_head = embed")
    lt.backward()
    lu.backward()
    close(Pt["model.embed_tokens.weight"].grad,
          Pu["model.embed_tokens.weight"].grad + Pu["lm_head.weight"].grad, 1e-13,
          "tied embed grad == untied embed grad + lm_head grad")
    # and they differ once lm_head moves away from embed
    with torch.no_grad():
        Pu["lm_head.weight"] += 0.1
    check((rm.forward_packed(cfg_u, Pu, seqs) - rm.forward_packed(cfg_t, Pt, seqs)).abs().max() > 1e-3,
          "untied head actually used")


def test_rope():
    cfg = rm.Config(CFGS["llama3rope"])
    inv = rm.rope_inv_freq(cfg, torch.float64)
    base = rm.rope_inv_freq(rm.Config(dict(CFGS["llama3rope"], rope_scaling=None)), torch.float64)
    check((inv < base).any() and (inv == base).any(), "llama3 rope scales low freqs, keeps high ones")
    lin = rm.rope_inv_freq(rm.Config(dict(CFGS["llama3rope"],
                                          rope_scaling={"type": "linear", "factor": 4.0})),
                           torch.float64)
    close(lin, base / 4, 1e-15, "linear rope scaling = inv_freq / factor")
    check(((inv < base) & (inv > base / 8)).any(), "llama3 rope has a smoothed (medium) band")
    # float32 tables as HF builds them: inv_freq in float32, angle pos*inv_freq in float32
    c32 = rm.Config(dict(CFGS["qwen2"], hidden_size=64, num_attention_heads=1, num_key_value_heads=1))
    pos = torch.arange(0, 4096, 97)
    cos, sin = rm.rope_cos_sin(c32, pos[None], torch.float32)
    check(cos.dtype == torch.float32 and cos.shape == (1, 43, 64), "rope table shape/dtype")
    inv32 = 1.0 / (10000.0 ** (torch.arange(0, 64, 2, dtype=torch.int64).float() / 64))
    ang = pos.float()[:, None] * inv32[None]
    check(torch.equal(cos[0], torch.cat((ang, ang), -1).cos()) and
          torch.equal(sin[0], torch.cat((ang, ang), -1).sin()), "f32 rope tables bitwise as HF")
    cos64, _ = rm.rope_cos_sin(c32, pos[None], torch.float64)
    close(cos64[0], cos[0].double(), 1e-3, "f64 rope tables close to f32 ones")


def test_head_dim_default():
    d = dict(CFGS["qwen3"])
    del d["head_dim"]
    check(rm.Config(d).hd == 128, "qwen3 head_dim defaults to 128 (Qwen3Config)")
    check(rm.Config(CFGS["qwen2"]).hd == 2, "qwen2 head_dim = hidden/heads")
    check(rm.Config(CFGS["qwen2"]).qkv_bias and not rm.Config(CFGS["qwen2"]).o_bias,
          "qwen2: q/k/v bias, no o bias")
    s = rm.param_shapes(rm.Config(CFGS["qwen3"]))
    check(s["model.layers.0.self_attn.q_proj.weight"] == (12, 8) and
          s["model.layers.1.self_attn.k_norm.weight"] == (6,), "qwen3 shapes with explicit head_dim")


def test_param_names():
    # the tensor names of layer 0 per architecture, as the HF modules define them
    def layer0(raw):
        p = "model.layers.0."
        return sorted(n[len(p):] for n in rm.param_shapes(rm.Config(raw)) if n.startswith(p))

    base = ["input_layernorm.weight", "mlp.down_proj.weight", "mlp.gate_proj.weight",
            "mlp.up_proj.weight", "post_attention_layernorm.weight", "self_attn.k_proj.weight",
            "self_attn.o_proj.weight", "self_attn.q_proj.weight", "self_attn.v_proj.weight"]
    qkv_b = ["self_attn.k_proj.bias", "self_attn.q_proj.bias", "self_attn.v_proj.bias"]
    qk_n = ["self_attn.k_norm.weight", "self_attn.q_norm.weight"]
    mlp_b = ["mlp.down_proj.bias", "mlp.gate_proj.bias", "mlp.up_proj.bias"]
    plain_llama = dict(CFGS["llama"], attention_bias=False, mlp_bias=False)
    check(layer0(plain_llama) == sorted(base), "llama: no biases by default")
    check(layer0(CFGS["llama"]) == sorted(base + qkv_b + ["self_attn.o_proj.bias"] + mlp_b),
          "llama attention_bias: q/k/v/o biases; mlp_bias: gate/up/down biases")
    check(layer0(dict(CFGS["qwen2"], attention_bias=True, mlp_bias=True)) == sorted(base + qkv_b),
          "qwen2: q/k/v biases always, never o_proj or mlp biases")
    check(layer0(CFGS["qwen3"]) == sorted(base + qk_n), "qwen3: q_norm/k_norm, no biases")
    check(layer0(dict(CFGS["qwen3"], attention_bias=True)) ==
          sorted(base + qk_n + qkv_b + ["self_attn.o_proj.bias"]), "qwen3 attention_bias: q/k/v/o")
    names = list(rm.param_shapes(rm.Config(CFGS["qwen3"])))
    check(names[0] == "model.embed_tokens.weight" and names[-2:] == ["model.norm.weight",
                                                                     "lm_head.weight"],
          "untied model: embed first, norm and lm_head last")


def test_safetensors_format():
    with tempfile.TemporaryDirectory() as d:
        # hand-built file: BF16 [1.0, -2.0, 0.5], F16 [1.5], F32 [[3.25]] (header + offsets by hand)
        data = struct.pack("<3H", 0x3F80, 0xC000, 0x3F00) + struct.pack("<e", 1.5) + \
            struct.pack("<f", 3.25)
        hdr = {"b": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
               "h": {"dtype": "F16", "shape": [1], "data_offsets": [6, 8]},
               "f": {"dtype": "F32", "shape": [1, 1], "data_offsets": [8, 12]},
               "__metadata__": {"format": "pt"}}
        hb = json.dumps(hdr).encode()
        path = os.path.join(d, "x.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + data)
        t = st_io.load_file(path)
        check(t["b"].float().tolist() == [1.0, -2.0, 0.5] and t["h"].item() == 1.5 and
              t["f"].tolist() == [[3.25]], "reads a hand-built BF16/F16/F32 file")
        # round trip through our writer, and the writer's layout
        st_io.save_file(t, path)
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            h2 = json.loads(f.read(n))
        check(n % 8 == 0 and h2["b"]["dtype"] == "BF16" and h2["b"]["data_offsets"] == [0, 6],
              "writer: 8-aligned header, dtype kept, packed offsets")
        t2 = st_io.load_file(path)
        check(all(torch.equal(t[k].float(), t2[k].float()) for k in t), "safetensors round trip")
        # a lying header is refused
        with open(path, "wb") as f:
            bad = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
            f.write(struct.pack("<Q", len(bad)) + bad + b"\0" * 8)
        try:
            st_io.load_file(path)
            check(False, "truncated data section refused")
        except st_io.FormatError:
            check(True, "")


def run_cli(args):
    """ref_model.main in-process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            rm.main(args)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def test_cli_init_forward_compare():
    with tempfile.TemporaryDirectory() as d:
        cpath = os.path.join(d, "cfg.json")
        with open(cpath, "w") as f:
            json.dump(CFGS["qwen3"], f)
        P = rm.init_params(rm.Config(CFGS["qwen3"]), 42, randomize_all=True)
        for dt, tdt in (("f32", torch.float32), ("bf16", torch.bfloat16), ("f16", torch.float16)):
            for shards in (1, 3):
                md = os.path.join(d, f"m_{dt}_{shards}")
                rc, _, err = run_cli(["init", cpath, md, "--seed", "42", "--randomize-all",
                                      "--dtype", dt, "--shards", str(shards)])
                check(rc == 0, f"init {dt} shards={shards}: {err}")
                if shards > 1:
                    files = sorted(f for f in os.listdir(md) if f.startswith("model-"))
                    check(len(files) == 3 and os.path.exists(
                        os.path.join(md, "model.safetensors.index.json")), f"3 shards written: {files}")
                raw = st_io.load_model_dir(md)
                check(all(raw[n].dtype == tdt for n in raw), f"init stores {dt}")
                cfg, L = rm.load_model(md)
                check(all(torch.equal(L[n], P[n].to(tdt).float()) for n in P),
                      f"load {dt} shards={shards}: values = init values rounded to {dt}")
        md = os.path.join(d, "m_f32_1")
        bpath = os.path.join(d, "b.json")
        with open(bpath, "w") as f:
            json.dump({"seqs": [[1, 2, 3, 4], [5, 6]], "mask": [[0, 1, 1, 0], [0, 1]]}, f)
        o1, o2 = os.path.join(d, "o1.safetensors"), os.path.join(d, "o2.safetensors")
        rc, out, err = run_cli(["forward", md, bpath, o1])
        check(rc == 0, f"forward: {err}")
        t = st_io.load_file(o1)
        n_grad = sum(k.startswith("grad.") for k in t)
        check(t["logits"].shape == (6, 9) and t["logprobs"].shape == (6,) and t["loss"].shape == (1,)
              and t["logits"].dtype == torch.float32 and n_grad == len(P),
              f"forward outputs: logits/logprobs/loss + {n_grad} grads")
        check(t["logprobs"][0].item() == 0 and t["logprobs"][4].item() == 0, "logprobs 0 at t=0")
        rc, _, _ = run_cli(["forward", md, bpath, o2, "--dtype", "f64"])
        rc, out, _ = run_cli(["compare", o1, o2, "--rtol", "1e-4", "--atol", "1e-6"])
        check(rc == 0, f"f32 forward matches f64 forward:\n{out}")
        # a perturbed gradient is caught, and named
        t["grad.model.norm.weight"][3] += 1e-2
        st_io.save_file(t, o2)
        rc, out, _ = run_cli(["compare", o2, o1])
        check(rc == 1 and "FAIL grad.model.norm.weight" in out, "compare catches a perturbation")
        rc, out, _ = run_cli(["compare", o2, o1, "--names", "^logits$"])
        check(rc == 0, "compare --names restricts the set")
        st_io.save_file({"logits": t["logits"]}, o2)
        rc, out, _ = run_cli(["compare", o2, o1])
        check(rc == 1 and "MISSING" in out, "compare fails on missing tensors")
        rc, out, _ = run_cli(["compare", o2, o1, "--allow-missing"])
        check(rc == 0, "compare --allow-missing")
        st_io.save_file({"logits": t["logits"][:5]}, o2)
        rc, out, _ = run_cli(["compare", o2, o1, "--allow-missing"])
        check(rc == 1 and "shape" in out, "compare fails on a shape mismatch")
        # bad data and usage
        with open(bpath, "w") as f:
            json.dump({"seqs": [[1, 2, 99]]}, f)
        rc, _, err = run_cli(["forward", md, bpath, o2])
        check(rc == 65 and "out of range" in err, f"token out of range -> 65 ({rc})")
        with open(bpath, "w") as f:
            json.dump({"seqs": [[1, 2]], "mask": [[1, 1]]}, f)
        rc, _, err = run_cli(["forward", md, bpath, o2])
        check(rc == 65 and "mask" in err, "mask[0]=1 -> 65")
        rc, _, _ = run_cli(["forward", os.path.join(d, "nope"), bpath, o2])
        check(rc == 66, "missing model -> 66")
        rc, _, _ = run_cli(["adamw", md, bpath, o2, "--lr", "abc"])
        check(rc == 64, "bad number -> 64")
        # one real subprocess, to check the script runs as a program
        r = subprocess.run([sys.executable, os.path.join(HERE, "ref_model.py"), "compare", o1, o1],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0 and "0 failed" in r.stdout, f"CLI as a program: {r.stderr}")


def adamw_by_hand(cfg, P0, batch, steps, lr, b1, b2, eps, wd, clip, nodecay_1d):
    """The update torch.optim.AdamW (foreach=False, torch 1.13) does, written out."""
    P = {n: t.detach().clone().requires_grad_(True) for n, t in P0.items()}
    m = {n: torch.zeros_like(t) for n, t in P.items()}
    v = {n: torch.zeros_like(t) for n, t in P.items()}
    for k in range(1, steps + 1):
        _, _, loss = rm.compute_forward(cfg, P, *batch)
        grads = dict(zip(P, torch.autograd.grad(loss, list(P.values()))))
        norm = math.sqrt(sum((g * g).sum().item() for g in grads.values()))
        coef = min(1.0, clip / (norm + 1e-6))  # clip_grad_norm_
        with torch.no_grad():
            for n, p in P.items():
                g = grads[n] * coef
                decay = 0.0 if (nodecay_1d and p.dim() < 2) else wd
                p.mul_(1 - lr * decay)
                m[n] = b1 * m[n] + (1 - b1) * g
                v[n] = b2 * v[n] + (1 - b2) * g * g
                denom = (v[n].sqrt() / math.sqrt(1 - b2 ** k)) + eps
                p.sub_(lr / (1 - b1 ** k) * m[n] / denom)
    return P


def test_adamw():
    with tempfile.TemporaryDirectory() as d:
        cpath = os.path.join(d, "cfg.json")
        with open(cpath, "w") as f:
            json.dump(CFGS["llama"], f)
        md, od = os.path.join(d, "m"), os.path.join(d, "o")
        run_cli(["init", cpath, md, "--seed", "3", "--randomize-all", "--std", "0.3"])
        batch = ([[1, 2, 3, 4, 5], [6, 7, 8]], [[0, 1, 1, 1, 1], [0, 0, 1]])
        bpath = os.path.join(d, "b.json")
        with open(bpath, "w") as f:
            json.dump({"seqs": batch[0], "mask": batch[1]}, f)
        cfg, P0 = rm.load_model(md, torch.float64)
        for nodecay in (False, True):
            args = ["adamw", md, bpath, od, "--steps", "3", "--lr", "0.01", "--clip", "0.5",
                    "--weight-decay", "0.1", "--eps", "1e-6", "--beta2", "0.99", "--dtype", "f64",
                    "--save-state"] + (["--no-decay-norms-biases"] if nodecay else [])
            rc, out, err = run_cli(args)
            check(rc == 0, f"adamw: {err}")
            lines = [json.loads(x) for x in out.splitlines()]
            check(len(lines) == 3 and lines[0]["grad_norm"] > 0.5 and lines[2]["loss"] < lines[0]["loss"],
                  f"adamw prints 3 steps, clipping active, loss falls: {lines}")
            got = st_io.load_file(os.path.join(od, "model.safetensors"))
            want = adamw_by_hand(cfg, P0, batch, 3, 0.01, 0.9, 0.99, 1e-6, 0.1, 0.5, nodecay)
            worst = max(((got[n].double() - want[n].float().double()).abs().max().item()) for n in want)
            check(worst < 1e-6, f"adamw (nodecay={nodecay}) == formula by hand, worst {worst:.2e}")
            check(os.path.exists(os.path.join(od, "optimizer.safetensors")) and
                  os.path.exists(os.path.join(od, "config.json")), "adamw writes state and config")
        # with decay on everything, a norm weight moves even where its gradient is zero: compare
        # the two runs on a norm: they must differ
        rc, _, _ = run_cli(["adamw", md, bpath, od, "--steps", "1", "--weight-decay", "0.5"])
        a = st_io.load_file(os.path.join(od, "model.safetensors"))["model.norm.weight"]
        rc, _, _ = run_cli(["adamw", md, bpath, od, "--steps", "1", "--weight-decay", "0.5",
                            "--no-decay-norms-biases"])
        b = st_io.load_file(os.path.join(od, "model.safetensors"))["model.norm.weight"]
        close(a, b * (1 - 1e-3 * 0.5), 1e-6, "--no-decay-norms-biases exempts norms from decay")


def test_generate():
    cfg, P = model("qwen2", dtype=torch.float32, seed=8, std=1.0)
    prompt = [1, 2, 3]
    toks, lps = rm.generate(cfg, P, [prompt, [4]], 6, set())
    check(len(toks[0]) == 6 and len(toks[1]) == 6, "generate: 6 new tokens each")
    seq = prompt + toks[0]
    logits = rm.forward_separate(cfg, P, [seq])
    am = logits[len(prompt) - 1:-1].argmax(-1).tolist()
    check(am == toks[0], f"greedy tokens == argmax of the full forward ({am} vs {toks[0]})")
    lp = torch.log_softmax(logits.double(), -1)[torch.arange(2, 8), torch.tensor(toks[0])]
    close(torch.tensor(lps[0]), lp, 1e-6, "generate logprobs")
    stop = toks[0][2]
    t2, _ = rm.generate(cfg, P, [prompt], 6, {stop})
    check(t2[0] == toks[0][:toks[0].index(stop) + 1], "generate stops after eos (included)")


def main():
    t0 = time.time()
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    for t in tests:
        t1 = time.time()
        try:
            t()
        except Exception:
            check(False, f"{t.__name__} raised:\n{traceback.format_exc()}")
        print(f"{t.__name__}: {time.time() - t1:.1f}s", file=sys.stderr)
    print(f"total {time.time() - t0:.1f}s", file=sys.stderr)
    print(f"test_ref_model: {PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
