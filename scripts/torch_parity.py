#!/usr/bin/env python3
"""Loads a vqgpu VQ-VAE checkpoint into the PyTorch reference model and checks that it computes
the same thing.

The reference is `scripts/torch_vqvae.py` (its `VQVAE` class and IDX reader). The script
  1. builds the reference model with the sizes recorded in the checkpoint's metadata,
  2. loads the checkpoint's model tensors with `load_state_dict(strict=True)` (every reference
     tensor must be present with the same shape; vqgpu-only entries such as the Adam moments are
     listed and skipped),
  3. runs the Fashion-MNIST / MNIST test split through it in fp32 (TF32 off) and prints the test
     MSE in [0, 1] pixel units (reconstructions clamped, as `vqgpu eval vqvae` does),
  4. with --codes (the output of `vqgpu encode`), compares the reference's code indices with
     vqgpu's, position by position.
It exits non-zero when the codes agree at fewer than --min-agreement of the positions, or when the
MSE differs from --expect-mse by more than 1 % (relative).

usage: torch_parity.py --reference torch_vqvae.py --checkpoint checkpoint.safetensors
                       --data DIR [--codes codes.safetensors] [--expect-mse X] [--device cuda]
"""
import argparse
import importlib.util
import math
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


def load_reference(path):
    spec = importlib.util.spec_from_file_location("torch_vqvae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(ref, checkpoint):
    with safe_open(checkpoint, "pt") as f:
        meta = f.metadata()
    if meta.get("format") != "vqgpu.vqvae.1":
        sys.exit(f"{checkpoint}: not a vqgpu VQ-VAE checkpoint (format {meta.get('format')!r})")
    sizes = {k: int(meta[k]) for k in
             ("in_channels", "hidden", "res_hidden", "res_layers", "codebook_size", "code_dim")}
    model = ref.VQVAE(c=sizes["in_channels"], h=sizes["hidden"], rh=sizes["res_hidden"],
                      nres=sizes["res_layers"], k=sizes["codebook_size"], d=sizes["code_dim"],
                      beta=float(meta["beta"]), ema=meta["quantizer"] == "ema")
    tensors = load_file(checkpoint)
    wanted = model.state_dict().keys()
    skipped = sorted(k for k in tensors if k not in wanted)
    model.load_state_dict({k: v for k, v in tensors.items() if k in wanted}, strict=True)
    print(f"loaded {len(wanted)} reference tensors with strict=True; sizes {sizes}")
    prefixes = sorted({".".join(k.split(".")[:2]) for k in skipped})
    print(f"skipped {len(skipped)} vqgpu-only tensors ({', '.join(prefixes)})")
    return model


def test_images(ref, data):
    raw = ref.idx_images(f"{data}/t10k-images-idx3-ubyte.gz")
    x = torch.from_numpy(raw.astype("float32") / 255.0)
    return F.pad(x, (2, 2, 2, 2)) - 0.5


@torch.no_grad()
def run(model, images, device, batch=500):
    model.eval()
    squared, count, codes = 0.0, 0, []
    for start in range(0, len(images), batch):
        x = images[start:start + batch].to(device)
        z = model.pre_quantization(model.encoder(x))
        _, zq, _, idx = model.vq(z)
        recon = model.decoder(zq).clamp(-0.5, 0.5)
        squared += F.mse_loss(recon, x, reduction="sum").item()
        count += x.numel()
        codes.append(idx.reshape(x.shape[0], z.shape[2], z.shape[3]).cpu())
    return squared / count, torch.cat(codes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", required=True, help="path of scripts/torch_vqvae.py")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--codes", help="vqgpu encode output to compare code indices with")
    ap.add_argument("--expect-mse", type=float, help="vqgpu eval vqvae's test MSE")
    ap.add_argument("--min-agreement", type=float, default=0.99)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    ref = load_reference(a.reference)
    model = build_model(ref, a.checkpoint).to(a.device)
    mse, codes = run(model, test_images(ref, a.data), a.device)
    print(f"torch {torch.__version__} on {a.device}: {len(codes)} test images, "
          f"MSE {mse:.6f} (pixels in [0,1]), PSNR {10 * math.log10(1 / mse):.2f} dB")
    failed = False
    if a.expect_mse is not None:
        rel = abs(mse - a.expect_mse) / a.expect_mse
        print(f"vqgpu MSE {a.expect_mse:.6f}: relative difference {rel:.2e}")
        failed |= rel > 0.01
    if a.codes:
        ours = load_file(a.codes)["test.codes"].long()
        n = min(len(ours), len(codes))
        if ours[:n].shape != codes[:n].shape:
            sys.exit(f"code grids differ in shape: vqgpu {tuple(ours.shape)}, torch {tuple(codes.shape)}")
        agree = (ours[:n] == codes[:n]).double().mean().item()
        print(f"code indices: {agree * 100:.3f}% of {ours[:n].numel()} positions agree")
        failed |= agree < a.min_agreement
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
