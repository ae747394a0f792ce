#!/usr/bin/python3
"""ref_model.py: an independent PyTorch reference for srlm's C model code (tests only).

Re-implements the forward pass of Hugging Face transformers' LlamaForCausalLM, Qwen2ForCausalLM and
Qwen3ForCausalLM in plain torch (no transformers package here), with the same numerics choices:

  - RMSNorm: x32 = x.float(); x32 * rsqrt(mean(x32^2) + eps); weight * x32.to(x.dtype)
    (HF LlamaRMSNorm / Qwen2RMSNorm / Qwen3RMSNorm).
  - RoPE, "rotate_half" layout: inv_freq = 1 / theta^(arange(0, D, 2) / D) in float32;
    angle = pos * inv_freq (float32), emb = cat(angle, angle); q*cos + rotate_half(q)*sin with
    rotate_half(x) = cat(-x[D/2:], x[:D/2]). rope_scaling "linear" and "llama3" are supported.
  - Attention: q/k/v projections (bias: qwen2 always on q/k/v, never on o; llama/qwen3 on q/k/v/o when
    attention_bias), Qwen3 q_norm/k_norm (RMSNorm over head_dim, before RoPE), GQA through repeat_kv,
    scores * head_dim^-0.5, causal mask, softmax in float32, o_proj.
  - MLP: down(silu(gate(x)) * up(x)) (llama mlp_bias adds biases to all three).
  - Pre-norm residual blocks, final norm, lm_head (tied to embed_tokens when tie_word_embeddings).
  - head_dim: config's head_dim if given, else hidden_size // num_attention_heads (qwen3: 128, as
    Qwen3Config's default).

With --dtype f64 everything (including RoPE tables, computed from float64 inv_freq) runs in float64.

Packed batches: a batch is a list of sequences. They are concatenated into one row with a
block-diagonal causal mask and positions restarting at 0 in each sequence, so sequences never see
each other. Position t of a sequence predicts token t+1; mask[t] = 1 marks token t (t >= 1) as a
target. loss = mean over all targets of the batch of -log p(token t | tokens[:t]).

CLI (see docs/oracle.md):
  ref_model.py forward  MODEL_DIR BATCH.json OUT.safetensors [--dtype f32|f64] [--out-dtype f32|f64]
  ref_model.py adamw    MODEL_DIR BATCH.json OUT_DIR [--lr 1e-3 --beta1 0.9 --beta2 0.999 --eps 1e-8
                        --weight-decay 0.01 --clip 1.0 --steps 1 --no-decay-norms-biases
                        --save-state --dtype f32|f64]
  ref_model.py generate MODEL_DIR PROMPT.json --max-new-tokens N [--eos ID ...] [--no-eos]
  ref_model.py init     CONFIG.json OUT_DIR --seed S [--dtype f32|bf16|f16] [--randomize-all]
                        [--std 0.02] [--shards N]
  ref_model.py compare  A B [--rtol 1e-4 --atol 1e-5] [--names REGEX] [--allow-missing]
Every subcommand takes --threads N (default 1, for reproducible summation order).
Exit codes: 0 ok, 1 compare found a difference, 64 usage, 65 bad data, 66 missing input.
"""
import argparse
import json
import math
import os
import re
import shutil
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

EX_USAGE, EX_DATAERR, EX_NOINPUT = 64, 65, 66
ARCHS = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}


class DataError(Exception):
    pass


