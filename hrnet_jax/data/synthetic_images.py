"""Writes synthetic images as PNG files, to look at them or to give ``predict`` some files:

    python -m hrnet_jax.data.synthetic_images --output_dir /tmp/shapes [--split validation] [--count 4] [--size 256]
    python -m hrnet_jax.data.synthetic_images --dataset synthetic_objects --output_dir /tmp/objects   # detection

The pixels are those the dataset holds (``--size`` enlarges them, nearest-neighbour). For the synthetic objects it
also writes the whole split's COCO annotation file as the dataset holds it (all its images, at their own size),
``instances_<split>.json``, for ``data.annotation_file``.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
from absl import flags
from PIL import Image

from hrnet_jax import cli, files

# The synthetic datasets, by name: the module that renders their examples (``render_example``, ``SPLIT_SEEDS``,
# ``SPLIT_SIZES``, ``IMAGE_SIZE``), imported on use (the detection task's is its own).
DATASETS = {"synthetic_shapes": "hrnet_jax.data.synthetic", "synthetic_objects": "hrnet_jax.tasks.detection.synthetic"}

_DATASET = flags.DEFINE_enum("dataset", "synthetic_shapes", list(DATASETS), "Which synthetic dataset.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the PNGs.", required=True)
_SPLIT = flags.DEFINE_string("split", "validation", "train or validation.")
_COUNT = flags.DEFINE_integer("count", 4, "How many images, from the split's first.")
_SIZE = flags.DEFINE_integer("size", 0, "Side of the written images (0: the dataset's own).")


def write_images(output_dir: str, split: str = "validation", count: int = 4, size: int = 0,
                 dataset: str = "synthetic_shapes") -> list[str]:
  """Writes the first ``count`` images of ``split`` as ``<split>_<index>.png`` and returns their paths."""
  renderer = importlib.import_module(DATASETS[dataset])
  if split not in renderer.SPLIT_SIZES:
    raise ValueError(f"unknown split {split!r}; known: {', '.join(renderer.SPLIT_SIZES)}")
  size = size or renderer.IMAGE_SIZE
  os.makedirs(output_dir, exist_ok=True)
  paths = []
  for index in range(count):
    example = renderer.render_example(np.random.default_rng([renderer.SPLIT_SEEDS[split], index]))
    paths.append(os.path.join(output_dir, f"{split}_{index:04d}.png"))
    Image.fromarray(example["image"]).resize((size, size), Image.NEAREST).save(paths[-1])
  return paths


def write_annotations(output_dir: str, split: str, dataset: str) -> str | None:
  """A detection dataset's ``split`` as a COCO annotation file in ``output_dir`` (its path; None for datasets
  without one)."""
  renderer = importlib.import_module(DATASETS[dataset])
  if not hasattr(renderer, "coco_annotations"):
    return None
  path = os.path.join(output_dir, f"instances_{split}.json")
  files.write_json(path, renderer.coco_annotations(split))
  return path


def main(argv):
  del argv
  paths = write_images(_OUTPUT_DIR.value, _SPLIT.value, _COUNT.value, _SIZE.value, _DATASET.value)
  print(f"wrote {len(paths)} images to {_OUTPUT_DIR.value}")
  annotations = write_annotations(_OUTPUT_DIR.value, _SPLIT.value, _DATASET.value)
  if annotations:
    print(f"wrote the {_SPLIT.value} split's COCO annotations, as the dataset holds it, to {annotations}")


if __name__ == "__main__":
  cli.run(main)
