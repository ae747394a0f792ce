#!/usr/bin/python3
"""ref_train.py: a PyTorch reference of sft-step (tests only), on top of ref_model.py's model.

  ref_train.py sft MODEL_DIR STREAM OUT_DIR [--steps N] [--lr X] [--weight-decay X] [--clip X]
               [--beta1 X --beta2 X --eps X] [--batch-tokens N] [--grad-accum M]
               [--loss ce|fkl|rkl|jsd] [--kd-beta B] [--kd-temperature T] [--kd-alpha A]
               [--max-len N] [--truncate] [--dtype f32|f64] [--threads N]
      N optimizer steps of sft-step's definition, constant learning rate, on the examples of a
      srlm.examples stream (msgpack, read with python3-msgpack): the steps are formed as sft-step
      forms them (records in order, packed greedily into --grad-accum micro-batches of at most
      --batch-tokens tokens; records without a trained token skipped), but each step is computed
      here as ONE batch (every sequence separately), so the C micro-batch split is checked
      against the plain definition:
        CE  = -(1/W) sum over the step's W trained tokens of log p(token)
        KD  = (1/W) sum over the trained positions of D(P, Q), P = softmax over the teacher's K ids
              of teacher_logprobs * tau / T, Q = softmax over the same ids of the student's
              log_softmax(logits / T) there; D = KL(P||Q) | KL(Q||P) |
              beta KL(P||M) + (1-beta) KL(Q||M), M = beta P + (1-beta) Q  (written from the
              definitions, autograd for the gradient)
        loss = CE (ce) or A*CE + (1-A)*T^2*KD
      then torch.nn.utils.clip_grad_norm_ and torch.optim.AdamW with two groups: weight decay on
      the 2-d weights, none on biases and norm weights. Prints {"step","loss","ce","kd",
      "grad_norm","tokens"} per step; writes OUT_DIR/model.safetensors (f32) + config.json.

  ref_train.py compare A B [--rtol X] [--atol X]
      ref_model.py compare (same output), ending with a line "RESULT ok" or "RESULT FAIL".

  ref_train.py multi FILE
      Runs several commands in one process (torch is slow to import): each line of FILE holds
      the arguments of one "sft" or "teacher" command, split like a shell would (shlex), with
      " > PATH" at the end to send that command's output to PATH.

  ref_train.py teacher MODEL_DIR IN_STREAM OUT_STREAM --top-k K [--temperature TAU]
               [--tokenizer-xxh3 HEX] [--dtype f32|f64]
      Adds teacher_ids / teacher_logprobs (docs/stream.md) to every example: the top-K ids of
      log_softmax(logits / TAU) over the full vocabulary at each trained position (ties: smaller
      id first), and header teacher {model_xxh3: "reference", tokenizer_xxh3, vocab_size, top_k,
      temperature}. tokenizer_xxh3 defaults to the stream's own. A stand-in for teacher-logits.
"""
import argparse
import json
import math
import contextlib
import os
import shlex
import shutil
import struct
import sys

import msgpack
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model as rm  # noqa: E402
import st_io  # noqa: E402