def die(code, msg):
    print(f"ref_model: {msg}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# config


class Config:
    """The fields of a HF config.json that the forward pass uses, with the HF defaults."""

    def __init__(self, d):
        self.raw = dict(d)
        arch = d.get("model_type")
        if arch is None:
            for a in d.get("architectures") or []:
                arch = ARCHS.get(a)
        if arch not in ("llama", "qwen2", "qwen3"):
            raise DataError(f"config: unsupported model_type {arch!r} (llama, qwen2, qwen3)")
        self.arch = arch
        try:
            self.V = int(d["vocab_size"])
            self.C = int(d["hidden_size"])
            self.L = int(d["num_hidden_layers"])
            self.NH = int(d["num_attention_heads"])
            self.ff = int(d["intermediate_size"])
        except KeyError as e:
            raise DataError(f"config: missing {e.args[0]}")
        self.NKV = int(d.get("num_key_value_heads") or self.NH)
        hd = d.get("head_dim")
        if hd is None:
            hd = 128 if arch == "qwen3" else self.C // self.NH
        self.hd = int(hd)
        if self.NH % self.NKV:
            raise DataError(f"config: num_attention_heads {self.NH} not a multiple of "
                            f"num_key_value_heads {self.NKV}")
        if self.hd % 2:
            raise DataError(f"config: head_dim {self.hd} is odd")
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        rp = d.get("rope_parameters") or {}
        self.theta = float(d.get("rope_theta") or rp.get("rope_theta") or 10000.0)
        rs = d.get("rope_scaling") or (rp if rp.get("rope_type", "default") != "default" else None)
        self.rope_scaling = rs
        if rs is not None:
            kind = rs.get("rope_type") or rs.get("type")
            if kind not in ("default", "linear", "llama3"):
                raise DataError(f"config: rope scaling {kind!r} not supported (linear, llama3)")
        self.tie = bool(d.get("tie_word_embeddings", False))
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise DataError(f"config: hidden_act {act!r} not supported (silu)")
        if d.get("use_sliding_window"):
            raise DataError("config: use_sliding_window=true is not supported")
        if arch == "qwen2":
            self.qkv_bias, self.o_bias = True, False
        else:
            self.qkv_bias = self.o_bias = bool(d.get("attention_bias", False))
        self.mlp_bias = bool(d.get("mlp_bias", False)) if arch == "llama" else False
        self.qk_norm = arch == "qwen3"
        self.initializer_range = float(d.get("initializer_range", 0.02))
        eos = d.get("eos_token_id")
        self.eos = [] if eos is None else (list(eos) if isinstance(eos, list) else [eos])


def load_config(path):
    try:
        with open(path) as f:
            return Config(json.load(f))
    except FileNotFoundError:
        die(EX_NOINPUT, f"{path}: no such file")
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        die(EX_DATAERR, f"{path}: {e}")
    except DataError as e:
        die(EX_DATAERR, f"{path}: {e}")


def param_shapes(cfg):
    """Ordered {HF tensor name: shape} of every parameter (lm_head only when untied)."""
    C, hd = cfg.C, cfg.hd
    s = {"model.embed_tokens.weight": (cfg.V, C)}
    for i in range(cfg.L):
        p = f"model.layers.{i}."
        s[p + "input_layernorm.weight"] = (C,)
        for n, rows in (("q", cfg.NH * hd), ("k", cfg.NKV * hd), ("v", cfg.NKV * hd)):
            s[p + f"self_attn.{n}_proj.weight"] = (rows, C)
            if cfg.qkv_bias:
                s[p + f"self_attn.{n}_proj.bias"] = (rows,)
        s[p + "self_attn.o_proj.weight"] = (C, cfg.NH * hd)
        if cfg.o_bias:
            s[p + "self_attn.o_proj.bias"] = (C,)
        if cfg.qk_norm:
            s[p + "self_attn.q_norm.weight"] = (hd,)
            s[p + "self_attn.k_norm.weight"] = (hd,)
        s[p + "post_attention_layernorm.weight"] = (C,)
        for n, shp in (("gate", (cfg.ff, C)), ("up", (cfg.ff, C)), ("down", (C, cfg.ff))):
            s[p + f"mlp.{n}_proj.weight"] = shp
            if cfg.mlp_bias:
                s[p + f"mlp.{n}_proj.bias"] = (shp[0],)
    s["model.norm.weight"] = (C,)
    if not cfg.tie:
        s["lm_head.weight"] = (cfg.V, C)
    return s


def load_model(model_dir, dtype=torch.float32, requires_grad=False):
    """Returns (cfg, params): params = {HF name: leaf tensor of `dtype`}."""
    cfg = load_config(os.path.join(model_dir, "config.json"))
    try:
        raw = st_io.load_model_dir(model_dir)
    except FileNotFoundError as e:
        die(EX_NOINPUT, str(e))
    except (st_io.FormatError, ValueError, KeyError) as e:
        die(EX_DATAERR, f"{model_dir}: {e}")
    shapes = param_shapes(cfg)
    P = {}
    for name, shp in shapes.items():
        if name not in raw:
            die(EX_DATAERR, f"{model_dir}: tensor {name} missing")
        t = raw[name]
        if tuple(t.shape) != shp:
            die(EX_DATAERR, f"{model_dir}: tensor {name} has shape {list(t.shape)}, expected {list(shp)}")
        if not t.is_floating_point():
            die(EX_DATAERR, f"{model_dir}: tensor {name} is not floating point ({t.dtype})")
        P[name] = t.to(dtype).clone().requires_grad_(requires_grad)
    for name in raw:
        if name in shapes or name.endswith("rotary_emb.inv_freq"):
            continue
        if name == "lm_head.weight" and cfg.tie:
            print("ref_model: warning: tied model has lm_head.weight; ignored (HF ties it to "
                  "model.embed_tokens.weight)", file=sys.stderr)
            continue
        print(f"ref_model: warning: unexpected tensor {name} ignored", file=sys.stderr)
    return cfg, P


# ---------------------------------------------------------------------------------------------
# layers


def rmsnorm(x, w, eps):
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    var = xf.pow(2).mean(-1, keepdim=True)
    xf = xf * torch.rsqrt(var + eps)
    return w * xf.to(x.dtype)


def rope_inv_freq(cfg, dtype):
    """inv_freq (hd/2,) as HF computes it (float32 unless dtype is float64)."""
    ft = torch.float64 if dtype == torch.float64 else torch.float32
    D = cfg.hd
    inv = 1.0 / (cfg.theta ** (torch.arange(0, D, 2, dtype=torch.int64).to(ft) / D))
    rs = cfg.rope_scaling
    if rs is not None:
        kind = rs.get("rope_type") or rs.get("type")
        factor = float(rs.get("factor", 1.0))
        if kind == "linear":
            inv = inv / factor
        elif kind == "llama3":
            lo, hi = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
            old = float(rs["original_max_position_embeddings"])
            lo_wl, hi_wl = old / lo, old / hi
            wl = 2 * math.pi / inv
            inv_l = torch.where(wl > lo_wl, inv / factor, inv)
            smooth = (old / wl - lo) / (hi - lo)
            smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
            medium = ~(wl < hi_wl) * ~(wl > lo_wl)
            inv = torch.where(medium, smoothed, inv_l)
    return inv


def rope_cos_sin(cfg, pos, dtype):
    """pos: (..., T) int64 -> cos, sin (..., T, hd) in dtype."""
    inv = rope_inv_freq(cfg, dtype)
    ang = pos.to(inv.dtype)[..., None] * inv  # HF: inv_freq @ position_ids (K=1, one multiply)
    emb = torch.cat((ang, ang), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def linear(x, P, name, has_bias):
    return F.linear(x, P[name + ".weight"], P[name + ".bias"] if has_bias else None)


def repeat_kv(x, n):
    """(B, NKV, T, hd) -> (B, NKV*n, T, hd); kv head j serves query heads j*n .. j*n+n-1."""
    if n == 1:
        return x
    B, H, T, D = x.shape
    return x[:, :, None].expand(B, H, n, T, D).reshape(B, H * n, T, D)


def attention(cfg, P, p, h, cos, sin, allowed):
    """h: (B, T, C); cos/sin (B, T, hd); allowed: (B, 1, T, T) bool (query row, key column)."""
    B, T, _ = h.shape
    q = linear(h, P, p + "q_proj", cfg.qkv_bias).view(B, T, cfg.NH, cfg.hd)
    k = linear(h, P, p + "k_proj", cfg.qkv_bias).view(B, T, cfg.NKV, cfg.hd)
    v = linear(h, P, p + "v_proj", cfg.qkv_bias).view(B, T, cfg.NKV, cfg.hd)
    if cfg.qk_norm:
        q = rmsnorm(q, P[p + "q_norm.weight"], cfg.eps)
        k = rmsnorm(k, P[p + "k_norm.weight"], cfg.eps)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    c, s = cos[:, None], sin[:, None]
    q = q * c + rotate_half(q) * s
    k = k * c + rotate_half(k) * s
    n = cfg.NH // cfg.NKV
    k, v = repeat_kv(k, n), repeat_kv(v, n)
    att = torch.matmul(q, k.transpose(2, 3)) * cfg.hd ** -0.5
    att = att.masked_fill(~allowed, float("-inf"))
    sm_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    att = F.softmax(att, dim=-1, dtype=sm_dtype).to(q.dtype)
    y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, cfg.NH * cfg.hd)
    return linear(y, P, p + "o_proj", cfg.o_bias)


def mlp(cfg, P, p, h):
    g = linear(h, P, p + "gate_proj", cfg.mlp_bias)
    u = linear(h, P, p + "up_proj", cfg.mlp_bias)
    return linear(F.silu(g) * u, P, p + "down_proj", cfg.mlp_bias)


def lm_head_weight(cfg, P):
    return P["model.embed_tokens.weight"] if cfg.tie else P["lm_head.weight"]


def forward_tokens(cfg, P, ids, pos, allowed):
    """ids, pos: (B, T) int64; allowed: (B, 1, T, T) bool. Returns logits (B, T, V)."""
    E = P["model.embed_tokens.weight"]
    x = E[ids]
    cos, sin = rope_cos_sin(cfg, pos, x.dtype)
    for i in range(cfg.L):
        p = f"model.layers.{i}."
        x = x + attention(cfg, P, p + "self_attn.", rmsnorm(x, P[p + "input_layernorm.weight"], cfg.eps),
                          cos, sin, allowed)
        x = x + mlp(cfg, P, p + "mlp.", rmsnorm(x, P[p + "post_attention_layernorm.weight"], cfg.eps))
    x = rmsnorm(x, P["model.norm.weight"], cfg.eps)
    return F.linear(x, lm_head_weight(cfg, P))


def causal_allowed(T, device=None):
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()[None, None]


def forward_packed(cfg, P, seqs):
    """seqs: list of lists of ids. Returns logits (sum of lengths, V): one row, block-diagonal
    causal mask, positions restarting at 0 in every sequence."""
    lens = [len(s) for s in seqs]
    N = sum(lens)
    ids = torch.tensor([t for s in seqs for t in s], dtype=torch.int64)[None]
    pos = torch.cat([torch.arange(n, dtype=torch.int64) for n in lens])[None]
    seg = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(lens)])
    allowed = (seg[:, None] == seg[None, :]) & torch.ones(N, N, dtype=torch.bool).tril()
    return forward_tokens(cfg, P, ids, pos, allowed[None, None])[0]


