"""Image embedding throughput: veclink's ClipImageEncoder vs the plain open_clip forward pass.

Random weights (no download) for each open_clip architecture; the same generated JPEG
images (bytes, as gRPC delivers them) for every row. Rows:

- ``open_clip forward``: ``model.encode_image`` on ready tensors (the device-only bound);
- ``open_clip decode+transform+forward``: PIL decode, open_clip's transform, forward;
- ``veclink encode(bytes)``: ``ClipImageEncoder.encode`` (limits, decode, transform, forward,
  normalise), the path a request takes.

Run it as a module from the repository root (it draws its images with the test
generators in ``tests/fixtures``)::

    python -m bench.clip_throughput --models ViT-B-16,ViT-L-14-336 -n 512 --device cuda \\
        --dtype bf16 --batch-size 128
"""

from __future__ import annotations

import argparse
import io
import random
import time

import numpy as np
import torch
from veclink.encoders import load_encoder

from tests.fixtures.clip_synthetic import COLORS, SHAPES, shape_image


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_model(name: str, images: list[bytes], args: argparse.Namespace) -> list[tuple]:
    from PIL import Image

    enc = load_encoder(
        {
            "kind": "clip",
            "model": f"open_clip:{name}",
            "batch_size": args.batch_size,
            "device": args.device,
            "dtype": args.dtype,
        }
    )
    model, transform = enc.towers.module, enc.towers.image_transform
    dtype = enc.dtype
    bs = args.batch_size

    def plain_forward(pixels: torch.Tensor) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(pixels), bs):
                x = pixels[i : i + bs].to(args.device, dtype, non_blocking=True)
                out.append(torch.nn.functional.normalize(model.encode_image(x).float(), dim=-1))
        sync(args.device)
        return torch.cat(out).cpu().numpy()

    def plain_full() -> np.ndarray:
        pixels = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
        return plain_forward(pixels)

    pixels = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
    enc.encode(images[:bs])  # warm-up (CUDA kernels, allocator)
    plain_forward(pixels[:bs])
    rows = []
    for label, fn in (
        ("open_clip forward", lambda: plain_forward(pixels)),
        ("open_clip decode+transform+forward", plain_full),
        ("veclink encode(bytes)", lambda: enc.encode(images)),
    ):
        sync(args.device)
        t = time.perf_counter()
        vecs = fn()
        sync(args.device)
        rows.append((name, label, time.perf_counter() - t, vecs))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="ViT-B-16,ViT-L-14-336")
    ap.add_argument("-n", type=int, default=256, help="images to encode")
    ap.add_argument("--size", type=int, default=480, help="side of the generated JPEGs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    args = ap.parse_args()

    rng = random.Random(0)
    images = [
        shape_image(
            rng.choice(list(COLORS)), rng.choice(SHAPES), size=args.size, rng=rng, fmt="JPEG"
        )
        for _ in range(args.n)
    ]
    torch.manual_seed(0)
    print(
        f"{args.n} JPEG images {args.size}px, batch {args.batch_size}, {args.device} {args.dtype}, "
        f"torch threads {torch.get_num_threads()}, random weights"
    )
    print(f"| {'model':<14} | {'path':<36} | {'seconds':>8} | {'images/s':>9} | {'min cos':>8} |")
    print(f"|{'-' * 16}|{'-' * 38}|{'-' * 10}|{'-' * 11}|{'-' * 10}|")
    for name in args.models.split(","):
        rows = bench_model(name, images, args)
        ref = rows[0][3]
        for model, label, secs, vecs in rows:
            cos = float(np.sum(ref * vecs, axis=1).min())
            rate = args.n / secs
            print(f"| {model:<14} | {label:<36} | {secs:>8.2f} | {rate:>9.1f} | {cos:>8.5f} |")


if __name__ == "__main__":
    main()
