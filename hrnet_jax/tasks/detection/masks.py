"""Instance masks of Mask R-CNN: the data's box-aligned masks, the targets, the mask head, its loss, and pasting.

- Data (``box_masks``): each object's mask, decoded from its RLE, sampled bilinearly at the centres of a ``size`` x
  ``size`` grid over its own box and binarised at 0.5 (``data.mask_size``, 112 for COCO): a fixed-size array per
  object whatever the image size, flipped with the image. Not as MMDetection, which keeps image-sized masks: the
  TPU reference Mask R-CNN's representation, so batches keep static shapes and stay small.
- Targets (``mask_targets``, MMDetection's ``BitmapMasks.crop_and_resize``): each positive RoI cut out of its ground
  truth's box-aligned mask with aligned, adaptive RoIAlign (the RoI expressed in that grid) to 28 x 28
  (``crop_masks``) and binarised at 0.5. Outside its box a mask is 0, as outside the grid.
- Head (``MaskHead``, ``FCNMaskHead``): RoIAlign 14 x 14 features through four 3x3 convs of 256 with ReLU, a 2x2
  stride-2 deconvolution with ReLU, and a 1x1 conv to one 28 x 28 logit map per class (He-normal over fan-out, zero
  biases, as MMDetection initialises them). ``mask_loss``: binary cross-entropy of each positive's map of its class,
  averaged over the batch's positives and pixels (``mask_cross_entropy``).
- Pasting (``paste_masks``, ``_do_paste_mask``): a predicted ``size`` x ``size`` probability map placed into the
  image by its box with bilinear sampling at pixel centres (``grid_sample``, ``align_corners=False``, zeros outside
  the map), then thresholded at 0.5. It runs on the host in NumPy, one image at a time, before RLE encoding: the
  image-sized masks never exist on the device.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from pycocotools import mask as mask_utils

from hrnet_jax import ops

MASK_SIZE = 28
MASK_THRESHOLD = 0.5
MASK_ROI_SIZE = 14
_HE = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _bilinear_weights(positions: np.ndarray, size: int) -> np.ndarray:
  """[len(positions), size]: the bilinear weights of each position (in pixel indices of a ``size``-pixel axis) on
  its two neighbouring pixels, those outside the axis contributing zeros (``grid_sample``'s zero padding)."""
  low = np.floor(positions).astype(int)
  fraction = positions - low
  weights = np.zeros((len(positions), size + 2))  # two guard columns for the neighbours outside the axis
  rows = np.arange(len(positions))
  np.add.at(weights, (rows, np.clip(low, -1, size) + 1), 1 - fraction)
  np.add.at(weights, (rows, np.clip(low + 1, -1, size) + 1), fraction)
  return weights[:, 1:-1]


def _box_samples(start: float, end: float, count: int) -> np.ndarray:
  """The centres of ``count`` equal cells between ``start`` and ``end`` (pixel edges), in pixel indices."""
  return start + (np.arange(count) + 0.5) * (end - start) / count - 0.5


def box_masks(rles: np.ndarray, count: int, boxes: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
  """The first ``count`` objects' masks (COCO compressed RLE ``counts`` [G] of a ``height`` x ``width`` image),
  each sampled over its box [G, 4] (xyxy, pixel edges) to ``size`` x ``size`` -> [G, size, size] uint8 (0/1; the
  padding objects all 0)."""
  out = np.zeros((len(rles), size, size), np.uint8)
  for k in range(int(count)):
    mask = mask_utils.decode({"size": [int(height), int(width)], "counts": rles[k]}).astype(np.float32)
    x0, y0, x1, y1 = (float(v) for v in boxes[k])
    rows = _bilinear_weights(_box_samples(y0, y1, size), int(height))
    columns = _bilinear_weights(_box_samples(x0, x1, size), int(width))
    used_rows, used_columns = np.flatnonzero(rows.any(0)), np.flatnonzero(columns.any(0))
    if len(used_rows) and len(used_columns):  # only the box's neighbourhood of the image is read
      (top, bottom), (left, right) = used_rows[[0, -1]] + [0, 1], used_columns[[0, -1]] + [0, 1]
      sampled = rows[:, top:bottom] @ mask[top:bottom, left:right] @ columns[:, left:right].T
      out[k] = sampled >= MASK_THRESHOLD
  return out


def crop_masks(masks: jax.Array, gt_boxes: jax.Array, matched: jax.Array, rois: jax.Array,
               size: int = MASK_SIZE, max_samples: int = 4) -> jax.Array:
  """One image's box-aligned masks [G, S, S] (``box_masks``) of its ground-truth boxes [G, 4], and RoIs [K, 4]
  with the ground truth each is ``matched`` to [K] -> [K, size, size]: the share of each cell the mask covers."""
  grid = masks.shape[-1]

  def crop(index, roi):
    box = gt_boxes[index]
    cells = grid / jnp.maximum(box[2:] - box[:2], 1e-6)  # grid cells per image pixel (x, y)
    in_grid = (roi - jnp.tile(box[:2], 2)) * jnp.tile(cells, 2)
    mask = masks[index].astype(jnp.float32)[..., None]
    return ops.roi_align(mask, in_grid[None], size, 1.0, sampling_ratio=0, aligned=True,
                         max_samples=max_samples)[0, ..., 0]
  return jax.vmap(crop)(matched, rois)


def mask_targets(masks: jax.Array, gt_boxes: jax.Array, matched: jax.Array, rois: jax.Array,
                 size: int = MASK_SIZE) -> jax.Array:
  """``crop_masks`` binarised at 0.5: the [K, size, size] targets in float32."""
  return (crop_masks(masks, gt_boxes, matched, rois, size) >= MASK_THRESHOLD).astype(jnp.float32)


class MaskHead(nn.Module):
  """Pooled RoIs [B, R, 14, 14, C] -> mask logits [B, R, 28, 28, num_classes]."""
  num_classes: int
  channels: int = 256
  convs: int = 4
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    leading, x = pooled.shape[:2], pooled.reshape(-1, *pooled.shape[2:])
    options = {"dtype": self.dtype, "param_dtype": self.param_dtype, "kernel_init": _HE}
    for k in range(self.convs):
      x = nn.relu(nn.Conv(self.channels, (3, 3), padding=1, name=f"convs_{k}", **options)(x))
    x = nn.relu(nn.ConvTranspose(self.channels, (2, 2), strides=(2, 2), padding="VALID", name="upsample",
                                 **options)(x))
    logits = nn.Conv(self.num_classes, (1, 1), name="conv_logits", **options)(x)
    return logits.reshape(*leading, *logits.shape[1:]).astype(jnp.float32)


def class_masks(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Each RoI's map of its class: logits [..., h, w, C], labels [...] -> [..., h, w]."""
  index = jnp.minimum(labels, logits.shape[-1] - 1)[..., None, None, None]
  return jnp.take_along_axis(logits, jnp.broadcast_to(index, (*logits.shape[:-1], 1)), -1)[..., 0]


def mask_loss(logits: jax.Array, targets: jax.Array, labels: jax.Array, positive: jax.Array) -> jax.Array:
  """Binary cross-entropy of the positives' maps of their class ([B, R, h, w, C], targets [B, R, h, w]) averaged
  over the batch's positive RoIs and their pixels."""
  losses = optax.sigmoid_binary_cross_entropy(class_masks(logits, labels), targets).mean((-2, -1))
  return jnp.where(positive, losses, 0.0).sum() / jnp.maximum(positive.sum(), 1)


def paste_masks(probabilities: np.ndarray, boxes: np.ndarray, height: int, width: int,
                threshold: float = MASK_THRESHOLD) -> np.ndarray:
  """``probabilities`` [K, size, size] placed by ``boxes`` [K, 4] (xyxy, image pixels) into a ``height`` x
  ``width`` image -> [K, height, width] uint8 masks."""
  probabilities = np.asarray(probabilities, np.float64)
  pasted = np.zeros((len(boxes), height, width), np.uint8)
  for k, (mask, (x0, y0, x1, y1)) in enumerate(zip(probabilities, np.asarray(boxes, np.float64))):
    # Each image pixel centre in the map's pixel indices.
    rows = _bilinear_weights((np.arange(height) + 0.5 - y0) / max(y1 - y0, 1e-6) * mask.shape[0] - 0.5,
                             mask.shape[0])
    columns = _bilinear_weights((np.arange(width) + 0.5 - x0) / max(x1 - x0, 1e-6) * mask.shape[1] - 0.5,
                                mask.shape[1])
    inside_rows, inside_columns = np.flatnonzero(rows.any(1)), np.flatnonzero(columns.any(1))
    if not len(inside_rows) or not len(inside_columns):
      continue
    # Only the box's neighbourhood can be non-zero: compute that block alone.
    (top, bottom), (left, right) = inside_rows[[0, -1]] + [0, 1], inside_columns[[0, -1]] + [0, 1]
    pasted[k, top:bottom, left:right] = rows[top:bottom] @ mask @ columns[left:right].T >= threshold
  return pasted