def forward_separate(cfg, P, seqs):
    """Same result as forward_packed, one sequence at a time."""
    outs = []
    for s in seqs:
        ids = torch.tensor(s, dtype=torch.int64)[None]
        pos = torch.arange(len(s), dtype=torch.int64)[None]
        outs.append(forward_tokens(cfg, P, ids, pos, causal_allowed(len(s)))[0])
    return torch.cat(outs)


def token_logprobs(seqs, logits):
    """log p(token t | tokens[:t]) for every position (0 at t = 0 of each sequence), (N,)."""
    lp = torch.log_softmax(logits.float() if logits.dtype != torch.float64 else logits, dim=-1)
    out = torch.zeros(lp.shape[0], dtype=lp.dtype)
    rows, cols, dst = [], [], []
    g = 0
    for s in seqs:
        for t in range(1, len(s)):
            rows.append(g + t - 1)
            cols.append(s[t])
            dst.append(g + t)
        g += len(s)
    if rows:
        out = out.index_put((torch.tensor(dst),), lp[torch.tensor(rows), torch.tensor(cols)])
    return out


def batch_loss(seqs, masks, logprobs):
    """Mean of -logprob over the targets (mask 1); 0 when the batch has no target."""
    m = torch.tensor([v for mk in masks for v in mk], dtype=logprobs.dtype)
    n = m.sum()
    return -(logprobs * m).sum() / torch.clamp(n, min=1.0)


