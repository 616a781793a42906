"""Detections drawn over an image (PIL only): the eval previews in TensorBoard and ``predict``'s pictures."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

# Distinct colours, cycled over the masks.
PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)], np.float32)


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


def draw_masks(image: Image.Image, masks: np.ndarray, opacity: float = 0.5) -> Image.Image:
  """``image`` with each binary mask [K, H, W] (its pixels) tinted in its own colour."""
  pixels = np.asarray(image.convert("RGB"), np.float32)
  for k, mask in enumerate(np.asarray(masks, bool)):
    pixels[mask] = (1 - opacity) * pixels[mask] + opacity * PALETTE[k % len(PALETTE)]
  return Image.fromarray(pixels.round().astype(np.uint8))
