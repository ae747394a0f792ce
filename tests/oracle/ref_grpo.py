#!/usr/bin/python3
"""ref_grpo.py: an independent PyTorch reference of one `rl-step` run (tests only).

The GRPO objective is written here from the papers, as torch expressions differentiated by
autograd (srlm's C code differentiates it by hand, common/grpo.c):

  A_i   = (r_i - mean_g) / (std_g + adv_eps)    std_g = torch.std (Bessel); Dr. GRPO: no division
          groups with all-equal rewards: A = 0, or dropped with --drop-equal (DAPO)
  rho   = exp(logp - old_logp)
  l_t   = -min(rho A, clamp(rho, 1 - eps_low, 1 + eps_high) A) + beta * KL_t
          KL: d = ref - logp; k1 = -d, k2 = d^2/2, k3 = exp(d) - d - 1
  loss  = token: sum l / sum |o|;  seq: mean_i (sum_t l / |o_i|);  const: sum l / (n * max_len)

The model is ref_model.py's (HF-faithful) forward; the optimizer torch.optim.AdamW with
clip_grad_norm_, as ref_model.py adamw uses them.

Subcommands:
  ref_grpo.py mkbatch POLICY_DIR OUT.mp --model-xxh3 HEX [--groups 4 --G 4 --seed 1 --vocab V]
      writes a scored srlm.samples stream: random prompts and completions, rewards in {0, 1}
      (some groups all equal), some finish_reason "length", old log-probs = the policy's plus
      noise, so ratios fall below, inside and above the clip range.
  ref_grpo.py step POLICY_DIR STREAM.mp OUT_DIR [--ref DIR] [rl-step's objective and optimizer
      flags]: the optimizer steps rl-step makes on that stream; writes OUT_DIR/model.safetensors
      and prints one JSON line of metrics per optimizer step; --compare ST [--rtol --atol]
      then compares rl-step's weights ST with the result (exit 1 on a difference).
"""
import argparse
import json
import math
import os
import shutil
import sys

import msgpack
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model as R  # noqa: E402
import st_io  # noqa: E402


def read_stream(path):
    with open(path, "rb") as f:
        recs = list(msgpack.Unpacker(f, raw=False, strict_map_key=False))
    assert recs[0]["kind"] == "header" and recs[-1]["kind"] == "end"
    return recs[0], recs[1:-1]


def f32_tensor(v):
    import struct
    return {"dtype": "f32", "shape": [len(v)], "data": struct.pack("<%df" % len(v), *v)}


def tensor_values(t):
    import struct
    n = t["shape"][0]
    return list(struct.unpack("<%df" % n, t["data"]))


# ---------------------------------------------------------------------------------------------
# mkbatch


@torch.no_grad()
def cmd_mkbatch(a):
    cfg, P = R.load_model(a.policy)
    g = torch.Generator().manual_seed(a.seed)
    V = a.vocab or cfg.V
    ri = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g).item())  # noqa: E731
    recs = []
    for gi in range(a.groups):
        prompt = [ri(0, V - 1) for _ in range(ri(2, 5))]
        # group 1 all correct, group 2 all wrong (equal rewards), others mixed
        for s in range(a.G):
            comp = [ri(0, V - 1) for _ in range(ri(1, 8))]
            toks = prompt + comp
            if gi == 1:
                r = 1.0
            elif gi == 2:
                r = 0.0
            else:
                r = float(ri(0, 1)) if s > 1 else float(s)   # samples 0/1 differ: mixed group
            fr = "length" if ri(0, 3) == 0 else "eos"
            lp = R.token_logprobs([toks], R.forward_packed(cfg, P, [toks]))[len(prompt):]
            noise = (torch.rand(len(comp), generator=g, dtype=torch.float64) - 0.5) * 1.4
            old = (lp.double() + noise).tolist()
            recs.append({"kind": "sample", "id": "p%d" % gi, "sample": s, "group_size": a.G,
                         "tokens": toks, "mask": [0] * len(prompt) + [1] * len(comp),
                         "prompt_len": len(prompt), "logprobs": f32_tensor(old), "text": "t",
                         "finish_reason": fr, "reward": r, "rewards": {"correct": r}})
    up = {"kind": "header", "schema": "srlm.samples", "schema_version": 1,
          "producer": {"name": "ref_grpo.py", "version": "1"}, "model_xxh3": a.model_xxh3,
          "vocab_size": cfg.V}
    hdr = {"kind": "header", "schema": "srlm.samples", "schema_version": 1,
           "producer": {"name": "score", "version": "1"}, "upstream": up}
    with open(a.out, "wb") as f:
        f.write(msgpack.packb(hdr))
        for r in recs:
            f.write(msgpack.packb(r, use_bin_type=True))
        f.write(msgpack.packb({"kind": "end", "records": len(recs)}))