# ---------------------------------------------------------------------------------------------
# input files


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        die(EX_NOINPUT, f"{path}: no such file")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        die(EX_DATAERR, f"{path}: {e}")


def check_batch(obj, V, where):
    """Validates {"seqs": [[ids]], "mask": [[0/1]]}; returns (seqs, masks). A missing mask means
    every token but the first of each sequence is a target."""
    if not isinstance(obj, dict) or not isinstance(obj.get("seqs"), list) or not obj["seqs"]:
        raise DataError(f"{where}: expected {{\"seqs\": [[ids], ...], \"mask\": [[0/1], ...]}}")
    seqs = obj["seqs"]
    masks = obj.get("mask")
    if masks is None:
        masks = [[0] + [1] * (len(s) - 1) for s in seqs]
    if not isinstance(masks, list) or len(masks) != len(seqs):
        raise DataError(f"{where}: mask must have one list per sequence")
    for i, (s, m) in enumerate(zip(seqs, masks)):
        if not isinstance(s, list) or not s:
            raise DataError(f"{where}: seqs[{i}] must be a non-empty list of token ids")
        for t in s:
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < V:
                raise DataError(f"{where}: seqs[{i}]: token {t!r} out of range [0, {V})")
        if not isinstance(m, list) or len(m) != len(s):
            raise DataError(f"{where}: mask[{i}] length differs from seqs[{i}]")
        if any(v not in (0, 1) or isinstance(v, bool) for v in m):
            raise DataError(f"{where}: mask[{i}] must hold 0/1 integers")
        if m[0] != 0:
            raise DataError(f"{where}: mask[{i}][0] must be 0 (the first token has no prediction)")
    return seqs, masks


