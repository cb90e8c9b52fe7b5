#!/usr/bin/env python3
"""Write a PyTorch-Lightning-style checkpoint (torch.save zip format) from a safetensors file,
with the Python standard library only (no torch), for tests of checkpoint import.

usage: make_ckpt.py IN.safetensors OUT.ckpt [--ema] [--reshape NAME]
  --ema          store the weights also as `model_ema.<name without dots>`, with the regular
                 copies scaled by 0.5 (so loading EMA vs. regular weights is observable)
  --reshape NAME store tensor NAME flattened to 1-d (a wrongly shaped tensor)
"""
import collections, io, json, pickle, struct, sys, types, zipfile

def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = collections.OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info["dtype"]
        a, b = info["data_offsets"]
        out[name] = (info["shape"], data[8 + n + a: 8 + n + b])
    return out

# Stand-ins for the torch globals that a checkpoint pickle names.
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
class FloatStorage: pass
FloatStorage.__module__ = "torch"
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage = FloatStorage
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"] = torch
sys.modules["torch._utils"] = utils

class Storage:
    def __init__(self, key, numel): self.key, self.numel = key, numel

class Tensor:
    def __init__(self, storage, shape): self.storage, self.shape = storage, shape
    def __reduce__(self):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc); acc *= d
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))

class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None

def main():
    args = sys.argv[1:]
    ema = "--ema" in args
    reshape = args[args.index("--reshape") + 1] if "--reshape" in args else None
    src, dst = [a for a in args if not a.startswith("--") and a != reshape][:2]
    tensors = read_safetensors(src)
    blobs, state = {}, collections.OrderedDict()
    def add(name, shape, raw):
        key = str(len(blobs))
        blobs[key] = raw
        state[name] = Tensor(Storage(key, len(raw) // 4), shape)
    for name, (shape, raw) in tensors.items():
        if name == reshape:
            shape = [int(len(raw) // 4)]
        if ema:
            vals = struct.unpack("<%df" % (len(raw) // 4), raw)
            add(name, shape, struct.pack("<%df" % len(vals), *[v * 0.5 for v in vals]))
            add("model_ema." + name.replace(".", ""), shape, raw)
        else:
            add(name, shape, raw)
    ckpt = {"epoch": 1, "global_step": 10, "state_dict": state}
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(ckpt)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/version", "3\n")
        for key, raw in blobs.items():
            z.writestr("archive/data/" + key, raw)

if __name__ == "__main__":
    main()