# ---------------------------------------------------------------------------------------------
# step


def advantages(rewards, a):
    r = torch.tensor(rewards, dtype=torch.float64)
    if bool((r == r[0]).all()):
        return None if a.drop_equal else torch.zeros_like(r)
    adv = r - r.mean()
    if not a.no_std_scale:
        adv = adv / (r.std() + a.adv_eps)
    return adv.float()


def kl_est(kind, d):
    if kind == "k1":
        return -d
    if kind == "k2":
        return 0.5 * d * d
    return torch.exp(d) - d - 1


def seq_logprobs(cfg, P, seqs):
    """Per sequence: (log-probs of its completion tokens, entropies of the predicting rows)."""
    toks = [s["tokens"] for s in seqs]
    logits = R.forward_packed(cfg, P, toks)
    lp_all = R.token_logprobs(toks, logits)
    logp = torch.log_softmax(logits.float(), -1)
    ent_all = -(logp.exp() * logp).sum(-1)
    out, g = [], 0
    for s in seqs:
        pl, n = s["prompt_len"], len(s["tokens"])
        out.append((lp_all[g + pl:g + n], ent_all[g + pl - 1:g + n - 1]))
        g += n
    return out


def minibatch_loss(cfg, P, mb, a, stats):
    lps = seq_logprobs(cfg, P, mb)
    used = [s for s in mb if s["use"]]
    T = sum(len(s["old"]) for s in used)
    n = len(used)
    L = a.max_len if a.max_len > 0 else max((len(s["old"]) for s in used), default=1)
    total = torch.zeros((), dtype=torch.float32)
    for s, (lp, ent) in zip(mb, lps):
        if not s["use"]:
            continue
        old = torch.tensor(s["old"], dtype=torch.float32)
        rho = torch.exp(lp - old)
        A = s["adv"]
        obj = torch.min(rho * A, torch.clamp(rho, 1 - a.eps_low, 1 + a.eps_high) * A)
        l = -obj
        if s.get("ref") is not None:
            d = s["ref"] - lp
            k = kl_est(a.kl, d)
            if a.beta != 0:
                l = l + a.beta * k
            stats["kl"] += k.detach().double().sum().item()
        if a.agg == "token":
            total = total + l.sum() / T
        elif a.agg == "seq":
            total = total + l.sum() / len(l) / n
        else:
            total = total + l.sum() / (n * L)
        stats["tokens"] += len(l)
        stats["entropy"] += ent.detach().double().sum().item()
        r = rho.detach()
        stats["clip_low"] += int(((r < 1 - a.eps_low) & (A < 0)).sum())
        stats["clip_high"] += int(((r > 1 + a.eps_high) & (A > 0)).sum())
    return total