def set_threads(n):
    torch.set_num_threads(n)


DTYPES = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16, "f16": torch.float16}


# ---------------------------------------------------------------------------------------------
# subcommands


def compute_forward(cfg, P, seqs, masks):
    logits = forward_packed(cfg, P, seqs)
    lp = token_logprobs(seqs, logits)
    loss = batch_loss(seqs, masks, lp)
    return logits, lp, loss


def cmd_forward(a):
    dtype = DTYPES[a.dtype]
    cfg, P = load_model(a.model_dir, dtype, requires_grad=True)
    try:
        seqs, masks = check_batch(read_json(a.batch), cfg.V, a.batch)
    except DataError as e:
        die(EX_DATAERR, str(e))
    logits, lp, loss = compute_forward(cfg, P, seqs, masks)
    loss.backward()
    od = DTYPES[a.out_dtype]
    out = {"logits": logits.detach().to(od), "logprobs": lp.detach().to(od),
           "loss": loss.detach().reshape(1).to(od)}
    for name, t in P.items():
        out["grad." + name] = t.grad.to(od)
    try:
        st_io.save_file(out, a.out)
    except OSError as e:
        die(73, f"{a.out}: {e}")
    print(json.dumps({"loss": loss.item(), "targets": int(sum(map(sum, masks))),
                      "tokens": len(lp)}))


def make_adamw(P, a):
    names = list(P)
    if a.no_decay_norms_biases:
        decay = [P[n] for n in names if P[n].dim() >= 2]
        nodecay = [P[n] for n in names if P[n].dim() < 2]
        groups = [{"params": decay, "weight_decay": a.weight_decay},
                  {"params": nodecay, "weight_decay": 0.0}]
    else:
        groups = [{"params": [P[n] for n in names], "weight_decay": a.weight_decay}]
    return torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps,
                             weight_decay=a.weight_decay, foreach=False)


def cmd_adamw(a):
    dtype = DTYPES[a.dtype]
    cfg, P = load_model(a.model_dir, dtype, requires_grad=True)
    obj = read_json(a.batch)
    try:
        batches = [check_batch(b, cfg.V, f"{a.batch}: steps[{i}]")
                   for i, b in enumerate(obj["steps"])] if isinstance(obj, dict) and "steps" in obj \
            else [check_batch(obj, cfg.V, a.batch)]
    except DataError as e:
        die(EX_DATAERR, str(e))
    opt = make_adamw(P, a)
    params = list(P.values())
    for step in range(a.steps):
        seqs, masks = batches[step % len(batches)]
        opt.zero_grad(set_to_none=False)
        _, _, loss = compute_forward(cfg, P, seqs, masks)
        loss.backward()
        if a.clip > 0:
            gn = torch.nn.utils.clip_grad_norm_(params, a.clip)
        else:
            gn = torch.norm(torch.stack([p.grad.detach().norm(2) for p in params]), 2)
        if not (math.isfinite(loss.item()) and math.isfinite(gn.item())):
            die(70, f"step {step + 1}: non-finite loss {loss.item()} or grad norm {gn.item()}")
        opt.step()
        print(json.dumps({"step": step + 1, "loss": loss.item(), "grad_norm": gn.item()}),
              flush=True)
    os.makedirs(a.out_dir, exist_ok=True)
    st_io.save_file({n: t.detach().float() for n, t in P.items()},
                    os.path.join(a.out_dir, "model.safetensors"), {"format": "pt"})
    shutil.copyfile(os.path.join(a.model_dir, "config.json"), os.path.join(a.out_dir, "config.json"))
    if a.save_state:
        st = {}
        for n, t in P.items():
            s = opt.state[t]
            st["exp_avg." + n] = s["exp_avg"].float()
            st["exp_avg_sq." + n] = s["exp_avg_sq"].float()
        st_io.save_file(st, os.path.join(a.out_dir, "optimizer.safetensors"),
                        {"step": a.steps})


