"""Writes an ImageNet-like class-folder dataset of JPEGs, for measuring the input pipeline without ImageNet.

    python benchmarks/make_jpeg_folder.py /tmp/jpeg_folder --classes 10 --per-class 100

Images are 500x375 (ImageNet's most common size, ~110 kB average JPEG there): smooth colour fields with texture
and noise at quality 90, so that decoding costs about what a real photo of that size costs.
"""

import argparse
import os

import numpy as np
from PIL import Image


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root")
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--per-class", type=int, default=100)
  parser.add_argument("--splits", default="train,val")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:375, 0:500] / 100.0
  sizes = []
  for split in args.splits.split(","):
    for c in range(args.classes):
      folder = os.path.join(args.root, split, f"class_{c:03d}")
      os.makedirs(folder, exist_ok=True)
      for i in range(args.per_class):
        phase = rng.uniform(0, 2 * np.pi, size=3)
        field = np.stack([np.sin(x * (1 + k) + y * (2 - k) + phase[k]) for k in range(3)], -1)
        image = 127 + 80 * field + rng.normal(0, 12, size=field.shape)
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
        sizes.append(os.path.getsize(path))
  print(f"wrote {len(sizes)} images under {args.root}, mean {np.mean(sizes) / 1e3:.0f} kB")


if __name__ == "__main__":
  main()
