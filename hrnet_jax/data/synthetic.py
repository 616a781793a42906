"""Synthetic shapes: the embedded default dataset, generated locally and deterministically (no download).

Each 64x64 image shows one regular polygon (3 to 6 vertices; the class) of a random colour, size and rotation on
a smooth random texture. Labels for every task: the class, a per-pixel mask (0 background, 1 + class inside the
shape), the vertices as keypoints (6 slots, visibility 0 beyond the polygon's vertex count) and the shape's box.
``synthetic_builder.SyntheticShapes`` makes it a ``tensorflow_datasets`` dataset, so it flows through the same
pipeline as ImageNet or COCO; ``python -m hrnet_jax.data.synthetic_images`` writes examples as PNG files. This
module is NumPy and PIL only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
CLASS_NAMES = ("triangle", "square", "pentagon", "hexagon")
MAX_VERTICES = 6
SPLIT_SIZES = {"train": 4096, "validation": 512}
SPLIT_SEEDS = {"train": 0, "validation": 1}


def render_example(rng: np.random.Generator) -> dict[str, np.ndarray | int]:
  """One example; a pure function of the generator's state."""
  label = int(rng.integers(len(CLASS_NAMES)))
  num_vertices = label + 3
  # Background: low-resolution noise upsampled into a smooth texture, with a random tint.
  coarse = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.uint8)
  background = np.asarray(Image.fromarray(coarse).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC), np.float32)
  tint = rng.uniform(0.3, 0.7, size=3)
  image = Image.fromarray(np.clip(background * tint + 40, 0, 255).astype(np.uint8))

  radius = rng.uniform(12, 24)
  center = rng.uniform(radius + 2, IMAGE_SIZE - radius - 2, size=2)
  angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(num_vertices) / num_vertices
  vertices = center + radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
  polygon = [tuple(v) for v in vertices]
  colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
  ImageDraw.Draw(image).polygon(polygon, fill=colour)
  mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
  ImageDraw.Draw(mask).polygon(polygon, fill=label + 1)

  keypoints = np.zeros((MAX_VERTICES, 3), np.float32)
  keypoints[:num_vertices, :2] = vertices
  keypoints[:num_vertices, 2] = 2  # COCO convention: 2 = labelled and visible
  low, high = vertices.min(axis=0), vertices.max(axis=0)
  return {
      "image": np.asarray(image, np.uint8),
      "mask": np.asarray(mask, np.uint8)[..., None],
      "label": label,
      "keypoints": keypoints,
      "bbox": np.array([low[0], low[1], high[0] - low[0], high[1] - low[1]], np.float32),  # x, y, w, h
  }
