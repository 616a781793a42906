"""RoIAlign with static shapes, as ``torchvision.ops.roi_align`` (channels last), and its multi-level form as
MMDetection's ``SingleRoIExtractor`` (each box pooled from the pyramid level its size selects).

torchvision's adaptive ``sampling_ratio=0`` (``ceil(box size / bins)`` samples per bin and axis, so a number that
depends on each box) takes a static ``max_samples``: every box computes that many and keeps its own count's, exact
for boxes up to ``max_samples * bins`` pixels on the map.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np


def _samples(start: jnp.ndarray, length: jnp.ndarray, bins: int, sampling_ratio: int, size: jnp.ndarray,
             max_samples: int) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Along one axis, for each box [K] (on a map of ``size`` [K] pixels) and bin: the sample points' two
  neighbouring pixel indices and their bilinear weights ([K, bins, samples] each, the weights 0 for samples
  torchvision drops or does not take), and the number of samples of each box [K]."""
  bin_size = length / bins
  if sampling_ratio > 0:
    count, slots = jnp.full(start.shape, sampling_ratio, jnp.float32), sampling_ratio
  else:  # adaptive: ceil(bin size) samples (none for an empty box, as torchvision)
    count, slots = jnp.clip(jnp.ceil(bin_size), 0, max_samples), max_samples
  taken = jnp.arange(slots)[None] < count[:, None]  # [K, slots]
  steps = (jnp.arange(slots)[None] + 0.5) / jnp.maximum(count[:, None], 1)  # [K, slots]
  points = start[:, None, None] + (jnp.arange(bins)[None, :, None] + steps[:, None]) * bin_size[:, None, None]
  size = size[:, None, None]
  inside = (points >= -1.0) & (points <= size) & taken[:, None]
  points = jnp.maximum(points, 0.0)
  low = jnp.floor(points).astype(jnp.int32)
  at_edge = low >= size - 1
  low = jnp.where(at_edge, size - 1, low)
  high = jnp.where(at_edge, size - 1, low + 1)
  fraction = jnp.where(at_edge, 0.0, points - low)
  return low, high, jnp.where(inside, 1 - fraction, 0.0), jnp.where(inside, fraction, 0.0), count


def _pool(table: jnp.ndarray, boxes: jnp.ndarray, scale: jnp.ndarray, height: jnp.ndarray, width: jnp.ndarray,
          first: jnp.ndarray, output_size: int | tuple[int, int], sampling_ratio: int, aligned: bool,
          max_samples: int) -> jnp.ndarray:
  """RoIAlign of boxes [K, 4] from maps flattened row-major into ``table`` [N, C]: box k's map has ``height[k]``
  x ``width[k]`` pixels from row ``first[k]``, and ``scale[k]`` map pixels per input pixel. One gather of C-vectors
  per bilinear corner, whatever map each box reads."""
  out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
  offset = 0.5 if aligned else 0.0
  start = boxes[:, :2] * scale[:, None] - offset
  length = boxes[:, 2:] * scale[:, None] - offset - start
  if not aligned:
    length = jnp.maximum(length, 1.0)
  y_low, y_high, y_low_weight, y_high_weight, y_count = _samples(start[:, 1], length[:, 1], out_h, sampling_ratio,
                                                                  height, max_samples)
  x_low, x_high, x_low_weight, x_high_weight, x_count = _samples(start[:, 0], length[:, 0], out_w, sampling_ratio,
                                                                  width, max_samples)
  rows = lambda index: index[:, :, :, None, None]  # [K, h, s, 1, 1]
  columns = lambda index: index[:, None, None]  # [K, 1, 1, w, s]
  base, stride = first[:, None, None, None, None], width[:, None, None, None, None]
  total = 0.0
  for y_index, y_weight in ((y_low, y_low_weight), (y_high, y_high_weight)):
    for x_index, x_weight in ((x_low, x_low_weight), (x_high, x_high_weight)):
      weight = (rows(y_weight) * columns(x_weight))[..., None].astype(table.dtype)
      total = total + weight * table[base + rows(y_index) * stride + columns(x_index)]
  return total.sum((2, 4)) / jnp.maximum(y_count * x_count, 1)[:, None, None, None].astype(table.dtype)


def roi_align(features: jnp.ndarray, boxes: jnp.ndarray, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = True,
              max_samples: int = 8) -> jnp.ndarray:
  """``features`` [H, W, C], ``boxes`` [K, 4] (xyxy in input pixels) -> [K, h, w, C]: equal to
  ``torchvision.ops.roi_align`` on the NCHW transpose with the same arguments (``jax.vmap`` it over images).

  Each output bin averages ``sampling_ratio``² bilinear samples (0: adaptive, at most ``max_samples``² of them);
  samples more than a pixel outside the map count as 0. ``aligned`` shifts the box by half a pixel (the modern
  convention); without it boxes are at least 1 x 1.
  """
  height, width, channels = features.shape
  every = lambda value, dtype: jnp.full(boxes.shape[0], value, dtype)  # noqa: E731
  return _pool(features.reshape(height * width, channels), boxes, every(spatial_scale, jnp.float32),
               every(height, jnp.int32), every(width, jnp.int32), every(0, jnp.int32), output_size, sampling_ratio,
               aligned, max_samples)


def roi_levels(boxes: jnp.ndarray, num_levels: int, finest_scale: float = 56.0) -> jnp.ndarray:
  """The pyramid level [K] of each box, as MMDetection's ``map_roi_levels``: ``floor(log2(sqrt(area) /
  finest_scale))`` clipped to the levels (boxes under 112 px on the finest level, stride 4)."""
  scale = jnp.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
  return jnp.clip(jnp.floor(jnp.log2(scale / finest_scale + 1e-6)), 0, num_levels - 1).astype(jnp.int32)


def multilevel_roi_align(features: Sequence[jnp.ndarray], boxes: jnp.ndarray, output_size: int | tuple[int, int],
                         strides: Sequence[int], sampling_ratio: int = 2, aligned: bool = True,
                         finest_scale: float = 56.0, max_samples: int = 8) -> jnp.ndarray:
  """``roi_align`` of each box [K, 4] on the level ``roi_levels`` gives it (``features[l]`` [H_l, W_l, C] at
  ``strides[l]``) -> [K, h, w, C]. The levels are flattened into one table, so each box samples its own level
  only (static shapes without pooling every box from every level)."""
  if len(features) != len(strides):
    raise ValueError(f"{len(features)} feature levels but {len(strides)} strides")
  levels = roi_levels(boxes, len(features), finest_scale)
  heights = np.array([level.shape[0] for level in features], np.int32)
  widths = np.array([level.shape[1] for level in features], np.int32)
  firsts = np.concatenate([[0], np.cumsum(heights * widths)[:-1]]).astype(np.int32)
  table = jnp.concatenate([level.reshape(-1, level.shape[-1]) for level in features])
  scales = jnp.asarray(1.0 / np.asarray(strides, np.float32))
  return _pool(table, boxes, scales[levels], jnp.asarray(heights)[levels], jnp.asarray(widths)[levels],
               jnp.asarray(firsts)[levels], output_size, sampling_ratio, aligned, max_samples)
