#!/usr/bin/env python3
"""Loads a vqgpu VQ-VAE-2 checkpoint into a PyTorch module laid out as the best-known PyTorch
implementation of VQ-VAE-2 (rosinality/vq-vae-2-pytorch, `vqvae.py`: the same module names,
`nn.Sequential` indices and buffer layouts, written here from that structure) and checks that it
computes the same thing.

The script
  1. builds the module with the sizes recorded in the checkpoint's metadata,
  2. loads the checkpoint's tensors with `load_state_dict(strict=True)`: every parameter and
     buffer of the module (the codebooks as `embed` [D, K] with `cluster_size` [K] and
     `embed_avg` [D, K]) must be there with its shape; vqgpu-only entries (Adam moments, dead-code
     counters) are listed and skipped,
  3. runs the Fashion-MNIST / MNIST test split (28x28 zero-padded to 32x32, as vqgpu reads it)
     through it in fp32 and prints the test MSE in [0, 1] pixel units (reconstructions clamped,
     as `vqgpu eval vqvae` does),
  4. with --codes (the output of `vqgpu encode`), compares both levels' code indices with
     vqgpu's (`test.top_codes`, `test.codes`), position by position.
It exits non-zero when either level's codes agree at fewer than --min-agreement of the positions,
or when the MSE differs from --expect-mse by more than 1 % (relative).

usage: torch_parity_vqvae2.py --checkpoint checkpoint.safetensors [--data DIR]
                              [--codes codes.safetensors] [--expect-mse X] [--device cpu]
"""
import argparse
import gzip
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn


class Residual(nn.Module):
    """x + Conv1x1(ReLU(Conv3x3(ReLU(x)))), both convolutions with bias; parameters `conv.1.*`,
    `conv.3.*`."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.conv = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x):
        return x + self.conv(x)


def residuals(channels, hidden, count):
    return [Residual(channels, hidden) for _ in range(count)]


class Encoder(nn.Module):
    """Stride 4 (two stride-2 convolutions) or 2 (one), a 3x3 convolution, residual layers, ReLU."""

    def __init__(self, cin, h, nres, rh, stride):
        super().__init__()
        if stride == 4:
            layers = [nn.Conv2d(cin, h // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(h // 2, h, 4, 2, 1),
                      nn.ReLU(), nn.Conv2d(h, h, 3, padding=1)]
        else:
            layers = [nn.Conv2d(cin, h // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(h // 2, h, 3, padding=1)]
        self.blocks = nn.Sequential(*layers, *residuals(h, rh, nres), nn.ReLU())

    def forward(self, x):
        return self.blocks(x)


class Decoder(nn.Module):
    """A 3x3 convolution, residual layers, ReLU, then stride-2 transposed convolutions."""

    def __init__(self, cin, cout, h, nres, rh, stride):
        super().__init__()
        layers = [nn.Conv2d(cin, h, 3, padding=1), *residuals(h, rh, nres), nn.ReLU()]
        if stride == 4:
            layers += [nn.ConvTranspose2d(h, h // 2, 4, 2, 1), nn.ReLU(),
                       nn.ConvTranspose2d(h // 2, cout, 4, 2, 1)]
        else:
            layers += [nn.ConvTranspose2d(h, cout, 4, 2, 1)]
        self.blocks = nn.Sequential(*layers)

    def forward(self, x):
        return self.blocks(x)


class Codebook(nn.Module):
    """Nearest-code quantization; buffers `embed` [D, K], `cluster_size` [K], `embed_avg` [D, K]."""

    def __init__(self, d, k):
        super().__init__()
        self.register_buffer("embed", torch.zeros(d, k))
        self.register_buffer("cluster_size", torch.zeros(k))
        self.register_buffer("embed_avg", torch.zeros(d, k))

    def forward(self, z):
        """z [B, D, H, W] -> (quantized [B, D, H, W], codes [B, H, W])."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        dist = (flat * flat).sum(1, keepdim=True) - 2 * flat @ self.embed \
            + (self.embed * self.embed).sum(0, keepdim=True)
        codes = dist.argmin(1)
        quantized = self.embed.t()[codes].reshape(b, h, w, d).permute(0, 3, 1, 2)
        return quantized, codes.reshape(b, h, w)


