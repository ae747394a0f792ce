#!/usr/bin/python3
"""torch_generate.py: PyTorch yardstick for srlm sampling speed (KV-cached decoding).

    /usr/bin/python3 bench/torch_generate.py --shape tiny|small|qwen0.5b --batch 1|8 \
        --new-tokens N --threads T [--prompt-len 32] [--temperature 1.0]

Random weights (std 0.02) and random prompts. A prefill pass fills a preallocated KV cache
(B, NKV, prompt+N, hd) per layer; then each step runs one token per sequence through the model,
attends over the cache (grouped-query attention without copying K/V per query head), and samples
from softmax(logits / temperature) with torch.multinomial. Same f32 numerics as the reference model
(tests/oracle/ref_model.py), whose RMSNorm and RoPE tables it reuses.
Prints one JSON line: {"tool":"torch","bench":"generate","shape":...,"batch":...,"tok_per_s":...,
"threads":..., "prefill_tok_per_s":..., ...}; tok_per_s = batch * new_tokens / decode time.
Thread/BLAS environment as bench/torch_train.py sets it.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_train import SHAPES, ENV_KEYS, setup_env, blas_info, peak_rss_mb, cpu_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="PyTorch KV-cached sampling yardstick")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="threads of the BLAS library itself (BLIS_NUM_THREADS); default 1")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--check", action="store_true",
                    help="verify the cached logits against a full recompute (slow on big shapes)")
    a = ap.parse_args()
    if a.threads < 1 or a.batch < 1 or a.new_tokens < 1 or a.prompt_len < 1 or a.temperature <= 0:
        ap.error("--threads, --batch, --new-tokens, --prompt-len >= 1; --temperature > 0")
    setup_env(a.threads, a.blas_threads)

    import torch
    import torch.nn.functional as F
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "oracle"))
    import ref_model as rm

    torch.set_num_threads(a.threads)
    cfg = rm.Config(SHAPES[a.shape])
    P = rm.init_params(cfg, a.seed)
    B, NKV, hd, NH = a.batch, cfg.NKV, cfg.hd, cfg.NH
    rep = NH // NKV
    maxT = a.prompt_len + a.new_tokens
    cos_all, sin_all = rm.rope_cos_sin(cfg, torch.arange(maxT)[None], torch.float32)
    cos_all, sin_all = cos_all[0], sin_all[0]  # (maxT, hd)
    K = [torch.zeros(B, NKV, maxT, hd) for _ in range(cfg.L)]
    V = [torch.zeros(B, NKV, maxT, hd) for _ in range(cfg.L)]
    head = rm.lm_head_weight(cfg, P)

    def lin(x, name, bias):
        return F.linear(x, P[name + ".weight"], P[name + ".bias"] if bias else None)

    def forward(ids, start):
        """ids (B, T) at positions start..start+T-1; fills the cache; logits of the last position."""
        T = ids.shape[1]
        end = start + T
        cos, sin = cos_all[start:end][None, None], sin_all[start:end][None, None]
        x = P["model.embed_tokens.weight"][ids]
        for i in range(cfg.L):
            p = f"model.layers.{i}."
            h = rm.rmsnorm(x, P[p + "input_layernorm.weight"], cfg.eps)
            q = lin(h, p + "self_attn.q_proj", cfg.qkv_bias).view(B, T, NH, hd)
            k = lin(h, p + "self_attn.k_proj", cfg.qkv_bias).view(B, T, NKV, hd)
            v = lin(h, p + "self_attn.v_proj", cfg.qkv_bias).view(B, T, NKV, hd)
            if cfg.qk_norm:
                q = rm.rmsnorm(q, P[p + "self_attn.q_norm.weight"], cfg.eps)
                k = rm.rmsnorm(k, P[p + "self_attn.k_norm.weight"], cfg.eps)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q = q * cos + rm.rotate_half(q) * sin
            k = k * cos + rm.rotate_half(k) * sin
            K[i][:, :, start:end] = k
            V[i][:, :, start:end] = v
            kc, vc = K[i][:, :, :end], V[i][:, :, :end]  # (B, NKV, end, hd)
            qg = q.reshape(B, NKV, rep * T, hd)  # query heads of one kv group stacked (GQA)
            att = torch.matmul(qg, kc.transpose(2, 3)) * hd ** -0.5  # (B, NKV, rep*T, end)
            if T > 1:
                qpos = torch.arange(start, end).repeat(rep)
                att = att.masked_fill(torch.arange(end)[None, :] > qpos[:, None], float("-inf"))
            att = torch.softmax(att, dim=-1)
            y = torch.matmul(att, vc).reshape(B, NH, T, hd).transpose(1, 2).reshape(B, T, NH * hd)
            x = x + lin(y, p + "self_attn.o_proj", cfg.o_bias)
            h = rm.rmsnorm(x, P[p + "post_attention_layernorm.weight"], cfg.eps)
            x = x + lin(F.silu(lin(h, p + "mlp.gate_proj", cfg.mlp_bias)) *
                        lin(h, p + "mlp.up_proj", cfg.mlp_bias), p + "mlp.down_proj", cfg.mlp_bias)
        x = rm.rmsnorm(x[:, -1], P["model.norm.weight"], cfg.eps)
        return F.linear(x, head)

    g = torch.Generator().manual_seed(a.seed)
    prompt = torch.randint(0, cfg.V, (B, a.prompt_len), generator=g)
    with torch.no_grad():
        t0 = time.perf_counter()
        logits = forward(prompt, 0)
        t_prefill = time.perf_counter() - t0
        out = []
        t0 = time.perf_counter()
        for s in range(a.new_tokens):
            probs = torch.softmax(logits / a.temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=g)  # (B, 1)
            out.append(nxt)
            logits = forward(nxt, a.prompt_len + s)  # one forward per sampled token
        t_decode = time.perf_counter() - t0
        check_err = None
        if a.check:  # cached logits of the last step == full recompute by the reference model
            seqs = torch.cat([prompt] + out, 1).tolist()
            full = torch.stack([rm.forward_separate(cfg, P, [s_])[-1] for s_ in seqs])
            check_err = ((full - logits).abs().max() / full.abs().max()).item()
            if not check_err < 1e-4:
                print(f"torch_generate: KV-cache check failed: rel err {check_err}", file=sys.stderr)
                sys.exit(1)
    nparams = sum(t.numel() for t in P.values())
    print(json.dumps({
        "tool": "torch", "bench": "generate", "shape": a.shape, "threads": a.threads,
        "blas_threads": a.blas_threads, "batch": B,
        "prompt_len": a.prompt_len, "new_tokens": a.new_tokens, "params": nparams,
        "tok_per_s": round(B * a.new_tokens / t_decode, 2),
        "ms_per_step": round(1000 * t_decode / a.new_tokens, 2),
        "prefill_tok_per_s": round(B * a.prompt_len / t_prefill, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1), "torch": torch.__version__,
        "kv_check_rel_err": check_err,
        "env": {k: os.environ.get(k) for k in ENV_KEYS}, "blas": blas_info(), "cpu": cpu_model(),
    }))


if __name__ == "__main__":
    main()
