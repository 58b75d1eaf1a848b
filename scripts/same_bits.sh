#!/usr/bin/env bash
# Same bits across two builds: trains a VQ-VAE (EMA with dead-code restarts, and codebook loss), a
# denoising AE, a VAE and a class-conditional PixelCNN prior for a few steps with the build of a git
# revision and with the working tree, encodes and samples, then checks that every checkpoint and code
# file holds bitwise-equal tensors and that the sample PNGs are byte-identical.
#
#   scripts/same_bits.sh REV [STEPS]      e.g. scripts/same_bits.sh 5c92e5d 20
#
# Needs a GPU adapter (lavapipe is enough) and python3. The revision is built in a temporary git
# worktree with its own target directory (a full release build).
set -euo pipefail
rev=${1:?usage: scripts/same_bits.sh REV [STEPS]}
steps=${2:-20}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
git -C "$root" worktree add --quiet --detach "$work/src" "$rev"
trap 'git -C "$root" worktree remove --force "$work/src"; rm -rf "$work"' EXIT
echo "building $rev and the working tree" >&2
(cd "$work/src" && CARGO_TARGET_DIR="$work/target" cargo build --release --quiet)
(cd "$root" && cargo build --release --quiet)

trunk=(--hidden 16 --res-hidden 8 --res-layers 1)
common=(--steps "$steps" --batch 8 --log-every 10 --save-every 0)
run() { # build-name binary
  local out=$work/runs/$1 bin=$2
  "$bin" train vqvae "${common[@]}" "${trunk[@]}" --codebook-size 32 --code-dim 8 \
    --restart-dead-codes 5 --out "$out/vqvae"
  "$bin" train vqvae "${common[@]}" "${trunk[@]}" --codebook-size 32 --code-dim 8 \
    --quantizer loss --out "$out/vqvae-loss"
  "$bin" train dae "${common[@]}" "${trunk[@]}" --latent-channels 4 --out "$out/dae"
  "$bin" train vae "${common[@]}" "${trunk[@]}" --latent-dim 8 --recon bce --out "$out/vae"
  "$bin" encode --checkpoint "$out/vqvae/checkpoint.safetensors" --limit 256 \
    --out "$out/codes.safetensors"
  "$bin" train prior --codes "$out/codes.safetensors" "${common[@]}" --channels 8 --layers 2 \
    --head 16 --conditional --eval-grids 64 --out "$out/prior"
  "$bin" sample --vqvae "$out/vqvae/checkpoint.safetensors" \
    --prior "$out/prior/checkpoint.safetensors" --count 8 --out "$out/samples.png"
  "$bin" sample --vae "$out/vae/checkpoint.safetensors" --count 8 --out "$out/vae-samples.png"
}
run old "$work/target/release/vqgpu" 2> "$work/old.log" >&2
run new "$root/target/release/vqgpu" 2> "$work/new.log" >&2
status=0
for f in vqvae/checkpoint.safetensors vqvae-loss/checkpoint.safetensors dae/checkpoint.safetensors \
  vae/checkpoint.safetensors codes.safetensors prior/checkpoint.safetensors; do
  python3 "$root/scripts/compare_checkpoints.py" "$work/runs/old/$f" "$work/runs/new/$f" || status=1
done
for f in samples.png vae-samples.png; do
  if cmp -s "$work/runs/old/$f" "$work/runs/new/$f"; then
    echo "$f: byte-identical"
  else
    echo "$f: DIFFERS"; status=1
  fi
done
[ $status = 0 ] && echo "same bits: $rev and the working tree agree after $steps steps"
exit $status
