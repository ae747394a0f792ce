#!/usr/bin/python3
"""ref_sample.py: checks rollout and teacher-logits output against the PyTorch reference model
(tests/oracle/ref_model.py) — tests only.

  ref_sample.py samples MODEL_DIR SAMPLES.jsonl [--tol 1e-4] [--greedy --max-new-tokens N --eos ID...]
      For every sample record (to-json lines of a srlm.samples stream): its logprobs equal
      log_softmax of the reference forward's logits (temperature 1, full vocabulary) at the
      completion tokens, within tol; the mask is 1 exactly on the completion. With --greedy, the
      completion is also the reference's greedy continuation of the prompt token for token
      (argmax, stop after an --eos id, at most N tokens).
  ref_sample.py teacher MODEL_DIR RECORDS.jsonl[:K:T]... [--top-k K] [--temperature T] [--vocab-limit N] [--tol 1e-4]
      For every record: teacher_ids / teacher_logprobs equal the top-K (over ids < N) of
      log_softmax(logits / T) over all V logits of the reference forward, at every position t with
      mask[t] = 1 (predicted from row t-1). Several files may be checked in one run (torch starts
      once), each with its own K and T after colons.
Prints one JSON summary line; exits 0 if everything matched, 1 otherwise (the first mismatches on
stderr), 65 on bad input.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model  # noqa: E402


def records(path):
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") not in ("header", "end"):
                yield r


def tensor(obj, name):
    if not isinstance(obj, dict) or "data" not in obj or "shape" not in obj:
        print(f"ref_sample: field {name} is not a decoded tensor", file=sys.stderr)
        sys.exit(65)
    return torch.tensor(obj["data"], dtype=torch.float64).reshape(obj["shape"])


class Report:
    def __init__(self):
        self.bad = 0
        self.n = 0
        self.max_err = 0.0

    def fail(self, msg):
        self.bad += 1
        if self.bad <= 5:
            print(f"ref_sample: {msg}", file=sys.stderr)


@torch.no_grad()
def cmd_samples(a, cfg, P, rep):
    for r in records(a.file):
        toks, mask, pl = r["tokens"], r["mask"], r["prompt_len"]
        comp = toks[pl:]
        where = f"id {r['id']} sample {r['sample']}"
        if mask != [0] * pl + [1] * len(comp):
            rep.fail(f"{where}: mask is not 1 exactly on the completion")
        lp = tensor(r["logprobs"], "logprobs")
        if lp.shape != (len(comp),):
            rep.fail(f"{where}: logprobs shape {list(lp.shape)} for {len(comp)} completion tokens")
            continue
        logits = ref_model.forward_separate(cfg, P, [toks]).double()
        ref = torch.log_softmax(logits, -1)
        for i, t in enumerate(comp):
            err = abs(ref[pl + i - 1, t].item() - lp[i].item())
            rep.max_err = max(rep.max_err, err)
            rep.n += 1
            if err > a.tol:
                rep.fail(f"{where}: token {i}: logprob {lp[i].item():.7g}, reference {ref[pl + i - 1, t].item():.7g}")
        if a.greedy:
            want, _ = ref_model.generate(cfg, P, [toks[:pl]], a.max_new_tokens, set(a.eos or []))
            if comp != want[0]:
                rep.fail(f"{where}: greedy completion {comp}, reference {want[0]}")


def cmd_teacher(a, cfg, P, rep):
    for spec in a.file:
        parts = spec.split(":")
        if len(parts) == 3:
            teacher_file(a, cfg, P, rep, parts[0], int(parts[1]), float(parts[2]))
        elif a.top_k:
            teacher_file(a, cfg, P, rep, spec, a.top_k, a.temperature)
        else:
            print("ref_sample: teacher needs --top-k or FILE:K:T", file=sys.stderr)
            sys.exit(64)


@torch.no_grad()
def teacher_file(a, cfg, P, rep, path, K, T):
    limit = a.vocab_limit or cfg.V
    for r in records(path):
        toks, mask = r["tokens"], r["mask"]
        where = f"id {r.get('id')}"
        rows = [t - 1 for t in range(len(toks)) if mask[t]]
        ids, lps = tensor(r["teacher_ids"], "teacher_ids"), tensor(r["teacher_logprobs"], "teacher_logprobs")
        if ids.shape != (len(rows), K) or lps.shape != (len(rows), K):
            rep.fail(f"{where}: teacher tensors {list(ids.shape)}, {list(lps.shape)}; want [{len(rows)}, {K}]")
            continue
        if not rows:
            continue
        logits = ref_model.forward_separate(cfg, P, [toks]).double()
        lp = torch.log_softmax(logits[rows] / T, -1)           # over all V logits
        top = torch.topk(lp[:, :limit], K, dim=-1)             # ids beyond the limit excluded
        for m in range(len(rows)):
            got_ids = [int(x) for x in ids[m].tolist()]
            want_ids = top.indices[m].tolist()
            if got_ids != want_ids:
                # a tie or near-tie may order two ids differently: compare the values then
                if sorted(got_ids) != sorted(want_ids) or any(i >= limit for i in got_ids):
                    rep.fail(f"{where}: row {m}: ids {got_ids}, reference {want_ids}")
                    continue
            for k in range(K):
                err = abs(lps[m, k].item() - lp[m, got_ids[k]].item())
                rep.max_err = max(rep.max_err, err)
                rep.n += 1
                if err > a.tol:
                    rep.fail(f"{where}: row {m} id {got_ids[k]}: logprob {lps[m, k].item():.7g}, "
                             f"reference {lp[m, got_ids[k]].item():.7g}")


def main():
    p = argparse.ArgumentParser(prog="ref_sample.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("samples")
    s.add_argument("model_dir")
    s.add_argument("file")
    s.add_argument("--tol", type=float, default=1e-4)
    s.add_argument("--greedy", action="store_true")
    s.add_argument("--max-new-tokens", type=int, default=0)
    s.add_argument("--eos", type=int, action="append")
    t = sub.add_parser("teacher")
    t.add_argument("model_dir")
    t.add_argument("file", nargs="+")
    t.add_argument("--top-k", type=int, default=0)
    t.add_argument("--temperature", type=float, default=1.0)
    t.add_argument("--vocab-limit", type=int, default=0)
    t.add_argument("--tol", type=float, default=1e-4)
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg, P = ref_model.load_model(a.model_dir, torch.float32)
    rep = Report()
    (cmd_samples if a.cmd == "samples" else cmd_teacher)(a, cfg, P, rep)
    print(json.dumps({"checked": rep.n, "max_err": rep.max_err, "mismatches": rep.bad}))
    sys.exit(1 if rep.bad or rep.n == 0 else 0)


if __name__ == "__main__":
    main()
