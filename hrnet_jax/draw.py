"""Drawing keypoints and skeletons on images (PIL), for predictions and for looking at ground truth:

    python -m hrnet_jax.draw --annotations person_keypoints_val2017.json --images val2017 --output_dir /tmp/gt \\
        [--image_ids 785,40083] [--max_width 640] [--keypoints coco|wflw|300w|cofw|aflw]

``--annotations`` is a COCO annotation file (its ground truth is drawn) or a COCO results list (predictions, e.g.
``predict``'s JSON; then ``--min_confidence`` hides weak keypoints). One PNG per image.
"""

from __future__ import annotations

import colorsys
import json
import os
from typing import Iterable, Sequence

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from hrnet_jax import cli, keypoints


def _colours(count: int) -> list[tuple[int, int, int]]:
  return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(count, 1), 0.9, 1.0)) for i in range(count)]


def colorize(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
  """A label map [H, W] as an RGB image, class k in ``palette[k]``; ignored pixels (255) black."""
  colours = np.zeros((256, 3), np.uint8)
  colours[:len(palette)] = palette
  return Image.fromarray(colours[np.asarray(labels, np.uint8)], "RGB")


def overlay(image: Image.Image, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> Image.Image:
  """``image`` with the colour-coded ``labels`` blended over it at opacity ``alpha``."""
  return Image.blend(image.convert("RGB"), colorize(labels, palette), alpha)


def draw_keypoints(image: Image.Image, people: Iterable[np.ndarray], spec: keypoints.KeypointSpec,
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


def draw_coco_file(annotations_path: str, image_dir: str, output_dir: str, image_ids: Sequence[int] = (),
                   min_confidence: float = 0.0, max_width: int = 0,
                   spec: keypoints.KeypointSpec = keypoints.COCO) -> list[str]:
  """One PNG per image of a COCO-style annotation file (ground truth) or results list (predictions); the paths.
  ``spec`` gives the skeleton (COCO's people by default; a face set draws points only)."""
  with open(annotations_path) as f:
    content = json.load(f)
  ground_truth = isinstance(content, dict)
  annotations = content["annotations"] if ground_truth else content
  file_names = ({image["id"]: image["file_name"] for image in content["images"]} if ground_truth else {})
  people: dict[int, list[np.ndarray]] = {}
  for annotation in annotations:
    if annotation.get("iscrowd", 0) or "keypoints" not in annotation:
      continue
    people.setdefault(annotation["image_id"], []).append(np.reshape(annotation["keypoints"], (-1, 3)))
  os.makedirs(output_dir, exist_ok=True)
  written = []
  for image_id in (image_ids or sorted(people)):
    if image_id not in people:
      raise ValueError(f"{annotations_path} has no keypoints for image {image_id}")
    name = file_names.get(image_id, f"{image_id:012d}.jpg")
    with Image.open(os.path.join(image_dir, name)) as image:
      drawn = draw_keypoints(image, people[image_id], spec, min_confidence)
    path = os.path.join(output_dir, f"{os.path.splitext(name)[0]}.png")
    fit_width(drawn, max_width).save(path)
    written.append(path)
  return written


def main(argv):
  """The CLI (its flags are defined only when run, so importing this module adds none to another program)."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  values = flags.FLAGS
  for name in ("annotations", "images", "output_dir"):
    if not values[name].value:
      raise ValueError(f"--{name} is required")
  paths = draw_coco_file(values.annotations, values.images, values.output_dir,
                         [int(i) for i in values.image_ids], values.min_confidence, values.max_width,
                         keypoints.get_spec(values.keypoints))
  print("\n".join(paths))


if __name__ == "__main__":
  flags.DEFINE_string("annotations", None, "COCO annotation file or results list.")
  flags.DEFINE_string("images", None, "Folder of the images.")
  flags.DEFINE_string("output_dir", None, "Where to write the PNGs.")
  flags.DEFINE_list("image_ids", [], "Only these image ids (default: every image with keypoints).")
  flags.DEFINE_float("min_confidence", 0.0, "Hide keypoints whose score is not above this.")
  flags.DEFINE_integer("max_width", 0, "Shrink wider images to this width (0: keep).")
  flags.DEFINE_string("keypoints", "coco", "The keypoint set (for the skeleton): coco, wflw, 300w, cofw, aflw.")
  cli.run(main)
