#!/usr/bin/env python3
"""PyTorch side of the mergevq speed benchmark: times the authors' own MergeVQ code.

    python bench/reference.py --ref /work/ref/MergeVQ [--device cpu|cuda] [--threads N]
                              [--runs 5] [--only PREFIX[,PREFIX...]] --json out.json

The reference code (github.com/ApexGen-X/MergeVQ) is imported from --ref (sys.path); none of
it is copied here. Models get random weights (torch.manual_seed(0)); nothing is downloaded.
Each benchmark: 1 warm-up, then the median of --runs timed runs (torch.cuda.synchronize()
around each run on cuda). If the warm-up of one benchmark takes longer than --slow-s (60 s),
that benchmark uses min(runs, 3) timed runs and says so ("runs_reduced": true).

Benchmarks (names are matched by the Rust side):
  tokenizer.{GR_d64,G_d64}.b{1,8}.{encode,decode,encode_decode}
      The official configs configs/gpu_s1/imagenet_mergevq_256_{GR_d64_8gpu_200ep,
      G_d64_8gpu_100ep}.yaml, class taming.models.lfqgan_rep.MergeVQModel, eval mode,
      torch.no_grad(), input uniform(-1,1) [B,3,256,256].
        GR_d64: CNN 64*[1,1,2,4,8] -> 16x16 = 256 tokens, 12 ToMe blocks, merge 112 -> K = 144
        G_d64:  CNN 64*[1,2,4,8]   -> 32x32 = 1024 tokens, 12 ToMe blocks, merge 768 -> K = 256
      (cand_distribution only matters in training, where the merge count is re-sampled per
      batch; in eval the encoder keeps the merge_num of the config.)
      encode        = MergeVQModel.encode(x): CNN encoder + ToMe ViT (with source tracking)
                      + norm/conv_out + LFQ quantizer (eval: sign + indices, no losses).
      decode        = MergeVQModel.decode(quant): token_unmerge of the K quantized tokens with
                      the encoder's source matrix (k2lconfig.learn_source=False ->
                      SourceRecovery without parameters) + MergeVQDecoder. It reads the
                      source matrix the last encode of the same batch left in the encoder.
      encode_decode = MergeVQModel.forward(x) = encode + decode.
      model_path (timm DINOv2 weight selection) and pretrain_teacher (HF DINOv2 teacher) are
      set to None, use_ema=False, the loss module is a DummyLoss (no VGG/discriminator built).
  train_step.tiny.b8            (see bench_train_step for what one step includes)
  train_step.tiny.b8.adaptive   extra: same, but gen_loss_weight=None -> the reference's
                                adaptive generator weight (2 autograd.grad on the last layer)
  tome_merge.b8                 (see bench_tome)
  lfq_entropy.d18.b{16,4,1}x256 (see bench_lfq; b4/b1 are extra, smaller sizes)
  ar[.gpt_b].L{256,1024}.b{B}[.cfg].plain  (see bench_ar; --ar-batch, --ar-cfg, --ar-lengths,
                                --ar-models choose B, the guidance scale, L and the models)

The script itself needs torch, numpy, pyyaml; the imported reference modules need torchvision,
timm, einops, lightning (LightningModule base class), requests + tqdm (taming/util.py).
transformers is imported by lfqgan_rep but unused (teacher disabled): stubbed if missing.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types

import torch

STUBS = []   # which irrelevant imports were replaced by stand-ins (recorded in the JSON)


# --------------------------------------------------------------------------- setup

def setup_reference(ref):
    """Put the reference checkout on sys.path and neutralise imports that are irrelevant here."""
    ref = os.path.abspath(ref)
    if not os.path.isfile(os.path.join(ref, "taming", "models", "lfqgan_rep.py")):
        raise SystemExit(f"--ref {ref}: not a MergeVQ checkout (no taming/models/lfqgan_rep.py)")
    sys.path.insert(0, ref)

    # The reference's main.py (LightningCLI, data modules) is only needed for its
    # `instantiate_from_config` helper; importing it would pull LightningCLI/jsonargparse
    # and set torch.set_float32_matmul_precision("high") (TF32) as a side effect.
    # A stand-in module with the same helper (a generic import-by-dotted-name) is used.
    if "main" not in sys.modules:
        import importlib
        stub = types.ModuleType("main")

        def get_obj_from_str(string, reload=False):
            module, cls = string.rsplit(".", 1)
            return getattr(importlib.import_module(module), cls)

        def instantiate_from_config(config):
            return get_obj_from_str(config["target"])(**config.get("params", dict()))

        stub.get_obj_from_str = get_obj_from_str
        stub.instantiate_from_config = instantiate_from_config
        sys.modules["main"] = stub
        STUBS.append("main (reference main.py: only instantiate_from_config is used)")

    # lightning: MergeVQModel subclasses L.LightningModule; nothing Lightning-specific runs
    # in these benchmarks (no trainer, no self.log). Fallback only if it cannot be imported.
    try:
        import lightning  # noqa: F401
    except Exception as e:
        stub = types.ModuleType("lightning")
        stub.LightningModule = torch.nn.Module
        sys.modules["lightning"] = stub
        STUBS.append(f"lightning -> torch.nn.Module ({type(e).__name__})")

    # transformers: lfqgan_rep imports AutoModel for the optional DINOv2 teacher (disabled here).
    try:
        import transformers  # noqa: F401
        from transformers import AutoImageProcessor, AutoModel  # noqa: F401
    except Exception:
        stub = types.ModuleType("transformers")
        stub.AutoImageProcessor = stub.AutoModel = None
        sys.modules["transformers"] = stub
        STUBS.append("transformers (DINOv2 teacher, unused)")

    # taming/util.py (checkpoint download helper for LPIPS) imports requests + tqdm.
    try:
        import taming.util  # noqa: F401
    except ImportError:
        stub = types.ModuleType("taming.util")

        def get_ckpt_path(*a, **k):
            raise RuntimeError("no downloads in the benchmark")

        stub.get_ckpt_path = get_ckpt_path
        sys.modules["taming.util"] = stub
        STUBS.append("taming.util (LPIPS checkpoint download helper)")

    # LPIPS: build VGG16 + the 1x1 "lin" layers with random weights, download nothing.
    import torchvision
    import taming.modules.losses.lpips as lpips_mod
    lpips_mod.models = types.SimpleNamespace(
        vgg16=lambda pretrained=False, **kw: torchvision.models.vgg16(weights=None))
    lpips_mod.LPIPS.load_from_pretrained = lambda self, name="vgg_lpips": None
    return ref


def ref_commit(ref):
    """The checkout's own commit; None for an exported snapshot (then $REF_COMMIT is used).
    Only a .git directly in --ref counts: a copy inside another repo (e.g. .gpu/ref in ours)
    would otherwise report that repo's HEAD."""
    if not os.path.exists(os.path.join(ref, ".git")):
        return None
    try:
        return subprocess.run(["git", "-C", ref, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except Exception:
        return None


# --------------------------------------------------------------------------- timing

class CpuLoad:
    """CPU time used by *other* processes (in cores) over an interval, from /proc/stat minus
    this process's own utime+stime. On a 2-core machine with a compiler running next to us,
    torch's OpenMP threads spin-wait and a step can get 10-30x slower, so each timed run
    records the other processes' load and contended runs are redone (see Ctx.time)."""
    def __init__(self):
        self.ok = os.path.exists("/proc/stat")
        self.hz = os.sysconf("SC_CLK_TCK") if self.ok else 100

    def _read(self):
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)   # minus idle, iowait
        with open("/proc/self/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        own = int(st[11]) + int(st[12])                       # utime + stime (all threads)
        return busy, own, time.perf_counter()

    def start(self):
        return self._read() if self.ok else None

    def other(self, s):
        if s is None:
            return 0.0
        b1, o1, t1 = self._read()
        dt = max(t1 - s[2], 1e-6)
        return max(0.0, ((b1 - s[0]) - (o1 - s[1])) / self.hz / dt)

    def wait_idle(self, max_wait_s, thresh, probe_s=3.0):
        """Wait until others use < thresh cores over a probe window; returns seconds waited."""
        if not self.ok or max_wait_s <= 0:
            return 0.0
        t0 = time.perf_counter()
        while True:
            s = self.start()
            time.sleep(probe_s)
            if self.other(s) < thresh or time.perf_counter() - t0 > max_wait_s:
                return time.perf_counter() - t0


def proc_status_mib(field):
    with open("/proc/self/status") as f:
        line = next(l for l in f if l.startswith(field))
    return int(line.split()[1]) / 1024


def rss_reset():
    """Resets the peak RSS (VmHWM) to the current RSS and returns it in MiB, as the Rust side
    does (Linux only; None elsewhere): peak_mib is then the growth during the benchmark."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return proc_status_mib("VmRSS:")
    except OSError:
        return None


class Ctx:
    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.load = CpuLoad()
        self.guard = not self.cuda and args.busy_load > 0
        self.tok_batches = [int(b) for b in args.tok_batches.split(",")]
        self.train_batch = args.train_batch

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def _clean(self, times, loads):
        # runs under 0.5 s are too short for /proc/stat's 10 ms ticks: only the idle wait
        # before them guards those
        return [t for t, l in zip(times, loads)
                if not self.guard or t < 0.5 or l < self.args.busy_load]

    def time(self, fn, runs=None):
        """1 warm-up + median of timed runs. Returns a dict for the results list.
        CPU: before the warm-up and before each timed run, wait (up to --wait-idle s) until
        other processes use < --busy-load cores; a timed run during which they used more
        is marked contended and redone, up to 2*runs attempts in all; the median is taken
        over the uncontended runs if there are at least 3 of them (else over all)."""
        runs = runs or self.args.runs
        out = {}
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        rss_base = None if self.cuda else rss_reset()
        waited = 0.0
        if self.guard:
            waited += self.load.wait_idle(self.args.wait_idle, self.args.busy_load)
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        warm = time.perf_counter() - t0
        if warm > self.args.slow_s and runs > 3:
            runs = 3
            out["runs_reduced"] = True
        times, loads = [], []
        while len(times) < 2 * runs:
            if self.guard:
                waited += self.load.wait_idle(self.args.wait_idle, self.args.busy_load, 1.0)
            s = self.load.start()
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
            loads.append(round(self.load.other(s), 2))
            clean = self._clean(times, loads)
            if len(clean) >= runs:
                break
        clean = self._clean(times, loads)
        use = clean if len(clean) >= min(3, runs) else times
        out.update(median_s=statistics.median(use), runs_s=times, warmup_s=warm,
                   other_load=loads)
        if self.guard:
            out["contended_runs"] = len(times) - len(clean)
            out["waited_idle_s"] = round(waited, 1)
            if use is times and len(clean) < len(times):
                out["noisy"] = True
        if self.cuda:
            out["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        elif rss_base is not None:
            out["peak_mib"] = proc_status_mib("VmHWM:") - rss_base
        return out


def load_yaml(path):
    import yaml
    with open(path) as f:
        return yaml.safe_load(f)


# --------------------------------------------------------------------------- tokenizer

TOKENIZER_CONFIGS = {
    "GR_d64": "configs/gpu_s1/imagenet_mergevq_256_GR_d64_8gpu_200ep.yaml",
    "G_d64": "configs/gpu_s1/imagenet_mergevq_256_G_d64_8gpu_100ep.yaml",
}


def build_official_tokenizer(ref, cfg_rel, device):
    from taming.models.lfqgan_rep import MergeVQModel
    cfg = load_yaml(os.path.join(ref, cfg_rel))
    init = dict(cfg["model"]["init_args"])
    dd = dict(init["ddconfig"])
    dd["model_path"] = None                      # no timm pretrained weight selection
    init["ddconfig"] = dd
    init["pretrain_teacher"] = None              # no HF DINOv2 teacher
    init["use_ema"] = False
    init["ckpt_path"] = None
    init["lossconfig"] = {"target": "taming.modules.losses.vqperceptual.DummyLoss"}
    torch.manual_seed(0)
    model = MergeVQModel(**init).to(device).eval()
    return model, init


def bench_tokenizer(ctx, ref, only, emit):
    for tag, cfg_rel in TOKENIZER_CONFIGS.items():
        names = [f"tokenizer.{tag}.b{b}.{p}" for b in ctx.tok_batches
                 for p in ("encode", "decode", "encode_decode")]
        if not any(selected(n, only) for n in names):
            continue
        try:
            model, init = build_official_tokenizer(ref, cfg_rel, ctx.device)
        except Exception as e:
            for n in names:
                if selected(n, only):
                    emit({"bench": n, "error": f"build: {type(e).__name__}: {e}"})
            continue
        enc = model.encoder
        L = enc.embed_res ** 2
        K = enc.merge_res ** 2
        info = {"config": cfg_rel, "L": L, "K": K, "merge_num": init["ddconfig"]["merge_num"],
                "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
        for b in ctx.tok_batches:
            torch.manual_seed(0)
            x = torch.rand(b, 3, 256, 256, device=ctx.device) * 2 - 1
            with torch.no_grad():
                for part in ("encode", "decode", "encode_decode"):
                    n = f"tokenizer.{tag}.b{b}.{part}"
                    if not selected(n, only):
                        continue
                    try:
                        if part == "encode":
                            r = ctx.time(lambda: model.encode(x))
                        elif part == "decode":
                            quant = model.encode(x)[0]   # leaves this batch's source matrix
                            assert quant.shape[-1] ** 2 == K, quant.shape
                            r = ctx.time(lambda: model.decode(quant))
                        else:
                            r = ctx.time(lambda: model(x))
                        emit({"bench": n, **r, **info})
                    except Exception as e:
                        emit({"bench": n, "error": f"{type(e).__name__}: {e}", **info})
        del model
        if ctx.cuda:
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------- train step

def tiny_model(device, gen_loss_weight=0.1):
    """The tiny config equivalent to ours (configs/tiny_32.toml): 32x32 images, ch=32,
    ch_mult=[1,1,2] -> 8x8 = 64 tokens, 1 res block per level, 3 ToMe blocks with 4 heads
    (dim 64), merge 28 -> K = 36 (6x6), z_channels = embed_dim = 10, n_embed = 1024,
    PatchGAN ndf=32 (3 layers). Loss settings are the official GR_d64 config's."""
    from taming.models.lfqgan_rep import MergeVQModel
    ddconfig = dict(double_z=False, z_channels=10, resolution=32, in_channels=3, out_ch=3,
                    ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, num_att_blocks=3, num_heads=4,
                    dist_head="layer3", num_classes=10, merge_num=28, cand_distribution=None,
                    model_path=None)
    lossconfig = dict(
        target="taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
        params=dict(disc_conditional=False, disc_in_channels=3, disc_start=0, disc_weight=0.8,
                    disc_dim=32, disc_num_layers=3, gen_loss_weight=gen_loss_weight,
                    cls_loss_weight=1.0, lecam_loss_weight=0.01, codebook_weight=0.1,
                    commit_weight=0.25, codebook_enlarge_ratio=0, codebook_enlarge_steps=2000))
    torch.manual_seed(0)
    model = MergeVQModel(ddconfig, lossconfig, k2lconfig=dict(learn_source=False),
                         n_embed=1024, embed_dim=10, learning_rate=1e-4, use_ema=False,
                         scheduler_type="None", pretrain_teacher=None).to(device)
    return model


def official_train_model(ref, device):
    """The official GR_d64 config (gpu_s1 YAML) as trained: its loss config as written
    (VQLPIPSWithDiscriminator, disc_start 0), recovery model on, no DINOv2 teacher, no EMA."""
    from taming.models.lfqgan_rep import MergeVQModel
    init = dict(load_yaml(os.path.join(ref, TOKENIZER_CONFIGS["GR_d64"]))["model"]["init_args"])
    init["ddconfig"] = dict(init["ddconfig"], model_path=None)
    init.update(pretrain_teacher=None, use_ema=False, ckpt_path=None)
    torch.manual_seed(0)
    return MergeVQModel(**init).to(device)


def bench_train_step(ctx, ref, only, emit):
    """One full training step of MergeVQModel.training_step (accumulate_grad_batches=1, no
    gradient clipping, no EMA, no Lightning trainer), batch 8 of uniform(-1,1) 32x32 images:
      generator: model(x) = encode (CNN + ToMe + LFQ in train mode: entropy loss with
        2^10 codes (per-sample minus codebook entropy) + commitment MSE) + token_unmerge
        + decoder; loss(optimizer_idx=0) = mean(L1 + perceptual_weight(1.0) * LPIPS(VGG16,
        random weights, lin layers with dropout in train mode)) + gen_loss_weight(0.1) *
        non-saturating PatchGAN generator loss + 0.1 * entropy loss + 0.25 * commitment;
        opt_gen.zero_grad(); backward; Adam(betas 0.5, 0.9).step() over encoder+decoder.
      discriminator: loss(optimizer_idx=1) = hinge D loss on D(x) and D(xrec.detach())
        + 0.01 * LeCAM regulariser (its EMA update does two .item()); opt_disc.zero_grad();
        backward; Adam.step().
      `train_step.GR_d64.b2`: the same step on the official GR_d64 config (see
        official_train_model), batch 2 of 256x256 images.
      No class-token loss (no x_aug/label, no DINOv2 teacher). The merge count is fixed
      (K = 36): update_encoder_merge_ratio's re-sampling is not called.
      `.adaptive`: gen_loss_weight=None, i.e. the reference's calculate_adaptive_weight
      (autograd.grad of nll and g loss w.r.t. decoder.conv_out.weight, retain_graph)."""
    runs = [("train_step.tiny.b8", 8, 32, lambda: tiny_model(ctx.device, gen_loss_weight=0.1)),
            ("train_step.tiny.b8.adaptive", 8, 32, lambda: tiny_model(ctx.device, gen_loss_weight=None)),
            (f"train_step.GR_d64.b{ctx.train_batch}", ctx.train_batch, 256,
             lambda: official_train_model(ref, ctx.device))]
    for name, batch, res, build in runs:
        if not selected(name, only):
            continue
        try:
            model = build().train()
            opt_gen = torch.optim.Adam(list(model.encoder.parameters()) +
                                       list(model.decoder.parameters()) +
                                       list(model.quantize.parameters()), lr=1e-4, betas=(0.5, 0.9))
            opt_disc = torch.optim.Adam(model.loss.discriminator.parameters(), lr=1e-4,
                                        betas=(0.5, 0.9))
            torch.manual_seed(0)
            x = torch.rand(batch, 3, res, res, device=ctx.device) * 2 - 1
            last = model.get_last_layer()

            def step():
                xrec, eloss, loss_break = model(x)
                aeloss, _ = model.loss(eloss, loss_break, x, xrec, 0, 0, last_layer=last,
                                       split="train")
                opt_gen.zero_grad()
                aeloss.backward()
                opt_gen.step()
                discloss, _ = model.loss(eloss, loss_break, x, xrec, 1, 0, last_layer=last,
                                         split="train")
                opt_disc.zero_grad()
                discloss.backward()
                opt_disc.step()

            r = ctx.time(step)
            emit({"bench": name, **r, "K": model.encoder.merge_res ** 2,
                  "L": model.encoder.embed_res ** 2})
            del model, opt_gen, opt_disc
        except Exception as e:
            emit({"bench": name, "error": f"{type(e).__name__}: {e}"})


# --------------------------------------------------------------------------- ToMe

def bench_tome(ctx, only, emit):
    """One ToMe step as the reference's ToMeBlock does it after the attention of the first
    block: x [8, 257, 512] (CLS + 256 tokens), metric = keys averaged over heads [8, 257, 512]
    (random), bipartite_soft_matching(metric, r=64, class_token=True); merge_source(merge, x,
    None) (builds eye(257) and merges it with amax, as in the first block); merge_wavg(merge,
    x, size) with size = ones [8, 257, 1] given explicitly. Output 193 tokens. no_grad."""
    name = "tome_merge.b8"
    if not selected(name, only):
        return
    try:
        from taming.modules.diffusionmodules.tome import (bipartite_soft_matching,
                                                          merge_source, merge_wavg)
        torch.manual_seed(0)
        x = torch.randn(8, 257, 512, device=ctx.device)
        metric = torch.randn(8, 257, 512, device=ctx.device)
        size = torch.ones(8, 257, 1, device=ctx.device)
        out = {}

        def step():
            merge, _ = bipartite_soft_matching(metric, 64, True, False)
            source = merge_source(merge, x, None)
            y, s = merge_wavg(merge, x, size)
            out["shape"] = (tuple(y.shape), tuple(source.shape))

        with torch.no_grad():
            r = ctx.time(step)
        emit({"bench": name, **r, "out_tokens": out["shape"][0][1]})
    except Exception as e:
        emit({"bench": name, "error": f"{type(e).__name__}: {e}"})


# --------------------------------------------------------------------------- LFQ entropy

# Default estimate: peak RSS of entropy forward+backward ~ this many times the size of the
# [N, 2^d] float32 logits tensor (b1 measured ~5x on CPU, torch 2.4). On CPU the b4 run's
# measured ratio replaces it for b16. Only used to decide whether to try.
LFQ_PEAK_FACTOR = 6.0


def lfq_sizes(b):
    n_tok = b * 256
    logits = n_tok * (2 ** 18) * 4
    return n_tok, logits


def lfq_once(q, x):
    """LFQ.forward in train mode (entropy loss on logits = 2 x . codebook^T over all 2^18
    codes, temperature 0.01, + commitment MSE) and backward of the loss as the reference
    weighs it (codebook_weight 0.1 * entropy + commit_weight 0.25 * commitment)."""
    x.grad = None
    (quant, ent, idx), lb = q(x, return_loss_breakdown=True)
    loss = 0.1 * ent + 0.25 * lb.commitment
    loss.backward()
    return x.grad


def lfq_child(args):
    """Runs in a subprocess (CPU): times LFQ entropy fwd+bwd and reports peak RSS delta."""
    torch.set_num_threads(args.threads)
    from taming.modules.vqvae.lookup_free_quantize import LFQ
    b = args.lfq_child
    torch.manual_seed(0)
    q = LFQ(dim=18, codebook_size=2 ** 18).train()
    x = torch.randn(b, 18, 16, 16, requires_grad=True)
    # Address-space cap so a too-large run fails with an allocation error instead of
    # taking the machine down.
    limit = int(args.mem_limit_gib * 2**30)
    vm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                vm = int(line.split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + limit + 2**30, resource.RLIM_INFINITY))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    ctx = Ctx(args)
    try:
        r = ctx.time(lambda: lfq_once(q, x))
    except (RuntimeError, MemoryError) as e:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"error": f"oom: {type(e).__name__}: {str(e)[:200]}",
                          "peak_mib_before_failure": (peak - base) / 1024}))
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r["peak_mib"] = (peak - base) / 1024
    print(json.dumps(r))


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def bench_lfq(ctx, only, emit):
    """lfq_entropy.d18.b{B}x256: the reference LFQ quantizer (taming/modules/vqvae/
    lookup_free_quantize.py, d=18, codebook 2^18, train mode) on input [B, 18, 16, 16]
    (B images x 256 tokens) with requires_grad: forward with its entropy loss (softmax and
    log_softmax over all 2^18 codes per token, per-sample and batch-average entropy) +
    commitment, then backward. CPU: run in a subprocess, peak_mib = child's ru_maxrss minus
    its baseline after setup. CUDA: in-process, max_memory_allocated delta. b16 is the one
    asked for; b4 and b1 are extra smaller sizes (memory grows linearly with B)."""
    limit_gib = ctx.args.lfq_mem_gib
    avail = mem_available()
    if not ctx.cuda and avail is not None:   # leave room for whatever else runs
        limit_gib = min(limit_gib, avail / 2**30 - 3.0)
    factor = LFQ_PEAK_FACTOR
    for b in (1, 4, 16):
        name = f"lfq_entropy.d18.b{b}x256"
        if not selected(name, only):
            continue
        n_tok, logits = lfq_sizes(b)
        est = factor * logits
        info = {"tokens": n_tok, "logits_mib": logits / 2**20, "est_peak_mib": est / 2**20,
                "est_factor": round(factor, 2)}
        try:
            if ctx.cuda:
                from taming.modules.vqvae.lookup_free_quantize import LFQ
                torch.manual_seed(0)
                q = LFQ(dim=18, codebook_size=2 ** 18).train().to(ctx.device)
                x = torch.randn(b, 18, 16, 16, device=ctx.device, requires_grad=True)
                try:
                    r = ctx.time(lambda: lfq_once(q, x))
                    emit({"bench": name, **r, **info})
                except torch.cuda.OutOfMemoryError as e:
                    emit({"bench": name, "error": f"oom: {str(e)[:200]}", **info})
                del q, x
                torch.cuda.empty_cache()
                continue
            if 1.1 * est / 2**30 > limit_gib and not ctx.args.lfq_force:   # 10% margin
                emit({"bench": name, "error": f"oom (not run): estimated peak {est / 2**30:.1f} GiB"
                      f" (+10% margin) > limit {limit_gib:.1f} GiB", **info})
                continue
            cmd = [sys.executable, os.path.abspath(__file__), "--ref", ctx.args.ref,
                   "--device", "cpu", "--threads", str(ctx.args.threads), "--runs",
                   str(ctx.args.runs), "--slow-s", str(ctx.args.slow_s),
                   "--busy-load", str(ctx.args.busy_load), "--wait-idle", str(ctx.args.wait_idle),
                   "--lfq-child", str(b), "--mem-limit-gib", f"{limit_gib:.2f}"]
            p = subprocess.run(cmd, capture_output=True, text=True)
            lines = [l for l in p.stdout.strip().splitlines() if l.startswith("{")]
            if p.returncode != 0 or not lines:
                tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
                emit({"bench": name, "error": f"child rc={p.returncode}: {' | '.join(tail)}",
                      **info})
                continue
            r = json.loads(lines[-1])
            if "peak_mib" in r and b >= 4:   # calibrate the estimate for the next size
                factor = r["peak_mib"] * 2**20 / logits
            emit({"bench": name, **r, **info, "mem_limit_gib": round(limit_gib, 2)})
        except Exception as e:
            emit({"bench": name, "error": f"{type(e).__name__}: {e}", **info})


