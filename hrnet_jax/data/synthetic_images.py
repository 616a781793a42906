"""Writes synthetic-shapes images as PNG files, to look at them or to give ``predict`` some files:

    python -m hrnet_jax.data.synthetic_images --output_dir /tmp/shapes [--split validation] [--count 4] [--size 256]

The pixels are those the dataset holds (``--size`` enlarges them, nearest-neighbour).
"""

from __future__ import annotations

import os

import numpy as np
from absl import flags
from PIL import Image

from hrnet_jax import cli
from hrnet_jax.data import synthetic

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the PNGs.", required=True)
_SPLIT = flags.DEFINE_string("split", "validation", "train or validation.")
_COUNT = flags.DEFINE_integer("count", 4, "How many images, from the split's first.")
_SIZE = flags.DEFINE_integer("size", synthetic.IMAGE_SIZE, "Side of the written images.")


def write_images(output_dir: str, split: str = "validation", count: int = 4,
                 size: int = synthetic.IMAGE_SIZE) -> list[str]:
  """Writes the first ``count`` images of ``split`` as ``<split>_<index>.png`` and returns their paths."""
  if split not in synthetic.SPLIT_SIZES:
    raise ValueError(f"unknown split {split!r}; known: {', '.join(synthetic.SPLIT_SIZES)}")
  os.makedirs(output_dir, exist_ok=True)
  paths = []
  for index in range(count):
    example = synthetic.render_example(np.random.default_rng([synthetic.SPLIT_SEEDS[split], index]))
    paths.append(os.path.join(output_dir, f"{split}_{index:04d}.png"))
    Image.fromarray(example["image"]).resize((size, size), Image.NEAREST).save(paths[-1])
  return paths


def main(argv):
  del argv
  paths = write_images(_OUTPUT_DIR.value, _SPLIT.value, _COUNT.value, _SIZE.value)
  print(f"wrote {len(paths)} images to {_OUTPUT_DIR.value}")


if __name__ == "__main__":
  cli.run(main)
