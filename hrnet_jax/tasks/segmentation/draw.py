"""Label maps as pictures: the dataset's palette, and the colours blended over the image."""

from __future__ import annotations

import numpy as np
from PIL import Image


def colorize(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
  """A label map [H, W] as an RGB image, class k in ``palette[k]``; ignored pixels (255) black."""
  colours = np.zeros((256, 3), np.uint8)
  colours[:len(palette)] = palette
  return Image.fromarray(colours[np.asarray(labels, np.uint8)], "RGB")


def overlay(image: Image.Image, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> Image.Image:
  """``image`` with the colour-coded ``labels`` blended over it at opacity ``alpha``."""
  return Image.blend(image.convert("RGB"), colorize(labels, palette), alpha)
