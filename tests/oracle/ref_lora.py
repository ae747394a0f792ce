#!/usr/bin/python3
"""ref_lora.py: a PyTorch reference for srlm's LoRA adapters (tests only).

Wraps the projections of ref_model.py's Hugging Face-faithful model the way PEFT's lora.Linear
does (peft/tuners/lora/layer.py, Linear.forward):

    result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling,   scaling = lora_alpha / r
                                                                     (lora_alpha / sqrt(r) with use_rslora)

with dropout = identity (lora_dropout 0), and reads/writes the PEFT save_pretrained layout:
adapter_config.json + adapter_model.safetensors with tensors named
base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight (r, in) / .lora_B.weight (out, r).
PEFT's default init (init_lora_weights=True, LoraLayer.reset_lora_parameters) is
nn.init.kaiming_uniform_(lora_A.weight, a=sqrt(5)) and zeros for lora_B; merging
(merge_and_unload) is W += scaling * B @ A.

CLI (exit 0 ok, 1 a comparison failed, 64 usage, 65 bad data, 66 missing input):
  ref_lora.py init-adapter MODEL_DIR OUT_DIR --r R --alpha A --targets q,v,... --seed S
                           [--b-std 0.0] [--rslora] [--dtype f32|bf16] [--dropout 0.0]
  ref_lora.py forward  MODEL_DIR ADAPTER_DIR BATCH.json OUT.safetensors [--against C.safetensors --rtol]
                       logits, logprobs, loss, grad.<PEFT name> (base frozen)
  ref_lora.py adamw    MODEL_DIR ADAPTER_DIR BATCH.json OUT_DIR [--lr --weight-decay --clip --steps
                       --eps] [--against C_ADAPTER_DIR --rtol]     AdamW on the adapter only
  ref_lora.py merge    MODEL_DIR ADAPTER_DIR BATCH.json OUT_DIR [--against C_MERGED_DIR --rtol]
                       writes the merged model; with --against also checks C's merged weights and
                       that the logits of C's merged model equal torch's adapted logits; with
                       --c-logits ADAPTED.st MERGED.st (test-lora / test-lm forward outputs) that C's
                       merged logits equal C's adapted ones
  ref_lora.py check-files ADAPTER_DIR MODEL_DIR --r R --alpha A --targets q,v [--fresh] [--base NAME]
                       exact PEFT config keys, tensor names, shapes, dtype; --fresh: PEFT init
                       (|A| <= 1/sqrt(in), B == 0)
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model as R  # noqa: E402
import st_io  # noqa: E402

TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]
PREFIX = "base_model.model."


def die(code, msg):
    print(f"ref_lora: {msg}", file=sys.stderr)
    sys.exit(code)


def module_name(l, t):
    return f"model.layers.{l}.{'self_attn' if t in ('q', 'k', 'v', 'o') else 'mlp'}.{t}_proj"


def dims(cfg, t):
    """(in, out) features of projection t."""
    qd, kd = cfg.NH * cfg.hd, cfg.NKV * cfg.hd
    return {"q": (cfg.C, qd), "k": (cfg.C, kd), "v": (cfg.C, kd), "o": (qd, cfg.C),
            "gate": (cfg.C, cfg.ff), "up": (cfg.C, cfg.ff), "down": (cfg.ff, cfg.C)}[t]


def parse_targets(s):
    out = []
    for x in s.split(","):
        x = x[:-5] if x.endswith("_proj") else x
        if x not in TARGETS:
            die(64, f"unknown target {x!r}")
        out.append(x)
    return [t for t in TARGETS if t in out]


class Adapter:
    """r, alpha, rslora, targets and {module name: (A, B)} as leaf tensors (f32)."""

    def __init__(self, r, alpha, rslora, targets, mods):
        self.r, self.alpha, self.rslora, self.targets, self.mods = r, alpha, rslora, targets, mods
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r

    def params(self):
        """Leaf tensors in PEFT state_dict order (layer, target q..down, A then B)."""
        return [x for ab in self.mods.values() for x in ab]

    def state_dict(self):
        sd = {}
        for name, (A, B) in self.mods.items():
            sd[PREFIX + name + ".lora_A.weight"] = A.detach().float()
            sd[PREFIX + name + ".lora_B.weight"] = B.detach().float()
        return sd


def load_adapter(cfg, d, requires_grad=False):
    try:
        with open(os.path.join(d, "adapter_config.json")) as f:
            ac = json.load(f)
        sd = st_io.load_file(os.path.join(d, "adapter_model.safetensors"))
    except FileNotFoundError as e:
        die(66, str(e))
    targets = [t for t in TARGETS if f"{t}_proj" in ac["target_modules"]]
    mods = {}
    for l in range(cfg.L):
        for t in targets:
            n = module_name(l, t)
            A = sd[PREFIX + n + ".lora_A.weight"].float().clone().requires_grad_(requires_grad)
            B = sd[PREFIX + n + ".lora_B.weight"].float().clone().requires_grad_(requires_grad)
            mods[n] = (A, B)
    return Adapter(int(ac["r"]), float(ac["lora_alpha"]), bool(ac.get("use_rslora", False)), targets, mods)


def write_adapter(ad, d, base, dtype=torch.float32, dropout=0.0):
    os.makedirs(d, exist_ok=True)
    st_io.save_file({k: v.to(dtype) for k, v in ad.state_dict().items()},
                    os.path.join(d, "adapter_model.safetensors"), {"format": "pt"})
    # What peft 0.13+ LoraConfig.save_pretrained writes for plain LoRA (inert keys included, so
    # that the C loader sees a realistic file).
    ac = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": base, "bias": "none",
          "eva_config": None, "exclude_modules": None, "fan_in_fan_out": False, "inference_mode": True,
          "init_lora_weights": True, "layer_replication": None, "layers_pattern": None,
          "layers_to_transform": None, "loftq_config": {}, "lora_alpha": ad.alpha, "lora_bias": False,
          "lora_dropout": dropout, "megatron_config": None, "megatron_core": "megatron.core",
          "modules_to_save": None, "peft_type": "LORA", "r": ad.r, "rank_pattern": {}, "revision": None,
          "target_modules": [f"{t}_proj" for t in reversed(ad.targets)], "task_type": "CAUSAL_LM",
          "use_dora": False, "use_rslora": ad.rslora}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(ac, f, indent=2, sort_keys=True)


def install(ad):
    """Makes ref_model's projections LoRA-adapted (PEFT lora.Linear.forward)."""
    base_linear = R.linear

    def linear(x, P, name, has_bias):
        y = base_linear(x, P, name, has_bias)
        ab = ad.mods.get(name) if ad is not None else None
        if ab is not None:
            A, B = ab
            y = y + F.linear(F.linear(x, A), B) * ad.scaling
        return y
    R.linear = linear
    return base_linear


