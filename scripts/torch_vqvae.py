#!/usr/bin/env python3
"""PyTorch reference for vqgpu's reference VQ-VAE (docs/design.md, "Reference models").

Used for quality targets, numeric parity (scripts/torch_parity.py) and speed comparisons.
usage: torch_vqvae.py [--steps N] [--batch B] [--device cpu|cuda] [--ema] [--bench]
"""
import argparse, gzip, math, struct, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

def idx_images(path):
    with gzip.open(path) as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 2051
        return np.frombuffer(f.read(), np.uint8).reshape(n, 1, h, w)

class Residual(nn.Module):
    def __init__(s, h, rh):
        super().__init__()
        s.block = nn.Sequential(nn.ReLU(), nn.Conv2d(h, rh, 3, 1, 1, bias=False), nn.ReLU(), nn.Conv2d(rh, h, 1, bias=False))
    def forward(s, x): return x + s.block(x)

class Stack(nn.Module):
    def __init__(s, h, rh, n):
        super().__init__(); s.layers = nn.ModuleList([Residual(h, rh) for _ in range(n)])
    def forward(s, x):
        for l in s.layers: x = l(x)
        return F.relu(x)

class VQ(nn.Module):
    def __init__(s, k, d, beta, ema, decay=0.99, eps=1e-5):
        super().__init__(); s.k, s.d, s.beta, s.ema, s.decay, s.eps = k, d, beta, ema, decay, eps
        s.embedding = nn.Embedding(k, d); s.embedding.weight.data.uniform_(-1 / k, 1 / k)
        if ema:
            s.register_buffer("cluster_size", torch.zeros(k)); s.register_buffer("embed_avg", s.embedding.weight.data.clone())
    def forward(s, z):
        zf = z.permute(0, 2, 3, 1).reshape(-1, s.d)
        e = s.embedding.weight
        dist = (zf ** 2).sum(1, keepdim=True) + (e ** 2).sum(1) - 2 * zf @ e.t()
        idx = dist.argmin(1)
        zq = e[idx]
        onehot = F.one_hot(idx, s.k).type(zf.dtype)
        if s.ema and s.training:
            with torch.no_grad():
                s.cluster_size.mul_(s.decay).add_(onehot.sum(0), alpha=1 - s.decay)
                s.embed_avg.mul_(s.decay).add_(onehot.t() @ zf, alpha=1 - s.decay)
                n = s.cluster_size.sum()
                cs = (s.cluster_size + s.eps) / (n + s.k * s.eps) * n
                s.embedding.weight.data.copy_(s.embed_avg / cs.unsqueeze(1))
            loss = s.beta * F.mse_loss(zf, zq.detach())
        else:
            loss = F.mse_loss(zq, zf.detach()) + s.beta * F.mse_loss(zf, zq.detach())
        zq = zf + (zq - zf).detach()
        p = onehot.mean(0); perp = torch.exp(-(p * torch.log(p + 1e-10)).sum())
        return loss, zq.reshape(z.shape[0], z.shape[2], z.shape[3], s.d).permute(0, 3, 1, 2), perp, idx

class VQVAE(nn.Module):
    def __init__(s, c=1, h=128, rh=32, nres=2, k=512, d=64, beta=0.25, ema=False):
        super().__init__()
        s.encoder = nn.Sequential(nn.Conv2d(c, h // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(h // 2, h, 4, 2, 1), nn.ReLU(),
                                  nn.Conv2d(h, h, 3, 1, 1), Stack(h, rh, nres))
        s.pre_quantization = nn.Conv2d(h, d, 1)
        s.vq = VQ(k, d, beta, ema)
        s.decoder = nn.Sequential(nn.ConvTranspose2d(d, h, 3, 1, 1), Stack(h, rh, nres),
                                  nn.ConvTranspose2d(h, h // 2, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(h // 2, c, 4, 2, 1))
    def forward(s, x):
        loss, zq, perp, idx = s.vq(s.pre_quantization(s.encoder(x)))
        return loss, s.decoder(zq), perp

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000); ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4); ap.add_argument("--device", default="cpu")
    ap.add_argument("--ema", action="store_true"); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--bench", action="store_true", help="synthetic 32x32x3 input, time steps only")
    a = ap.parse_args(); torch.manual_seed(a.seed); dev = torch.device(a.device)
    if a.device == "cuda": torch.backends.cudnn.benchmark = True
    if a.bench:
        m = VQVAE(c=3, ema=a.ema).to(dev); opt = torch.optim.Adam(m.parameters(), a.lr)
        x = torch.rand(a.batch, 3, 32, 32, device=dev) - 0.5
        for i in range(a.steps + 10):
            if i == 10:
                if a.device == "cuda": torch.cuda.synchronize()
                t = time.time()
            loss, xh, perp = m(x); rl = F.mse_loss(xh, x); (rl + loss).backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if a.device == "cuda": torch.cuda.synchronize()
        dt = time.time() - t
        peak = f", peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if a.device == "cuda" else ""
        print(f"torch {torch.__version__} {a.device}: {a.steps / dt:.1f} steps/s, {a.steps * a.batch / dt:.0f} images/s{peak}")
        return
    tr = idx_images(f"{a.data}/train-images-idx3-ubyte.gz"); te = idx_images(f"{a.data}/t10k-images-idx3-ubyte.gz")
    pad = lambda u8: F.pad(torch.from_numpy(u8.astype(np.float32) / 255.0), (2, 2, 2, 2))
    xtr, xte = pad(tr), pad(te); var = float(xtr.var())
    m = VQVAE(c=1, ema=a.ema).to(dev); opt = torch.optim.Adam(m.parameters(), a.lr)
    g = torch.Generator().manual_seed(a.seed); t = time.time()
    for i in range(a.steps):
        b = xtr[torch.randint(0, len(xtr), (a.batch,), generator=g)].to(dev) - 0.5
        loss, xh, perp = m(b); rl = F.mse_loss(xh, b) / var; (rl + loss).backward(); opt.step(); opt.zero_grad()
        if i % 200 == 0 or i == a.steps - 1:
            print(f"step {i} recon {rl.item():.4f} vq {loss.item():.4f} perplexity {perp.item():.1f} ({time.time() - t:.0f}s)", flush=True)
    m.eval(); mse = 0.0; n = 0
    with torch.no_grad():
        for j in range(0, len(xte), 500):
            b = xte[j:j + 500].to(dev) - 0.5; _, xh, _ = m(b)
            mse += F.mse_loss(xh.clamp(-0.5, 0.5), b, reduction="sum").item(); n += b.numel()
    mse /= n
    print(f"test MSE {mse:.5f} (pixels in [0,1]) PSNR {10 * math.log10(1 / mse):.2f} dB")

if __name__ == "__main__":
    main()
