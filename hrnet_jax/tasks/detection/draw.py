"""Detections drawn over an image (PIL only): the eval previews in TensorBoard and ``predict``'s pictures."""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw


def draw_boxes(image: Image.Image, boxes: Sequence[Sequence[float]], scores: Sequence[float],
               classes: Sequence[str], threshold: float) -> Image.Image:
  """``image`` (RGB) with each box (xyxy, its pixels) scoring at least ``threshold``, its class and score."""
  image = image.convert("RGB")
  draw = ImageDraw.Draw(image)
  for (x1, y1, x2, y2), score, name in zip(boxes, scores, classes):
    if score >= threshold:
      draw.rectangle((x1, y1, x2, y2), outline=(255, 64, 64), width=max(2, image.width // 300))
      label = f"{name} {score:.2f}"
      draw.rectangle(draw.textbbox((x1 + 3, y1 + 2), label), fill=(0, 0, 0))  # readable on any background
      draw.text((x1 + 3, y1 + 2), label, fill=(255, 255, 255))
  return image
