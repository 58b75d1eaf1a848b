#!/usr/bin/env python3
"""Compares two safetensors files tensor by tensor, bitwise: same names, dtypes, shapes and bytes.
Metadata must agree too, except entries that name file paths (they differ between two runs).

    python3 scripts/compare_checkpoints.py A.safetensors B.safetensors

Exits non-zero and names every difference. Needs only the standard library."""
import json
import struct
import sys

PATH_KEYS = {"vqvae_checkpoint"}


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    body = data[8 + size :]
    meta = header.pop("__metadata__", {})
    tensors = {
        name: (t["dtype"], t["shape"], body[t["data_offsets"][0] : t["data_offsets"][1]])
        for name, t in header.items()
    }
    return tensors, meta


def main():
    a_path, b_path = sys.argv[1:3]
    a, a_meta = read(a_path)
    b, b_meta = read(b_path)
    problems = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            problems.append(f"{name}: only in {'the first' if name in a else 'the second'} file")
        elif a[name] != b[name]:
            (ad, ashape, abytes), (bd, bshape, bbytes) = a[name], b[name]
            if (ad, ashape) != (bd, bshape):
                problems.append(f"{name}: {ad} {ashape} vs {bd} {bshape}")
            else:
                width = 4
                diff = sum(
                    abytes[i : i + width] != bbytes[i : i + width]
                    for i in range(0, len(abytes), width)
                )
                problems.append(f"{name}: {diff} of {len(abytes) // width} values differ")
    for key in sorted((set(a_meta) | set(b_meta)) - PATH_KEYS):
        if a_meta.get(key) != b_meta.get(key):
            problems.append(f"metadata {key}: {a_meta.get(key)!r} vs {b_meta.get(key)!r}")
    label = b_path.split("/runs/new/")[-1]
    if problems:
        print(f"{label}: DIFFERS")
        for p in problems:
            print(f"  {p}")
        sys.exit(1)
    print(f"{label}: {len(a)} tensors bitwise equal, metadata equal")


if __name__ == "__main__":
    main()
