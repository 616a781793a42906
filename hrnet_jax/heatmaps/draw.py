"""Drawing keypoints and skeletons on images (PIL), for predictions and for looking at ground truth; the drawing
of COCO-style files behind ``python -m hrnet_jax.draw``."""

from __future__ import annotations

import colorsys
import io
import os
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from hrnet_jax import files
from hrnet_jax.heatmaps.keypoint_set import KeypointSpec


def _colours(count: int) -> list[tuple[int, int, int]]:
  return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(count, 1), 0.9, 1.0)) for i in range(count)]


def draw_keypoints(image: Image.Image, people: Iterable[np.ndarray], spec: KeypointSpec,
                   min_confidence: float = 0.0, boxes: Iterable[Sequence[float]] = ()) -> Image.Image:
  """A copy of ``image`` with each person's keypoints ([K, 3]: x, y, visibility or confidence) and limbs drawn;
  a keypoint is drawn when its third value is above ``min_confidence`` (0 = unlabelled in ground truth)."""
  canvas = image.convert("RGB")
  draw = ImageDraw.Draw(canvas)
  radius = max(2, round(max(canvas.size) / 200))
  limb_colours = _colours(len(spec.skeleton))
  for box in boxes:
    x, y, w, h = box
    draw.rectangle([x, y, x + w, y + h], outline=(255, 255, 255), width=max(1, radius // 2))
  for person in people:
    person = np.asarray(person, np.float64)
    shown = person[:, 2] > min_confidence
    for (a, b), colour in zip(spec.skeleton, limb_colours):
      if shown[a] and shown[b]:
        draw.line([tuple(person[a, :2]), tuple(person[b, :2])], fill=colour, width=radius)
    dot = radius if spec.skeleton else max(1, radius // 2)  # dense face landmarks need smaller dots
    for x, y in person[shown, :2]:
      draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=(255, 255, 255), outline=(0, 0, 0))
  return canvas


def fit_width(image: Image.Image, max_width: int) -> Image.Image:
  if not max_width or image.width <= max_width:
    return image
  return image.resize((max_width, round(image.height * max_width / image.width)), Image.BILINEAR)


def draw_coco_file(annotations_path: str, image_dir: str, output_dir: str, spec: KeypointSpec,
                   image_ids: Sequence[int] = (), min_confidence: float = 0.0, max_width: int = 0) -> list[str]:
  """One PNG per image of a COCO-style annotation file (ground truth) or results list (predictions); the paths.
  ``spec`` gives the skeleton (a face set draws points only)."""
  content = files.read_json(annotations_path, "--annotations")
  ground_truth = isinstance(content, dict)
  annotations = content["annotations"] if ground_truth else content
  file_names = ({image["id"]: image["file_name"] for image in content["images"]} if ground_truth else {})
  people: dict[int, list[np.ndarray]] = {}
  for annotation in annotations:
    if annotation.get("iscrowd", 0) or "keypoints" not in annotation:
      continue
    people.setdefault(annotation["image_id"], []).append(np.reshape(annotation["keypoints"], (-1, 3)))
  written = []
  for image_id in (image_ids or sorted(people)):
    if image_id not in people:
      raise ValueError(f"{annotations_path} has no keypoints for image {image_id}")
    name = file_names.get(image_id, f"{image_id:012d}.jpg")
    with Image.open(io.BytesIO(files.path(os.path.join(image_dir, name)).read_bytes())) as image:
      drawn = draw_keypoints(image, people[image_id], spec, min_confidence)
    path = os.path.join(output_dir, f"{os.path.splitext(name)[0]}.png")
    files.save_image(fit_width(drawn, max_width), path)
    written.append(path)
  return written
