"""st_io.py: a small private safetensors reader/writer for the PyTorch reference (tests only).

Format (https://huggingface.co/docs/safetensors): u64 little-endian header length N, then N bytes of
JSON {name: {"dtype": "F32"|"BF16"|..., "shape": [...], "data_offsets": [begin, end]}, "__metadata__":
{...}?}, then the raw little-endian data; offsets are relative to the first byte after the header.
numpy has no bfloat16, so BF16 goes through int16/int32 bit views.

Also reads a Hugging Face model directory: model.safetensors, or the shards listed in
model.safetensors.index.json ("weight_map": {name: file}).
"""
import json
import os
import struct

import numpy as np
import torch

_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
         "BOOL": 1}
_TORCH2ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
             torch.uint8: "U8", torch.bool: "BOOL"}


class FormatError(Exception):
    pass


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, data start offset)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise FormatError(f"{path}: shorter than 8 bytes")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8 or n > 100 << 20:
            raise FormatError(f"{path}: header length {n} does not fit the file ({size} bytes)")
        hdr = json.loads(f.read(n).decode("utf-8"))
    meta = hdr.pop("__metadata__", None) or {}
    data_len = size - 8 - n
    for name, t in hdr.items():
        dt = t["dtype"]
        if dt not in _SIZE:
            raise FormatError(f"{path}: tensor {name}: unsupported dtype {dt}")
        b, e = t["data_offsets"]
        count = 1
        for s in t["shape"]:
            count *= s
        if not (0 <= b <= e <= data_len) or e - b != count * _SIZE[dt]:
            raise FormatError(f"{path}: tensor {name}: bad data_offsets {b}..{e} for "
                              f"{dt}{t['shape']} (data section {data_len} bytes)")
    return hdr, meta, 8 + n


def _decode(buf, dtype, shape):
    if dtype == "BF16":
        u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
        arr = u.view(np.float32)
        return torch.from_numpy(arr.copy()).reshape(shape).to(torch.bfloat16)
    arr = np.frombuffer(buf, dtype=np.dtype(_NP[dtype]).newbyteorder("<"))
    return torch.from_numpy(arr.astype(_NP[dtype]).copy()).reshape(shape)


def load_file(path, names=None):
    """Returns {name: torch tensor in the file's own dtype} (in file order)."""
    hdr, _, start = read_header(path)
    out = {}
    with open(path, "rb") as f:
        for name, t in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if names is not None and name not in names:
                continue
            b, e = t["data_offsets"]
            f.seek(start + b)
            out[name] = _decode(f.read(e - b), t["dtype"], list(t["shape"]))
    return out


def save_file(tensors, path, metadata=None):
    """tensors: {name: torch tensor}; written in the given order, each in its own dtype."""
    hdr = {}
    if metadata:
        hdr["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    off = 0
    blobs = []
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        dt = _TORCH2ST[t.dtype]
        if dt == "BF16":
            data = t.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            data = t.numpy().astype(np.dtype(_NP[dt]).newbyteorder("<")).tobytes()
        hdr[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # pad so the data section starts 8-aligned, as HF does
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_model_dir(d):
    """All tensors of a HF model directory (single file or sharded with an index)."""
    single = os.path.join(d, "model.safetensors")
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(single):
        return load_file(single)
    if os.path.exists(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            want = {n for n, s in wm.items() if s == shard}
            got = load_file(os.path.join(d, shard), want)
            missing = want - set(got)
            if missing:
                raise FormatError(f"{shard}: index lists tensors not in the shard: {sorted(missing)[:3]}")
            out.update(got)
        return out
    raise FileNotFoundError(f"{d}: no model.safetensors or model.safetensors.index.json")


def save_model_dir(tensors, d, shards=1):
    """Writes model.safetensors, or `shards` files model-0000i-of-0000N.safetensors + index."""
    os.makedirs(d, exist_ok=True)
    if shards <= 1:
        save_file(tensors, os.path.join(d, "model.safetensors"), {"format": "pt"})
        return
    names = list(tensors)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    # split into `shards` contiguous groups of roughly equal byte size (every shard non-empty)
    groups, cur, acc = [], [], 0
    for i, n in enumerate(names):
        cur.append(n)
        acc += tensors[n].numel() * tensors[n].element_size()
        left_names, left_groups = len(names) - i - 1, shards - len(groups) - 1
        if left_groups > 0 and (acc >= total * (len(groups) + 1) / shards or left_names == left_groups):
            groups.append(cur)
            cur = []
    groups.append(cur)
    groups = [g for g in groups if g]
    wm = {}
    for k, g in enumerate(groups):
        fn = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: tensors[n] for n in g}, os.path.join(d, fn), {"format": "pt"})
        for n in g:
            wm[n] = fn
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