class VQVAE2(nn.Module):
    def __init__(self, c, h, nres, rh, d, k):
        super().__init__()
        self.enc_b = Encoder(c, h, nres, rh, stride=4)
        self.enc_t = Encoder(h, h, nres, rh, stride=2)
        self.quantize_conv_t = nn.Conv2d(h, d, 1)
        self.quantize_t = Codebook(d, k)
        self.dec_t = Decoder(d, d, h, nres, rh, stride=2)
        self.quantize_conv_b = nn.Conv2d(d + h, d, 1)
        self.quantize_b = Codebook(d, k)
        self.upsample_t = nn.ConvTranspose2d(d, d, 4, 2, 1)
        self.dec = Decoder(2 * d, c, h, nres, rh, stride=4)

    def forward(self, x):
        """x -> (reconstruction, top codes, bottom codes)."""
        enc_b = self.enc_b(x)
        quant_t, codes_t = self.quantize_t(self.quantize_conv_t(self.enc_t(enc_b)))
        joined = torch.cat([self.dec_t(quant_t), enc_b], 1)
        quant_b, codes_b = self.quantize_b(self.quantize_conv_b(joined))
        recon = self.dec(torch.cat([self.upsample_t(quant_t), quant_b], 1))
        return recon, codes_t, codes_b


def build_model(checkpoint):
    with safe_open(checkpoint, "pt") as f:
        meta = f.metadata()
    if meta.get("format") != "vqgpu.vqvae2.1":
        sys.exit(f"{checkpoint}: not a vqgpu VQ-VAE-2 checkpoint (format {meta.get('format')!r})")
    sizes = {k: int(meta[k]) for k in
             ("in_channels", "hidden", "res_hidden", "res_layers", "codebook_size", "code_dim")}
    model = VQVAE2(c=sizes["in_channels"], h=sizes["hidden"], nres=sizes["res_layers"],
                   rh=sizes["res_hidden"], d=sizes["code_dim"], k=sizes["codebook_size"])
    tensors = load_file(checkpoint)
    wanted = model.state_dict().keys()
    skipped = sorted(k for k in tensors if k not in wanted)
    model.load_state_dict({k: v for k, v in tensors.items() if k in wanted}, strict=True)
    print(f"loaded {len(wanted)} tensors with strict=True; sizes {sizes}")
    prefixes = sorted({".".join(k.split(".")[:2]) for k in skipped})
    print(f"skipped {len(skipped)} vqgpu-only tensors ({', '.join(prefixes)})")
    return model


def test_images(data):
    with gzip.open(f"{data}/t10k-images-idx3-ubyte.gz") as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16))
        raw = np.frombuffer(f.read(), np.uint8).reshape(n, 1, h, w)
    x = torch.from_numpy(raw.astype("float32") / 255.0)
    return F.pad(x, (2, 2, 2, 2)) - 0.5


@torch.no_grad()
def run(model, images, device, batch=500):
    model.eval()
    squared, count, tops, bottoms = 0.0, 0, [], []
    for start in range(0, len(images), batch):
        x = images[start:start + batch].to(device)
        recon, codes_t, codes_b = model(x)
        squared += F.mse_loss(recon.clamp(-0.5, 0.5), x, reduction="sum").item()
        count += x.numel()
        tops.append(codes_t.cpu())
        bottoms.append(codes_b.cpu())
    return squared / count, torch.cat(tops), torch.cat(bottoms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--codes", help="vqgpu encode output to compare code indices with")
    ap.add_argument("--expect-mse", type=float, help="vqgpu eval vqvae's test MSE")
    ap.add_argument("--min-agreement", type=float, default=0.99)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    model = build_model(a.checkpoint).to(a.device)
    mse, tops, bottoms = run(model, test_images(a.data), a.device)
    print(f"torch {torch.__version__} on {a.device}: {len(tops)} test images, "
          f"MSE {mse:.6f} (pixels in [0,1]), PSNR {10 * math.log10(1 / mse):.2f} dB")
    failed = False
    if a.expect_mse is not None:
        rel = abs(mse - a.expect_mse) / a.expect_mse
        print(f"vqgpu MSE {a.expect_mse:.6f}: relative difference {rel:.2e}")
        failed |= rel > 0.01
    if a.codes:
        ours = load_file(a.codes)
        for name, key, theirs in [("top", "test.top_codes", tops), ("bottom", "test.codes", bottoms)]:
            mine = ours[key].long()
            n = min(len(mine), len(theirs))
            if mine[:n].shape != theirs[:n].shape:
                sys.exit(f"{name} grids differ in shape: vqgpu {tuple(mine.shape)}, "
                         f"torch {tuple(theirs.shape)}")
            agree = (mine[:n] == theirs[:n]).double().mean().item()
            print(f"{name} code indices: {agree * 100:.3f}% of {mine[:n].numel()} positions agree")
            failed |= agree < a.min_agreement
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
