"""Instance masks of Mask R-CNN, as MMDetection v2 makes and uses them.

- Targets (``mask_targets``, ``BitmapMasks.crop_and_resize``): each positive RoI's ground-truth mask cut out by the
  RoI with aligned, adaptive RoIAlign to ``size`` x ``size`` (28) and binarised at 0.5 (a bin half covered is
  inside: with few samples per bin such ties are common, so the sample count matters).
- Pasting (``paste_masks``, ``_do_paste_mask``): a predicted ``size`` x ``size`` probability map placed into the
  image by its box with bilinear sampling at pixel centres (``grid_sample``, ``align_corners=False``, zeros outside
  the map), then thresholded at 0.5. It runs on the host in NumPy, one image at a time, before RLE encoding: the
  image-sized masks never exist on the device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax import ops

MASK_SIZE = 28
MASK_THRESHOLD = 0.5


def mask_targets(masks: jax.Array, matched: jax.Array, rois: jax.Array, size: int = MASK_SIZE,
                 max_samples: int = 16) -> jax.Array:
  """``masks`` [G, H, W] (0/1) of one image, each RoI [K, 4]'s ground truth ``matched`` [K] -> [K, size, size]
  binary targets in float32. RoIAlign samples adaptively, as MMDetection's ``sampling_ratio=0``: exact for RoIs up
  to ``max_samples * size`` pixels (448), fewer samples beyond."""
  def crop(index, box):
    mask = masks[index].astype(jnp.float32)[..., None]
    return ops.roi_align(mask, box[None], size, 1.0, sampling_ratio=0, aligned=True,
                         max_samples=max_samples)[0, ..., 0]
  return (jax.vmap(crop)(matched, rois) >= 0.5).astype(jnp.float32)


def _sampling_weights(start: float, end: float, pixels: int, size: int) -> np.ndarray:
  """[pixels, size]: bilinear weights of the mask's rows (or columns) for each image pixel centre between a box's
  ``start`` and ``end``, as ``grid_sample`` with ``align_corners=False`` and zero padding."""
  extent = max(end - start, 1e-6)
  position = (np.arange(pixels) + 0.5 - start) / extent * size - 0.5  # in mask pixel indices
  low = np.floor(position).astype(int)
  fraction = position - low
  weights = np.zeros((pixels, size + 2))  # two guard columns for the neighbours outside the map
  rows = np.arange(pixels)
  np.add.at(weights, (rows, np.clip(low, -1, size) + 1), 1 - fraction)
  np.add.at(weights, (rows, np.clip(low + 1, -1, size) + 1), fraction)
  return weights[:, 1:-1]


def paste_masks(probabilities: np.ndarray, boxes: np.ndarray, height: int, width: int,
                threshold: float = MASK_THRESHOLD) -> np.ndarray:
  """``probabilities`` [K, size, size] placed by ``boxes`` [K, 4] (xyxy, image pixels) into a ``height`` x
  ``width`` image -> [K, height, width] uint8 masks."""
  probabilities = np.asarray(probabilities, np.float64)
  pasted = np.zeros((len(boxes), height, width), np.uint8)
  for k, (mask, (x0, y0, x1, y1)) in enumerate(zip(probabilities, np.asarray(boxes, np.float64))):
    rows = _sampling_weights(y0, y1, height, mask.shape[0])
    columns = _sampling_weights(x0, x1, width, mask.shape[1])
    inside_rows, inside_columns = np.flatnonzero(rows.any(1)), np.flatnonzero(columns.any(1))
    if not len(inside_rows) or not len(inside_columns):
      continue
    # Only the box's neighbourhood can be non-zero: compute that block alone.
    (top, bottom), (left, right) = inside_rows[[0, -1]] + [0, 1], inside_columns[[0, -1]] + [0, 1]
    pasted[k, top:bottom, left:right] = rows[top:bottom] @ mask @ columns[left:right].T >= threshold
  return pasted