# --------------------------------------------------------------------------- AR

AR_MODELS = {
    # name prefix: (dim, spatial layers, heads); "ar" is the dim-256 bench model, "ar.gpt_b" the
    # official stage-2 GPT (configs/gpu_s2/imagenet_cond_llamagen_B_256_*.yaml, read below).
    "ar": (256, 8, 8),
    "ar.gpt_b": None,
}


def gpt_b_size(ref):
    """(dim, spatial_n_layer, n_head) of the authors' stage-2 GPT-B YAML."""
    cfg = load_yaml(os.path.join(ref, "configs/gpu_s2/imagenet_cond_llamagen_B_256_G_d64_k1024_8gpu_ep300.yaml"))
    p = cfg["model"]["init_args"]["transformer_config"]["params"]
    return p["dim"], p["spatial_n_layer"], p["n_head"]


def bench_ar(ctx, ref, only, emit, batch=1, cfg=1.0, lengths=(256, 1024), models=("ar",), steps=0):
    """ar[.gpt_b].L{L}.b{B}[.cfg].plain: the reference's own sampler
    (taming/modules/transformer/gpt.py sample()) on its GPT (LlamaGen style: RMSNorm, SwiGLU,
    2-D RoPE, class token) with 2 factorized (intra-token) layers, token_factorization with
    factorized_bits [6, 12] (two heads, 2^6 and 2^12), 1000 classes, block_size L (16x16 or
    32x32 grid), random init (the reference zero-inits the heads -> uniform logits), eval mode.
    "ar": dim 256, 8 spatial layers, 8 heads; "ar.gpt_b": the gpu_s2 YAML's dim, layers, heads.
    Timed: gpt.sample() for B images, L steps, with its KV caches (setup_caches once,
    setup_factorized_caches every step, as written), temperature [1, 1], top_k [0, 0], top_p
    [1, 1] (no filtering), multinomial sampling. per_s = B*L / median (tokens/s over all images).
    peak_kv_mib: the bytes of the spatial layers' k_cache/v_cache buffers sample() allocates
    ([rows, H, find_multiple(1 + L, 8), hd] each; rows = 2B with guidance).
    Guidance (cfg > 1): the input is [B cond labels; B null labels (class_num)] as the
    reference's sample.py builds it, cfg_scale [cfg, cfg]. Without guidance cfg_scale = [0, 0]:
    the reference's own default 1.0 does not run (sample() sizes its KV caches for 2B rows
    whenever cfg_scale[0] >= 1.0 but only doubles the input when > 1.0, so the
    `.view(bsz, seqlen, dim)` fails); any scale < 1 takes the plain path. The authors' sampler
    has no MergeAR decoding, so there is no .mergear record.
    steps > 0 times only the first `steps` tokens of the L (record field "steps"): sample()
    then sizes its caches and masks for prefix + steps, so every step attends over fewer slots
    than at full length -- the per_s it gives is an upper bound of the full run's."""
    from taming.modules.transformer.gpt import GPT, sample
    tag = ".cfg" if cfg != 1.0 else ""
    for model in models:
        for L in lengths:
            name = f"{model}.L{L}.b{batch}{tag}.plain"
            if not selected(name, only):
                continue
            try:
                dim, layers, heads = AR_MODELS[model] or gpt_b_size(ref)
                torch.manual_seed(0)
                gpt = GPT(vocab_size=2 ** 18, block_size=L, spatial_n_layer=layers, factorized_n_layer=2,
                          n_head=heads, dim=dim, cond_dim=dim, token_factorization=True,
                          factorized_bits=[6, 12], class_num=1000, token_drop=0.1,
                          resid_dropout_p=0.1).to(ctx.device).eval()
                cond = torch.full((batch, 1), 207, device=ctx.device)
                if cfg != 1.0:
                    x = torch.cat([cond, torch.full_like(cond, 1000)])
                    scale = [cfg, cfg]
                else:
                    x, scale = cond, [0.0, 0.0]
                out = {}
                n_steps = steps if 0 < steps < L else L

                def run():
                    torch.manual_seed(1)
                    pre, post = sample(x, gpt, steps=n_steps, temperature=[1.0, 1.0], top_k=[0, 0],
                                       top_p=[1.0, 1.0], token_factorization=True, cfg_scale=scale)
                    out["shape"] = (tuple(pre.shape), tuple(post.shape))

                with torch.no_grad():
                    r = ctx.time(run)
                assert out["shape"] == ((batch, n_steps), (batch, n_steps)), out["shape"]
                kv = sum(b.attention.kv_cache.k_cache.numel() * b.attention.kv_cache.k_cache.element_size() * 2
                         for b in gpt.spatial_blocks)
                emit({"bench": name, **r, "per_s": batch * n_steps / r["median_s"],
                      "tokens_per_s": batch * n_steps / r["median_s"], "steps": n_steps, "peak_kv_mib": kv / 2 ** 20, "cfg": cfg,
                      "batch": batch, "params_M": round(sum(p.numel() for p in gpt.parameters()) / 1e6, 2)})
                del gpt
            except Exception as e:
                emit({"bench": name, "error": f"{type(e).__name__}: {e}"})