def load_batch(path, V):
    try:
        return R.check_batch(R.read_json(path), V, path)
    except R.DataError as e:
        die(65, str(e))


def forward(cfg, P, ad, seqs, masks):
    base = install(ad)
    try:
        return R.compute_forward(cfg, P, seqs, masks)
    finally:
        R.linear = base


def check_against(mine, theirs_path, rtol, what):
    """theirs (C) against mine (the reference). Returns the number of failures."""
    theirs = R.load_tensors(theirs_path)
    fails = R.compare(theirs, mine, rtol, 1e-6)
    if fails:
        print(f"ref_lora: {what}: {fails} tensors differ", file=sys.stderr)
    return fails


# ---------------------------------------------------------------------------------------------


def cmd_init_adapter(a):
    cfg = R.load_config(os.path.join(a.model_dir, "config.json"))
    targets = parse_targets(a.targets)
    torch.manual_seed(a.seed)
    mods = {}
    for l in range(cfg.L):
        for t in targets:
            i, o = dims(cfg, t)
            A = torch.empty(a.r, i)
            torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))   # PEFT reset_lora_parameters
            B = a.b_std * torch.randn(o, a.r) if a.b_std > 0 else torch.zeros(o, a.r)
            mods[module_name(l, t)] = (A, B)
    ad = Adapter(a.r, a.alpha, a.rslora, targets, mods)
    write_adapter(ad, a.out_dir, a.model_dir, R.DTYPES[a.dtype], a.dropout)


