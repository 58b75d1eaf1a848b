#!/usr/bin/env python3
"""PyTorch baseline for nearest-code search: the peer that `vqgpu bench quantizer` is compared with.

For each shape (N vectors of dimension D against a codebook of K codes) it times the two ways
PyTorch VQ-VAE code finds codes:
  cdist   torch.cdist(z, e).argmin(1)                       (the PyTorch reference's style)
  addmm   (|e|^2 - 2 z e^T).argmin(1) with torch.addmm      (sonnet / lucidrains style)
in fp32 with TF32 off (the exact arithmetic vqgpu does) and, for addmm, with TF32 on (what a
PyTorch user gets with allow_tf32). GFLOP/s counts 2*N*K*D, as vqgpu's bench does. It also prints
the peak memory of one call (the N x K distance matrix is what a fused kernel never writes) and
checks the first 256 rows against a float64 argmin.

usage: torch_quantizer.py [--device cuda] [--n 4096 65536] [--k 512 8192] [--d 64 256] [--repeats 20]
"""
import argparse, time
import torch


def timed(fn, repeats, device):
    fn()  # warm-up (cuBLAS handles, kernel selection)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - t) * 1e3 / repeats
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device == "cuda" else float("nan")
    return ms, peak, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--k", type=int, nargs="+", default=[512, 8192])
    ap.add_argument("--d", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    dev = a.device
    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}; ms per call, GFLOP/s = 2NKD / time, peak = extra MiB of one call")
    print(f"{'N':>7} {'K':>6} {'D':>4} {'method':>12} {'ms':>9} {'GFLOP/s':>9} {'peak MiB':>9} check")
    g = torch.Generator(device="cpu").manual_seed(0)
    for n in a.n:
        for k in a.k:
            for d in a.d:
                z = torch.randn(n, d, generator=g).to(dev)
                e = torch.randn(k, d, generator=g).to(dev)
                ref = torch.cdist(z[:256].double(), e.double()).argmin(1)
                e_sq = (e * e).sum(1)
                runs = {
                    "cdist fp32": (False, lambda: torch.cdist(z, e).argmin(1)),
                    "addmm fp32": (False, lambda: torch.addmm(e_sq, z, e.t(), alpha=-2.0).argmin(1)),
                    "addmm tf32": (True, lambda: torch.addmm(e_sq, z, e.t(), alpha=-2.0).argmin(1)),
                }
                for label, (tf32, fn) in runs.items():
                    if tf32 and dev != "cuda":
                        continue
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    ms, peak, idx = timed(fn, a.repeats, dev)
                    agree = (idx[:256] == ref).float().mean().item()
                    gflops = 2.0 * n * k * d / (ms * 1e6)
                    print(f"{n:>7} {k:>6} {d:>4} {label:>12} {ms:>9.3f} {gflops:>9.0f} {peak:>9.1f} {agree:.3f}")
    torch.backends.cuda.matmul.allow_tf32 = False


if __name__ == "__main__":
    main()
