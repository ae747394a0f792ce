#!/usr/bin/python3
"""torch_train.py: PyTorch yardstick for srlm training speed (forward + backward + clip + AdamW).

    /usr/bin/python3 bench/torch_train.py --shape tiny|small|qwen0.5b --threads T --seq 512 \
        --batch B --steps S [--warmup 1] [--print-config]

Random weights (std 0.02), random tokens, every token a target. The model is the test suite's
reference (tests/oracle/ref_model.py: HF-eager-equivalent Llama/Qwen2 forward, f32), trained with
torch.optim.AdamW (foreach=True, the fastest variant here) after clip_grad_norm_(1.0).
Prints one JSON line: {"tool":"torch","bench":"train","shape":...,"tok_per_s":...,"threads":...,
"step_ms":..., "peak_rss_mb":..., "env":{...}, "blas":...}. tok_per_s counts B*seq tokens per
step over the timed steps (after --warmup untimed steps).

PyTorch's best setting is chosen before torch is imported (variables already set are kept):
torch.set_num_threads(T), OMP_NUM_THREADS=T, BLIS_NUM_THREADS=OPENBLAS_NUM_THREADS=--blas-threads
(default 1, the fastest measured here; Debian's torch calls whatever libblas.so.3 the alternatives
system points to: BLIS here, OpenBLAS elsewhere), OMP_WAIT_POLICY=
PASSIVE (spinning OpenMP workers collapse on shared cores), OPENBLAS_CORETYPE=
SkylakeX and BLIS_ARCH_TYPE=0 only when the CPU has AVX-512 (they crash a CPU without it).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "oracle"))

# model shapes (HF config.json fields); srlm's benchmarks use the same dictionaries
SHAPES = {
    "tiny": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=512,
                 hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=688, rms_norm_eps=1e-6, rope_theta=10000.0,
                 tie_word_embeddings=False, max_position_embeddings=4096),
    "small": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=8192,
                  hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                  intermediate_size=1408, rms_norm_eps=1e-6, rope_theta=10000.0,
                  tie_word_embeddings=False, max_position_embeddings=4096),
    # the shape of Qwen2.5-0.5B
    "qwen0.5b": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=151936,
                     hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                     num_key_value_heads=2, intermediate_size=4864, rms_norm_eps=1e-6,
                     rope_theta=1000000.0, tie_word_embeddings=True, max_position_embeddings=32768),
}


def cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l for l in f if l.startswith("flags")), "").split()
        return all(x in flags for x in ("avx512f", "avx512dq", "avx512bw", "avx512vl"))
    except OSError:
        return False


ENV_KEYS = ("OPENBLAS_CORETYPE", "BLIS_ARCH_TYPE", "BLIS_NUM_THREADS", "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")


def setup_env(threads, blas_threads=1):
    """Call before importing torch. torch's own ops get `threads`; the BLAS library's own threads
    `blas_threads`. Measured here (small shape, seq 512, batch 2, 2 shared cores under load):
    torch 2 + BLIS 1 thread 154 tok/s, torch 1 + BLIS 1 149, torch 1 + BLIS 2 96 (best step 258,
    very noisy), torch 2 + BLIS 2 53: so the default keeps BLAS single-threaded."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    for k in ("BLIS_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(k, str(blas_threads))
    # Idle OpenMP workers spin by default; on 2 shared cores that collapses multithreaded torch
    # (tiny shape, 2 threads, measured here under load: 117 tok/s spinning, 520 passive).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if cpu_has_avx512():
        os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
        os.environ.setdefault("BLIS_ARCH_TYPE", "0")


def blas_info():
    """Which BLAS the process actually mapped (after torch is imported and has run a matmul)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if any(s in p for s in ("blas", "blis", "mkl_")):
                    libs.add(os.path.realpath(p))
    except OSError:
        pass
    return sorted(libs)


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description="PyTorch training-step yardstick")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="threads of the BLAS library itself (BLIS_NUM_THREADS); default 1")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--print-config", action="store_true", help="print the shape's config.json")
    a = ap.parse_args()
    if a.print_config:
        print(json.dumps(SHAPES[a.shape], indent=2))
        return
    if a.threads < 1 or a.seq < 2 or a.batch < 1 or a.steps < 1 or a.warmup < 0:
        ap.error("--threads, --batch, --steps >= 1, --seq >= 2, --warmup >= 0")
    setup_env(a.threads, a.blas_threads)

    import torch
    import torch.nn.functional as F
    import ref_model as rm

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = rm.Config(SHAPES[a.shape])
    P = {n: t.requires_grad_(True) for n, t in rm.init_params(cfg, a.seed).items()}
    params = list(P.values())
    nparams = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                            foreach=True)
    g = torch.Generator().manual_seed(a.seed)
    B, T = a.batch, a.seq
    pos = torch.arange(T)[None].expand(B, T)
    allowed = rm.causal_allowed(T)

    def step():
        ids = torch.randint(0, cfg.V, (B, T), generator=g)
        opt.zero_grad(set_to_none=True)
        logits = rm.forward_tokens(cfg, P, ids, pos, allowed)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.V), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times, losses = [], []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    total = sum(times)
    print(json.dumps({
        "tool": "torch", "bench": "train", "shape": a.shape, "threads": a.threads,
        "seq": T, "batch": B, "steps": a.steps, "params": nparams,
        "tok_per_s": round(B * T * a.steps / total, 2),
        "step_ms": round(1000 * total / a.steps, 1), "step_ms_min": round(1000 * min(times), 1),
        "gflops_per_s": round(6.0 * nparams * B * T * a.steps / total / 1e9, 1),
        "loss_first": round(losses[0], 4), "peak_rss_mb": round(peak_rss_mb(), 1),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "blas_threads": a.blas_threads,
        "env": {k: os.environ.get(k) for k in ENV_KEYS}, "blas": blas_info(), "cpu": cpu_model(),
    }))


if __name__ == "__main__":
    main()