def die(code, msg):
    print(f"ref_train: {msg}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# streams

def read_stream(path):
    with open(path, "rb") as f:
        recs = list(msgpack.Unpacker(f, raw=False, strict_map_key=False))
    if not recs or recs[0].get("kind") != "header" or recs[-1].get("kind") != "end":
        die(65, f"{path}: not a framed srlm stream")
    return recs[0], recs[1:-1]


def tensor(t):
    """A stream tensor map -> (list of values, shape)."""
    n = math.prod(t["shape"])
    fmt = {"f32": "f", "i32": "i"}[t["dtype"]]
    return list(struct.unpack("<%d%s" % (n, fmt), t["data"])), t["shape"]


def pack_tensor(vals, shape, dtype):
    fmt = {"f32": "f", "i32": "i"}[dtype]
    return {"dtype": dtype, "shape": list(shape), "data": struct.pack("<%d%s" % (len(vals), fmt), *vals)}


def header_find(h, key):
    while isinstance(h, dict):
        if key in h:
            return h[key]
        h = h.get("upstream")
    return None


# ---------------------------------------------------------------------------------------------
# sft

def form_steps(recs, batch_tokens, grad_accum, max_len, truncate):
    """sft-step's step formation: lists of examples (tokens, mask, teacher ids, teacher lp)."""
    steps, cur, nmb, mbt = [], [], 0, 0
    for r in recs:
        toks, mask = list(r["tokens"]), list(r["mask"])
        P_all = sum(mask)
        if len(toks) > max_len:
            if not truncate:
                die(65, "record longer than --max-len")
            toks, mask = toks[:max_len], mask[:max_len]
        P = sum(mask)
        if P == 0:
            continue
        ex = {"tokens": toks, "mask": mask}
        if "teacher_ids" in r:
            ids, shp = tensor(r["teacher_ids"])
            lps, _ = tensor(r["teacher_logprobs"])
            K = shp[1]
            assert shp[0] == P_all
            ex["tids"] = torch.tensor(ids[:P * K]).reshape(P, K)
            ex["tlp"] = torch.tensor(lps[:P * K], dtype=torch.float64).reshape(P, K)
        n = len(toks)
        fits = not cur or mbt + n <= batch_tokens or nmb < grad_accum
        if not fits:
            steps.append(cur)
            cur, nmb, mbt = [], 0, 0
        if not cur or mbt + n > batch_tokens:
            nmb, mbt = nmb + 1, 0
        cur.append(ex)
        mbt += n
    if cur:
        steps.append(cur)
    return steps


def kd_div(kind, beta, lp, lq):
    """Per-position divergence from log-probabilities (rows), by the definitions."""
    p, q = lp.exp(), lq.exp()
    if kind == "fkl":
        return (p * (lp - lq)).sum(-1)
    if kind == "rkl":
        return (q * (lq - lp)).sum(-1)
    m = beta * p + (1 - beta) * q
    lm = m.log()
    return beta * (p * (lp - lm)).sum(-1) + (1 - beta) * (q * (lq - lm)).sum(-1)


def step_loss(cfg, P, step, a, tau):
    W = sum(sum(ex["mask"]) for ex in step)
    ce = torch.zeros((), dtype=next(iter(P.values())).dtype)
    kd = torch.zeros_like(ce)
    for ex in step:
        toks = ex["tokens"]
        logits = rm.forward_separate(cfg, P, [toks])
        rows = [t - 1 for t in range(1, len(toks)) if ex["mask"][t]]
        ids = [toks[t] for t in range(1, len(toks)) if ex["mask"][t]]
        z = logits[torch.tensor(rows)]
        lp = torch.log_softmax(z, -1)
        ce = ce - lp[torch.arange(len(ids)), torch.tensor(ids)].sum()
        if a.loss != "ce":
            T = a.kd_temperature
            sl = torch.log_softmax(z / T, -1).gather(1, ex["tids"].long())
            lq = torch.log_softmax(sl, -1)
            lpt = torch.log_softmax(ex["tlp"].to(z.dtype) * (tau / T), -1)
            kd = kd + kd_div(a.loss, a.kd_beta, lpt, lq).sum()
    ce, kd = ce / W, kd / W
    if a.loss == "ce":
        return ce, ce, kd, W
    T = a.kd_temperature
    return a.kd_alpha * ce + (1 - a.kd_alpha) * T * T * kd, ce, kd, W


def cmd_sft(a):
    rm.set_threads(a.threads)
    dtype = rm.DTYPES[a.dtype]
    cfg, P = rm.load_model(a.model_dir, dtype, requires_grad=True)
    hdr, recs = read_stream(a.stream)
    tau = 1.0
    te = header_find(hdr, "teacher")
    if te and "temperature" in te:
        tau = float(te["temperature"])
    max_len = a.max_len or min(a.batch_tokens, int(cfg.raw.get("max_position_embeddings", 1 << 30)))
    steps = form_steps(recs, a.batch_tokens, a.grad_accum, max_len, a.truncate)
    names = list(P)
    groups = [{"params": [P[n] for n in names if P[n].dim() >= 2], "weight_decay": a.weight_decay},
              {"params": [P[n] for n in names if P[n].dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, foreach=False)
    params = list(P.values())
    for s in range(min(a.steps, len(steps))):
        opt.zero_grad(set_to_none=False)
        loss, ce, kd, W = step_loss(cfg, P, steps[s], a, tau)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, a.clip) if a.clip > 0 else \
            torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
        opt.step()
        print(json.dumps({"step": s + 1, "loss": loss.item(), "ce": ce.item(), "kd": kd.item(),
                          "grad_norm": gn.item(), "tokens": W}), flush=True)
    os.makedirs(a.out_dir, exist_ok=True)
    st_io.save_file({n: t.detach().float() for n, t in P.items()},
                    os.path.join(a.out_dir, "model.safetensors"), {"format": "pt"})
    shutil.copyfile(os.path.join(a.model_dir, "config.json"), os.path.join(a.out_dir, "config.json"))


# ---------------------------------------------------------------------------------------------
# teacher

@torch.no_grad()
def cmd_teacher(a):
    rm.set_threads(a.threads)
    cfg, P = rm.load_model(a.model_dir, rm.DTYPES[a.dtype])
    hdr, recs = read_stream(a.stream)
    tok = a.tokenizer_xxh3 or header_find(hdr, "tokenizer_xxh3")
    out = []
    for r in recs:
        toks, mask = r["tokens"], r["mask"]
        logits = rm.forward_separate(cfg, P, [toks])
        rows = [t - 1 for t in range(len(toks)) if mask[t]]
        lp = torch.log_softmax(logits[torch.tensor(rows, dtype=torch.long)] / a.temperature, -1) \
            if rows else torch.zeros(0, cfg.V, dtype=logits.dtype)
        # top-k, ties to the smaller id: sort by (-value, id)
        ids, vals = [], []
        for row in lp:
            order = sorted(range(cfg.V), key=lambda j: (-row[j].item(), j))[:a.top_k]
            ids += order
            vals += [row[j].item() for j in order]
        r = dict(r)
        r["teacher_ids"] = pack_tensor(ids, (len(rows), a.top_k), "i32")
        r["teacher_logprobs"] = pack_tensor(vals, (len(rows), a.top_k), "f32")
        out.append(r)
    h = {"kind": "header", "schema": "srlm.examples", "schema_version": 1,
         "producer": {"name": "ref_train.py", "version": "1"}, "upstream": hdr,
         "teacher": {"model_xxh3": "reference", "tokenizer_xxh3": tok, "vocab_size": cfg.V,
                     "top_k": a.top_k, "temperature": a.temperature}}
    with open(a.out, "wb") as f:
        f.write(msgpack.packb(h))
        for r in out:
            f.write(msgpack.packb(r))
        f.write(msgpack.packb({"kind": "end", "records": len(out)}))


def cmd_compare(a):
    fails = rm.compare(rm.load_tensors(a.a), rm.load_tensors(a.b), a.rtol, a.atol)
    print("RESULT FAIL" if fails else "RESULT ok")


def cmd_multi(a):
    ap = parser()
    with open(a.file) as f:
        for line in f:
            words = shlex.split(line)
            if not words:
                continue
            out = None
            if len(words) >= 2 and words[-2] == ">":
                out, words = words[-1], words[:-2]
            sub = ap.parse_args(words)
            with open(out, "w") if out else contextlib.nullcontext(sys.stdout) as f_out:
                with contextlib.redirect_stdout(f_out):
                    COMMANDS[sub.cmd](sub)


def parser():
    ap = argparse.ArgumentParser(prog="ref_train.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sft")
    p.add_argument("model_dir")
    p.add_argument("stream")
    p.add_argument("out_dir")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--adam-eps", "--eps", dest="eps", type=float, default=1e-8)
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-len", type=int, default=0)
    p.add_argument("--truncate", action="store_true")
    p.add_argument("--loss", choices=["ce", "fkl", "rkl", "jsd"], default="ce")
    p.add_argument("--kd-beta", type=float, default=0.5)
    p.add_argument("--kd-temperature", type=float, default=1.0)
    p.add_argument("--kd-alpha", type=float, default=0.0)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f64")
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("teacher")
    p.add_argument("model_dir")
    p.add_argument("stream")
    p.add_argument("out")
    p.add_argument("--top-k", type=int, required=True)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--tokenizer-xxh3")
    p.add_argument("--dtype", choices=["f32", "f64"], default="f64")
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("compare")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-5)
    p = sub.add_parser("multi")
    p.add_argument("file")
    return ap


COMMANDS = {"sft": cmd_sft, "teacher": cmd_teacher, "compare": cmd_compare, "multi": cmd_multi}


def main():
    a = parser().parse_args()
    COMMANDS[a.cmd](a)


if __name__ == "__main__":
    main()