def cmd_forward(a):
    cfg, P = R.load_model(a.model_dir, torch.float32)
    ad = load_adapter(cfg, a.adapter_dir, requires_grad=True)
    seqs, masks = load_batch(a.batch, cfg.V)
    logits, lp, loss = forward(cfg, P, ad, seqs, masks)
    loss.backward()
    out = {"logits": logits.detach(), "logprobs": lp.detach(), "loss": loss.detach().reshape(1)}
    for name, (A, B) in ad.mods.items():
        out["grad." + PREFIX + name + ".lora_A.weight"] = A.grad
        out["grad." + PREFIX + name + ".lora_B.weight"] = B.grad
    st_io.save_file(out, a.out)
    if a.against:
        sys.exit(1 if check_against(out, a.against, a.rtol, "forward/backward") else 0)


def cmd_adamw(a):
    cfg, P = R.load_model(a.model_dir, torch.float32)
    ad = load_adapter(cfg, a.adapter_dir, requires_grad=True)
    seqs, masks = load_batch(a.batch, cfg.V)
    params = ad.params()
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=a.eps, weight_decay=a.weight_decay,
                            foreach=False)
    for step in range(a.steps):
        opt.zero_grad(set_to_none=False)
        _, _, loss = forward(cfg, P, ad, seqs, masks)
        loss.backward()
        if a.clip > 0:
            gn = torch.nn.utils.clip_grad_norm_(params, a.clip)
        else:
            gn = torch.norm(torch.stack([p.grad.detach().norm(2) for p in params]), 2)
        opt.step()
        print(json.dumps({"step": step + 1, "loss": loss.item(), "grad_norm": gn.item()}), flush=True)
    write_adapter(ad, a.out_dir, a.model_dir)
    if a.against:
        mine = R.load_tensors(os.path.join(a.out_dir, "adapter_model.safetensors"))
        sys.exit(1 if check_against(mine, os.path.join(a.against, "adapter_model.safetensors"), a.rtol,
                                    "adapters after AdamW") else 0)


def cmd_merge(a):
    cfg, P = R.load_model(a.model_dir, torch.float32)
    ad = load_adapter(cfg, a.adapter_dir)
    seqs, masks = load_batch(a.batch, cfg.V)
    with torch.no_grad():
        adapted, _, _ = forward(cfg, P, ad, seqs, masks)
        merged = dict(P)
        for name, (A, B) in ad.mods.items():
            merged[name + ".weight"] = P[name + ".weight"] + (B @ A) * ad.scaling   # PEFT get_delta_weight
    os.makedirs(a.out_dir, exist_ok=True)
    st_io.save_file({n: t.detach().float() for n, t in merged.items()}, os.path.join(a.out_dir, "model.safetensors"),
                    {"format": "pt"})
    shutil.copyfile(os.path.join(a.model_dir, "config.json"), os.path.join(a.out_dir, "config.json"))
    if not a.against:
        return
    fails = 0
    theirs = R.load_tensors(a.against)
    print("# C merged weights vs torch merged weights")
    fails += R.compare(theirs, {n: t.detach() for n, t in merged.items()}, a.rtol, 1e-6)
    with torch.no_grad():
        _, PC = R.load_model(a.against, torch.float32)
        c_logits = R.forward_packed(cfg, PC, seqs)
        t_logits = R.forward_packed(cfg, merged, seqs)
    print("# logits of C's merged model vs torch's adapted model")
    fails += R.compare({"logits": c_logits}, {"logits": adapted}, a.rtol, 1e-6)
    print("# logits of torch's merged model vs torch's adapted model")
    fails += R.compare({"logits": t_logits}, {"logits": adapted}, a.rtol, 1e-6)
    if a.c_logits:
        print("# C: logits, log-probs, loss of the merged model vs the adapted model")
        fails += R.compare(R.load_tensors(a.c_logits[1]), R.load_tensors(a.c_logits[0]), a.rtol, 1e-6,
                           names_re="^(logits|logprobs|loss)$")
    sys.exit(1 if fails else 0)