def lr_at(a, step):
    """The documented schedule (common/optim.h), at 1-based step: linear warm-up from 0, then
    constant, linear or half-cosine decay to --min-lr at --steps."""
    if a.warmup > 0 and step <= a.warmup:
        return a.lr * step / a.warmup
    if a.schedule == "constant" or a.steps <= a.warmup:
        return a.lr
    frac = min(1.0, (step - a.warmup) / (a.steps - a.warmup))
    if a.schedule == "linear":
        return a.min_lr + (a.lr - a.min_lr) * (1.0 - frac)
    return a.min_lr + (a.lr - a.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


def cmd_step(a):
    R.set_threads(1)
    cfg, P = R.load_model(a.policy, requires_grad=True)
    hdr, recs = read_stream(a.stream)
    groups = []
    for r in recs:
        if r["sample"] == 0:
            groups.append([])
        groups[-1].append(r)
    ref = None
    if a.ref:
        rcfg, RP = R.load_model(a.ref)
        ref = (rcfg, RP)
    opt = R.make_adamw(P, argparse.Namespace(lr=a.lr, beta1=a.beta1, beta2=a.beta2, eps=a.eps,
                                             weight_decay=a.weight_decay,
                                             no_decay_norms_biases=a.no_decay_norms_biases))
    params = list(P.values())
    step = 0
    for b0 in range(0, len(groups), a.groups_per_step):
        batch = groups[b0:b0 + a.groups_per_step]
        seqs = []
        for grp in batch:
            adv = advantages([s["reward"] for s in grp], a)
            if adv is None:
                continue
            for s, A in zip(grp, adv):
                pl = s["prompt_len"]
                seqs.append({"tokens": s["tokens"], "prompt_len": pl, "adv": float(A),
                             "old": tensor_values(s["logprobs"]),
                             "use": not (a.mask_truncated and s["finish_reason"] == "length")})
        if ref is not None and seqs:
            with torch.no_grad():
                for s, (lp, _) in zip(seqs, seq_logprobs(ref[0], ref[1], seqs)):
                    s["ref"] = lp.detach().float()
        n = len(seqs)
        for epoch in range(a.epochs):
            for j in range(a.minibatches):
                mb = seqs[j * n // a.minibatches:(j + 1) * n // a.minibatches]
                if not any(s["use"] and s["old"] for s in mb):
                    continue
                stats = dict(kl=0.0, tokens=0, entropy=0.0, clip_low=0, clip_high=0)
                opt.zero_grad(set_to_none=False)
                loss = minibatch_loss(cfg, P, mb, a, stats)
                loss.backward()
                if a.clip > 0:
                    gn = torch.nn.utils.clip_grad_norm_(params, a.clip)
                else:
                    gn = torch.norm(torch.stack([p.grad.detach().norm(2) for p in params]), 2)
                for g in opt.param_groups:   # one AdamW for the whole run: moments persist
                    g["lr"] = lr_at(a, step + 1)
                opt.step()
                step += 1
                t = max(stats["tokens"], 1)
                print(json.dumps({"step": step, "loss": loss.item(), "grad_norm": gn.item(),
                                  "kl": stats["kl"] / t, "entropy": stats["entropy"] / t,
                                  "clip_low": stats["clip_low"] / t,
                                  "clip_high": stats["clip_high"] / t, "tokens": stats["tokens"]}),
                      flush=True)
    os.makedirs(a.out_dir, exist_ok=True)
    st_io.save_file({k: t.detach().float() for k, t in P.items()},
                    os.path.join(a.out_dir, "model.safetensors"), {"format": "pt"})
    shutil.copyfile(os.path.join(a.policy, "config.json"), os.path.join(a.out_dir, "config.json"))
    if a.compare:   # saves a second torch start-up in the tests
        got = st_io.load_file(a.compare)
        ref = {k: t.detach().float() for k, t in P.items()}
        fails = R.compare(got, ref, a.rtol, a.atol, out=sys.stderr)
        sys.exit(1 if fails else 0)


def main():
    ap = argparse.ArgumentParser(prog="ref_grpo.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("mkbatch")
    p.add_argument("policy")
    p.add_argument("out")
    p.add_argument("--model-xxh3", required=True)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--G", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--vocab", type=int, default=0)
    p.set_defaults(fn=cmd_mkbatch)
    p = sub.add_parser("step")
    p.add_argument("policy")
    p.add_argument("stream")
    p.add_argument("out_dir")
    p.add_argument("--ref")
    p.add_argument("--groups-per-step", type=int, default=4)
    p.add_argument("--num-iterations", "--epochs", dest="epochs", type=int, default=1)
    p.add_argument("--minibatches", type=int, default=1)
    p.add_argument("--agg", choices=["token", "seq", "const"], default="token")
    p.add_argument("--kl", choices=["k1", "k2", "k3"], default="k3")
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--eps-low", type=float, default=0.2)
    p.add_argument("--eps-high", type=float, default=0.2)
    p.add_argument("--adv-eps", type=float, default=1e-4)
    p.add_argument("--no-std-scale", action="store_true")
    p.add_argument("--drop-equal", action="store_true")
    p.add_argument("--mask-truncated", action="store_true")
    p.add_argument("--max-len", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--schedule", choices=["constant", "linear", "cosine"], default="constant")
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--adam-eps", "--eps", dest="eps", type=float, default=1e-8, help="AdamW eps (trainer.h --adam-eps)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--no-decay-norms-biases", action="store_true")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--compare", metavar="ST", help="then compare ST (rl-step's model.safetensors) "
                   "with the result, as ref_model.py compare does; exit 1 on a difference")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-5)
    p.set_defaults(fn=cmd_step)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
