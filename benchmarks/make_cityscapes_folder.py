"""Writes a Cityscapes-shaped manual directory (no Cityscapes here), for measuring the segmentation pipeline:

    python benchmarks/make_cityscapes_folder.py /tmp/cityscapes_manual --train 24 --val 8

2048x1024 RGB PNGs (smooth colour fields plus noise: 2.9 MB on average; real ``leftImg8bit`` files are 2-3 MB) and
``gtFine_labelIds`` PNGs of rectangular regions of the 34 label ids, in the official folder layout.
"""

import argparse
import os

import numpy as np
from PIL import Image


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root")
  parser.add_argument("--train", type=int, default=24)
  parser.add_argument("--val", type=int, default=8)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:1024, 0:2048] / 300.0
  sizes = []
  for split, count in (("train", args.train), ("val", args.val)):
    for folder in ("leftImg8bit", "gtFine"):
      os.makedirs(os.path.join(args.root, folder, split, "city"), exist_ok=True)
    for i in range(count):
      phase = rng.uniform(0, 6, size=3)
      field = 110 + 70 * np.stack([np.sin(x * (c + 1) + y + phase[c]) for c in range(3)], axis=-1)
      image = np.clip(field + rng.normal(0, 2, field.shape), 0, 255).astype(np.uint8)
      labels = rng.integers(0, 34, size=(8, 16)).repeat(128, axis=0).repeat(128, axis=1).astype(np.uint8)
      stem = os.path.join(split, "city", f"city_{i:06d}_000019")
      path = os.path.join(args.root, "leftImg8bit", f"{stem}_leftImg8bit.png")
      Image.fromarray(image).save(path)
      Image.fromarray(labels).save(os.path.join(args.root, "gtFine", f"{stem}_gtFine_labelIds.png"))
      sizes.append(os.path.getsize(path))
  print(f"wrote {len(sizes)} images to {args.root}, {np.mean(sizes) / 1e6:.2f} MB average PNG")


if __name__ == "__main__":
  main()
