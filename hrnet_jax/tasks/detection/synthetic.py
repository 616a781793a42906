"""Synthetic multi-object images: the detection task's embedded default data (NumPy and PIL; no download).

Each 128x128 image shows 1 to 5 regular polygons (3 to 6 vertices: 4 classes, as the synthetic shapes) of 8 to 60
pixels across, at random places, colours and rotations over a smooth texture; later polygons hide earlier ones.
Each object is labelled by its *visible* part, as COCO annotates: its mask, that mask's box and pixel area; an
object hidden below 20 visible pixels is dropped. One image in ten also has a crowd region (``iscrowd``: a cloud
of small dots of one class, which evaluation ignores and training skips). Objects are stored padded to
``MAX_OBJECTS``, so every example has the same shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from hrnet_jax.data.synthetic import CLASS_NAMES

IMAGE_SIZE = 128
MAX_OBJECTS = 8  # 5 polygons and a crowd region at most
SPLIT_SIZES = {"train": 2048, "validation": 128}
SPLIT_SEEDS = {"train": 10, "validation": 11}
MIN_VISIBLE_PIXELS = 20


def _texture(rng: np.random.Generator) -> Image.Image:
  coarse = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.uint8)
  background = np.asarray(Image.fromarray(coarse).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC), np.float32)
  return Image.fromarray(np.clip(background * rng.uniform(0.3, 0.7, size=3) + 40, 0, 255).astype(np.uint8))


def _polygon(rng: np.random.Generator, label: int) -> list[tuple[float, float]]:
  radius = rng.uniform(4, 30)
  centre = rng.uniform(0, IMAGE_SIZE, size=2)
  count = label + 3
  angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(count) / count
  return [tuple(v) for v in centre + radius * np.stack([np.cos(angles), np.sin(angles)], -1)]


def _crowd(rng: np.random.Generator) -> list[tuple[float, float, float]]:
  """Dots (x, y, radius) in one 30-50 pixel area."""
  corner = rng.uniform(0, IMAGE_SIZE - 50, size=2)
  extent = rng.uniform(30, 50, size=2)
  return [(*(corner + rng.uniform(0, 1, 2) * extent), rng.uniform(1.5, 3)) for _ in range(int(rng.integers(8, 16)))]


def render_example(rng: np.random.Generator, image_id: int = 1) -> dict[str, np.ndarray | int]:
  """One image and its objects (``OBJECT_FEATURES``, padded); a pure function of the generator's state and the
  id it is given."""
  image = _texture(rng)
  owner = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)  # which object each pixel shows (0: none)
  draw, draw_owner = ImageDraw.Draw(image), ImageDraw.Draw(owner)
  labels, crowd = [], []
  for k in range(int(rng.integers(1, 6))):
    label = int(rng.integers(len(CLASS_NAMES)))
    polygon = _polygon(rng, label)
    draw.polygon(polygon, fill=tuple(int(c) for c in rng.integers(0, 256, size=3)))
    draw_owner.polygon(polygon, fill=k + 1)
    labels.append(label)
    crowd.append(False)
  if rng.uniform() < 0.1:
    label, colour = int(rng.integers(len(CLASS_NAMES))), tuple(int(c) for c in rng.integers(0, 256, size=3))
    for x, y, r in _crowd(rng):
      draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
      draw_owner.ellipse((x - r, y - r, x + r, y + r), fill=len(labels) + 1)
    labels.append(label)
    crowd.append(True)
  owner = np.asarray(owner)
  objects = {"boxes": np.zeros((MAX_OBJECTS, 4), np.float32), "labels": np.zeros(MAX_OBJECTS, np.int64),
             "is_crowd": np.zeros(MAX_OBJECTS, bool), "areas": np.zeros(MAX_OBJECTS, np.float32),
             "object_ids": np.zeros(MAX_OBJECTS, np.int64), "rles": np.full(MAX_OBJECTS, b"", object)}
  count = 0
  for k, (label, is_crowd) in enumerate(zip(labels, crowd)):
    visible = owner == k + 1
    if visible.sum() < MIN_VISIBLE_PIXELS:
      continue
    ys, xs = np.nonzero(visible)
    rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
    objects["boxes"][count] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # pixel edges, xyxy
    objects["labels"][count], objects["is_crowd"][count] = label, is_crowd
    objects["areas"][count] = float(mask_utils.area(rle))
    objects["object_ids"][count] = image_id * MAX_OBJECTS + count + 1
    objects["rles"][count] = rle["counts"]
    count += 1
  return {"image": np.asarray(image, np.uint8), "image_id": image_id, "num_objects": count, **objects}


def coco_annotations(split: str) -> dict[str, Any]:
  """The split as a COCO instances file, as an official annotation file holds it: the builder's image ids (index
  + 1), file names as ``synthetic_images`` writes them, and each object's box (xywh), visible area, crowd flag and
  mask (compressed RLE). Evaluation reads it through ``data.annotation_file``, as it reads COCO's."""
  images, annotations = [], []
  for index in range(SPLIT_SIZES[split]):
    example = render_example(np.random.default_rng([SPLIT_SEEDS[split], index]), index + 1)
    images.append({"id": index + 1, "file_name": f"{split}_{index:04d}.png", "width": IMAGE_SIZE,
                   "height": IMAGE_SIZE})
    for k in range(example["num_objects"]):
      x1, y1, x2, y2 = (float(v) for v in example["boxes"][k])
      annotations.append({"id": int(example["object_ids"][k]), "image_id": index + 1,
                          "category_id": int(example["labels"][k]) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                          "area": float(example["areas"][k]), "iscrowd": int(example["is_crowd"][k]),
                          "segmentation": {"size": [IMAGE_SIZE, IMAGE_SIZE],
                                           "counts": example["rles"][k].decode()}})
  categories = [{"id": label + 1, "name": name} for label, name in enumerate(CLASS_NAMES)]
  return {"images": images, "annotations": annotations, "categories": categories}