# --------------------------------------------------------------------------- main

def selected(name, only):
    return not only or any(name.startswith(p) for p in only)


def fmt_row(r):
    if "error" in r:
        return f"{r['bench']:<38} {'ERROR':>10}  {r['error'][:90]}"
    extra = []
    if "tokens_per_s" in r:
        extra.append(f"{r['tokens_per_s']:.1f} tok/s")
    if "peak_kv_mib" in r:
        extra.append(f"KV {r['peak_kv_mib']:.1f} MiB")
    if "peak_mib" in r:
        extra.append(f"peak {r['peak_mib']:.0f} MiB")
    if "K" in r:
        extra.append(f"L={r['L']} K={r['K']}")
    if r.get("runs_reduced"):
        extra.append("3 runs")
    if r.get("contended_runs"):
        extra.append(f"{r['contended_runs']} contended runs redone" +
                     (" (NOISY)" if r.get("noisy") else ""))
    return f"{r['bench']:<38} {r['median_s']:>10.4f}  {', '.join(extra)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="/work/ref/MergeVQ")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated name prefixes")
    ap.add_argument("--tok-batches", default="1,8", help="tokenizer: comma-separated batch sizes")
    ap.add_argument("--train-batch", type=int, default=2, help="training step of the official G+R d64 config: batch")
    ap.add_argument("--ar-batch", type=int, default=1, help="AR: images sampled together")
    ap.add_argument("--ar-cfg", type=float, default=1.0, help="AR: guidance scale (1: none)")
    ap.add_argument("--ar-lengths", default="256,1024", help="AR: comma-separated L")
    ap.add_argument("--ar-models", default="ar", help="AR: comma-separated of ar, ar.gpt_b")
    ap.add_argument("--ar-steps", type=int, default=0,
                    help="AR: time only the first N tokens of each L (0: all; see bench_ar)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--slow-s", type=float, default=60.0,
                    help="warm-up longer than this -> 3 timed runs")
    ap.add_argument("--busy-load", type=float, default=0.3,
                    help="CPU: other processes using more cores than this = contended run "
                         "(0 disables the guard)")
    ap.add_argument("--wait-idle", type=float, default=900.0,
                    help="CPU: wait at most this long for the machine to go idle before a run")
    ap.add_argument("--matmul-precision", default="highest", choices=["highest", "high", "medium"],
                    help="torch.set_float32_matmul_precision (the reference's main.py sets 'high')")
    ap.add_argument("--cudnn-tf32", default="on", choices=["on", "off"],
                    help="torch.backends.cudnn.allow_tf32: cuDNN convolutions in TF32 (on: PyTorch's "
                         "default); off with --matmul-precision highest runs everything in f32")
    ap.add_argument("--lfq-mem-gib", type=float, default=20.0,
                    help="CPU LFQ: skip/abort beyond this peak (also capped by MemAvailable-2GiB)")
    ap.add_argument("--lfq-force", action="store_true",
                    help="CPU LFQ: try even if the estimate exceeds the limit (still capped)")
    ap.add_argument("--lfq-child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mem-limit-gib", type=float, default=20.0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    args.ref = setup_reference(args.ref)
    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    torch.backends.cudnn.allow_tf32 = args.cudnn_tf32 == "on"
    if args.lfq_child:
        lfq_child(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")

    only = [p for p in args.only.split(",") if p]
    ctx = Ctx(args)
    import timm
    doc = {"impl": "pytorch-reference", "torch": torch.__version__, "timm": timm.__version__,
           "threads": args.threads, "device": args.device,
           "device_name": torch.cuda.get_device_name() if ctx.cuda else
           (open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
            if os.path.exists("/proc/cpuinfo") else "cpu"),
           "matmul_precision": args.matmul_precision, "cudnn_tf32": args.cudnn_tf32, "runs": args.runs,
           "ref": args.ref, "ref_commit": ref_commit(args.ref) or os.environ.get("REF_COMMIT"),
           "stubs": STUBS, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": []}

    def emit(r):
        doc["results"].append(r)
        print(fmt_row(r), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)

    print(f"torch {torch.__version__} timm {timm.__version__} device {args.device} "
          f"threads {args.threads} runs {args.runs}", flush=True)
    print(f"{'bench':<38} {'median_s':>10}", flush=True)
    t0 = time.time()
    bench_tome(ctx, only, emit)
    bench_lfq(ctx, only, emit)
    bench_train_step(ctx, args.ref, only, emit)
    bench_ar(ctx, args.ref, only, emit, args.ar_batch, args.ar_cfg,
             [int(x) for x in args.ar_lengths.split(",")], args.ar_models.split(","), args.ar_steps)
    bench_tokenizer(ctx, args.ref, only, emit)
    doc["total_s"] = time.time() - t0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    print("\n" + "\n".join(fmt_row(r) for r in doc["results"]))


if __name__ == "__main__":
    main()