def cmd_check_files(a):
    cfg = R.load_config(os.path.join(a.model_dir, "config.json"))
    errs = []
    with open(os.path.join(a.adapter_dir, "adapter_config.json")) as f:
        ac = json.load(f)
    targets = parse_targets(a.targets)
    want = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": a.r, "lora_alpha": a.alpha, "bias": "none",
            "lora_dropout": 0, "fan_in_fan_out": False, "use_rslora": False,
            "target_modules": [f"{t}_proj" for t in targets]}
    if a.base is not None:
        want["base_model_name_or_path"] = a.base
    for k, v in want.items():
        if k not in ac:
            errs.append(f"adapter_config.json: {k} missing")
        elif ac[k] != v or type(ac[k]) is bool and type(v) is not bool:
            errs.append(f"adapter_config.json: {k} = {ac[k]!r}, want {v!r}")
    path = os.path.join(a.adapter_dir, "adapter_model.safetensors")
    hdr, meta, _ = st_io.read_header(path)
    names = {}
    for l in range(cfg.L):
        for t in targets:
            i, o = dims(cfg, t)
            names[PREFIX + module_name(l, t) + ".lora_A.weight"] = [a.r, i]
            names[PREFIX + module_name(l, t) + ".lora_B.weight"] = [o, a.r]
    for n in sorted(set(hdr) ^ set(names)):
        errs.append(f"{path}: tensor {n} {'unexpected' if n in hdr else 'missing'}")
    for n in sorted(set(hdr) & set(names)):
        if hdr[n]["shape"] != names[n] or hdr[n]["dtype"] != "F32":
            errs.append(f"{path}: {n}: {hdr[n]['dtype']}{hdr[n]['shape']}, want F32{names[n]}")
    if meta.get("format") != "pt":
        errs.append(f"{path}: metadata format = {meta.get('format')!r}, want 'pt'")
    if a.fresh:
        sd = st_io.load_file(path)
        for n, t in sd.items():
            if n.endswith("lora_B.weight") and t.abs().max().item() != 0:
                errs.append(f"{n}: not zero (PEFT init)")
            if n.endswith("lora_A.weight"):
                bound = 1 / math.sqrt(t.shape[1])
                if t.abs().max().item() > bound or t.abs().max().item() < 0.9 * bound:
                    errs.append(f"{n}: max |A| {t.abs().max().item():.4g}, want just under {bound:.4g}")
                # U(-b, b): std b/sqrt(3)
                s = t.double().std().item()
                if t.numel() >= 64 and abs(s / (bound / math.sqrt(3)) - 1) > 0.25:
                    errs.append(f"{n}: std {s:.4g}, kaiming_uniform(a=sqrt(5)) gives {bound / math.sqrt(3):.4g}")
    for e in errs:
        print(f"ref_lora: {e}", file=sys.stderr)
    print(f"check-files: {len(names)} tensors, {len(errs)} problems")
    sys.exit(1 if errs else 0)


def main():
    ap = R.Parser(prog="ref_lora.py")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=R.Parser)
    p = sub.add_parser("init-adapter")
    p.add_argument("model_dir"), p.add_argument("out_dir")
    p.add_argument("--r", type=int, required=True)
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--targets", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--b-std", type=float, default=0.0)
    p.add_argument("--rslora", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.set_defaults(fn=cmd_init_adapter)
    p = sub.add_parser("forward")
    for x in ("model_dir", "adapter_dir", "batch", "out"):
        p.add_argument(x)
    p.add_argument("--against")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.set_defaults(fn=cmd_forward)
    p = sub.add_parser("adamw")
    for x in ("model_dir", "adapter_dir", "batch", "out_dir"):
        p.add_argument(x)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--adam-eps", "--eps", dest="eps", type=float, default=1e-8)
    p.add_argument("--against")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.set_defaults(fn=cmd_adamw)
    p = sub.add_parser("merge")
    for x in ("model_dir", "adapter_dir", "batch", "out_dir"):
        p.add_argument(x)
    p.add_argument("--against")
    p.add_argument("--c-logits", nargs=2, metavar=("ADAPTED", "MERGED"))
    p.add_argument("--rtol", type=float, default=1e-4)
    p.set_defaults(fn=cmd_merge)
    p = sub.add_parser("check-files")
    p.add_argument("adapter_dir"), p.add_argument("model_dir")
    p.add_argument("--r", type=int, required=True)
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--targets", required=True)
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--base")
    p.set_defaults(fn=cmd_check_files)
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.fn(a)


if __name__ == "__main__":
    main()