def cmd_generate(a):
    cfg, P = load_model(a.model_dir, DTYPES[a.dtype])
    obj = read_json(a.prompts)
    prompts = obj.get("prompts", obj.get("seqs")) if isinstance(obj, dict) else obj
    try:
        if not isinstance(prompts, list) or not prompts:
            raise DataError(f"{a.prompts}: expected {{\"prompts\": [[ids], ...]}}")
        check_batch({"seqs": prompts}, cfg.V, a.prompts)
    except DataError as e:
        die(EX_DATAERR, str(e))
    eos = set() if a.no_eos else set(a.eos if a.eos else cfg.eos)
    toks, lps = generate(cfg, P, prompts, a.max_new_tokens, eos)
    print(json.dumps({"tokens": toks, "logprobs": lps}))


@torch.no_grad()
def generate(cfg, P, prompts, max_new, eos):
    """Greedy (argmax, lowest id on ties), full recompute at every step, stop after an eos id
    (which is included). Returns new tokens and their log-probs per prompt."""
    toks, lps = [], []
    for pr in prompts:
        seq, new, lp = list(pr), [], []
        for _ in range(max_new):
            logits = forward_separate(cfg, P, [seq])[-1]
            logp = torch.log_softmax(logits.double(), -1)
            nxt = int(torch.argmax(logits).item())
            new.append(nxt)
            lp.append(logp[nxt].item())
            seq.append(nxt)
            if nxt in eos:
                break
        toks.append(new)
        lps.append(lp)
    return toks, lps


def init_params(cfg, seed, randomize_all=False, std=None):
    """Random float32 parameters: weights N(0, std) (std = initializer_range), biases 0, norms 1;
    randomize_all: norms 1 + N(0, 0.2) and biases N(0, 0.1), so norm/bias bugs are visible."""
    std = cfg.initializer_range if std is None else std
    g = torch.Generator().manual_seed(seed)
    P = {}
    for name, shp in param_shapes(cfg).items():
        if name.endswith("norm.weight"):
            t = torch.ones(shp)
            if randomize_all:
                t = t + 0.2 * torch.randn(shp, generator=g)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shp, generator=g) if randomize_all else torch.zeros(shp)
        else:
            t = std * torch.randn(shp, generator=g)
        P[name] = t
    return P


def cmd_init(a):
    raw = read_json(a.config)
    try:
        cfg = Config(raw)
    except (DataError, ValueError, TypeError) as e:
        die(EX_DATAERR, f"{a.config}: {e}")
    P = init_params(cfg, a.seed, a.randomize_all, a.std)
    dt = DTYPES[a.dtype]
    P = {n: t.to(dt) for n, t in P.items()}
    out_cfg = dict(raw)
    out_cfg.setdefault("model_type", cfg.arch)
    out_cfg.setdefault("architectures", [{v: k for k, v in ARCHS.items()}[cfg.arch]])
    out_cfg["torch_dtype"] = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[a.dtype]
    os.makedirs(a.out_dir, exist_ok=True)
    st_io.save_model_dir(P, a.out_dir, a.shards)
    with open(os.path.join(a.out_dir, "config.json"), "w") as f:
        json.dump(out_cfg, f, indent=2)
        f.write("\n")


def load_tensors(path):
    if os.path.isdir(path):
        return st_io.load_model_dir(path)
    return st_io.load_file(path)


def compare(A, B, rtol, atol, names_re=None, allow_missing=False, out=None):
    """Compares A to the reference B. Per common tensor: rel = max|a-b| / max(max|b|, 1e-30);
    fails when max|a-b| > atol + rtol * max|b|, on shape mismatch, on NaN, or (unless
    allow_missing) when a tensor is in only one file. Returns the number of failures."""
    out = out or sys.stdout
    pat = re.compile(names_re) if names_re else None
    keep = lambda n: pat is None or pat.search(n)  # noqa: E731
    na, nb = {n for n in A if keep(n)}, {n for n in B if keep(n)}
    fails = 0
    for n in sorted(na ^ nb):
        print(f"{'MISSING' if not allow_missing else 'only-in'} {n}: only in "
              f"{'A' if n in na else 'B'}", file=out)
        fails += 0 if allow_missing else 1
    common = sorted(na & nb)
    if not common:
        print("no tensors in common", file=out)
        return fails + 1
    worst = (0.0, None)
    for n in common:
        a, b = A[n].double(), B[n].double()
        if a.shape != b.shape:
            print(f"FAIL {n}: shape {list(a.shape)} vs {list(b.shape)}", file=out)
            fails += 1
            continue
        if a.numel() == 0:
            print(f"ok   {n}: empty", file=out)
            continue
        diff = (a - b).abs().max().item()
        ref = b.abs().max().item()
        rel = diff / max(ref, 1e-30)
        bad = not (math.isfinite(diff) and diff <= atol + rtol * ref)
        fails += bad
        if rel > worst[0] or (bad and worst[1] is None):
            worst = (rel, n)
        print(f"{'FAIL' if bad else 'ok  '} {n}: shape {list(a.shape)} max_abs_diff {diff:.3e} "
              f"max_abs_ref {ref:.3e} rel {rel:.3e}", file=out)
    print(f"compare: {len(common)} tensors, {fails} failed, worst rel {worst[0]:.3e} "
          f"({worst[1]})", file=out)
    return fails


def cmd_compare(a):
    try:
        A, B = load_tensors(a.a), load_tensors(a.b)
    except FileNotFoundError as e:
        die(EX_NOINPUT, str(e))
    except (st_io.FormatError, ValueError, KeyError) as e:
        die(EX_DATAERR, str(e))
    fails = compare(A, B, a.rtol, a.atol, a.names, a.allow_missing)
    sys.exit(1 if fails else 0)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        die(EX_USAGE, message)


def build_parser():
    ap = Parser(prog="ref_model.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    def common(p):
        p.add_argument("--threads", type=int, default=1)
        return p

    p = common(sub.add_parser("forward", help="logits, log-probs, loss and gradients"))
    p.add_argument("model_dir")
    p.add_argument("batch")
    p.add_argument("out")
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.add_argument("--out-dtype", choices=["f32", "f64"], default="f32")
    p.set_defaults(fn=cmd_forward)

    p = common(sub.add_parser("adamw", help="N AdamW steps with global-norm clipping"))
    p.add_argument("model_dir")
    p.add_argument("batch")
    p.add_argument("out_dir")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--adam-eps", "--eps", dest="eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0, help="max global grad norm; 0 = no clipping")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--no-decay-norms-biases", action="store_true",
                   help="weight decay only on tensors with >= 2 dims (not norms, not biases)")
    p.add_argument("--save-state", action="store_true", help="also write optimizer.safetensors")
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.set_defaults(fn=cmd_adamw)

    p = common(sub.add_parser("generate", help="greedy continuations"))
    p.add_argument("model_dir")
    p.add_argument("prompts")
    p.add_argument("--max-new-tokens", type=int, required=True)
    p.add_argument("--eos", type=int, action="append", help="stop id (repeatable); default: config")
    p.add_argument("--no-eos", action="store_true", help="never stop early")
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.set_defaults(fn=cmd_generate)

    p = common(sub.add_parser("init", help="random model directory from a config"))
    p.add_argument("config")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    p.add_argument("--randomize-all", action="store_true")
    p.add_argument("--std", type=float, default=None, help="weight std (default initializer_range)")
    p.add_argument("--shards", type=int, default=1)
    p.set_defaults(fn=cmd_init)

    p = common(sub.add_parser("compare", help="compare same-named tensors (B is the reference)"))
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--names", default=None, help="only tensors whose name matches this regex")
    p.add_argument("--allow-missing", action="store_true")
    p.set_defaults(fn=cmd_compare)
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    if a.threads < 1:
        die(EX_USAGE, "--threads must be >= 1")
    for k in ("steps", "max_new_tokens", "shards"):
        if getattr(a, k, 1) is not None and getattr(a, k, 1) < (0 if k == "max_new_tokens" else 1):
            die(EX_USAGE, f"--{k.replace('_', '-')} out of range")
    set_threads(a.threads)
    a.fn(a)


if __name__ == "__main__":
    main()
