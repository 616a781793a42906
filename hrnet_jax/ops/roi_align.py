"""RoIAlign with static shapes, as ``torchvision.ops.roi_align`` (channels last), and its multi-level form as
MMDetection's ``SingleRoIExtractor`` (each box pooled from the pyramid level its size selects).

Only a fixed ``sampling_ratio`` (> 0) is supported: torchvision's adaptive 0 makes the number of samples depend on
each box's size, which a static shape cannot hold.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp


def _samples(start: jnp.ndarray, length: jnp.ndarray, bins: int, sampling_ratio: int,
             size: int) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Along one axis, for each box [K] and bin: the sample points' two neighbouring pixel indices and their
  bilinear weights ([K, bins, sampling_ratio] each, the weights 0 for samples torchvision drops)."""
  bin_size = length / bins
  steps = jnp.arange(bins)[:, None] + (jnp.arange(sampling_ratio)[None] + 0.5) / sampling_ratio
  points = start[:, None, None] + steps[None] * bin_size[:, None, None]
  inside = (points >= -1.0) & (points <= size)
  points = jnp.maximum(points, 0.0)
  low = jnp.floor(points).astype(jnp.int32)
  at_edge = low >= size - 1
  low = jnp.where(at_edge, size - 1, low)
  high = jnp.where(at_edge, size - 1, low + 1)
  fraction = jnp.where(at_edge, 0.0, points - low)
  return low, high, jnp.where(inside, 1 - fraction, 0.0), jnp.where(inside, fraction, 0.0)


def roi_align(features: jnp.ndarray, boxes: jnp.ndarray, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = True) -> jnp.ndarray:
  """``features`` [H, W, C], ``boxes`` [K, 4] (xyxy in input pixels) -> [K, h, w, C]: equal to
  ``torchvision.ops.roi_align`` on the NCHW transpose with the same arguments (``jax.vmap`` it over images).

  Each output bin averages ``sampling_ratio``² bilinear samples; samples more than a pixel outside the map count
  as 0. ``aligned`` shifts the box by half a pixel (the modern convention); without it boxes are at least 1 x 1.
  """
  if sampling_ratio <= 0:
    raise ValueError(f"roi_align needs a fixed sampling_ratio > 0 for static shapes, not {sampling_ratio}")
  out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
  height, width = features.shape[:2]
  offset = 0.5 if aligned else 0.0
  start = boxes[:, :2] * spatial_scale - offset
  length = boxes[:, 2:] * spatial_scale - offset - start
  if not aligned:
    length = jnp.maximum(length, 1.0)
  y_low, y_high, y_low_weight, y_high_weight = _samples(start[:, 1], length[:, 1], out_h, sampling_ratio, height)
  x_low, x_high, x_low_weight, x_high_weight = _samples(start[:, 0], length[:, 0], out_w, sampling_ratio, width)
  rows = lambda index: index[:, :, :, None, None]  # [K, h, s, 1, 1]
  columns = lambda index: index[:, None, None]  # [K, 1, 1, w, s]
  total = 0.0
  for y_index, y_weight in ((y_low, y_low_weight), (y_high, y_high_weight)):
    for x_index, x_weight in ((x_low, x_low_weight), (x_high, x_high_weight)):
      weight = (rows(y_weight) * columns(x_weight))[..., None].astype(features.dtype)
      total = total + weight * features[rows(y_index), columns(x_index)]
  return total.sum((2, 4)) / (sampling_ratio * sampling_ratio)


def roi_levels(boxes: jnp.ndarray, num_levels: int, finest_scale: float = 56.0) -> jnp.ndarray:
  """The pyramid level [K] of each box, as MMDetection's ``map_roi_levels``: ``floor(log2(sqrt(area) /
  finest_scale))`` clipped to the levels (boxes under 112 px on the finest level, stride 4)."""
  scale = jnp.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
  return jnp.clip(jnp.floor(jnp.log2(scale / finest_scale + 1e-6)), 0, num_levels - 1).astype(jnp.int32)


def multilevel_roi_align(features: Sequence[jnp.ndarray], boxes: jnp.ndarray, output_size: int | tuple[int, int],
                         strides: Sequence[int], sampling_ratio: int = 2, aligned: bool = True,
                         finest_scale: float = 56.0) -> jnp.ndarray:
  """``roi_align`` of each box [K, 4] on the level ``roi_levels`` gives it (``features[l]`` [H_l, W_l, C] at
  ``strides[l]``) -> [K, h, w, C]. Every level pools every box (static shapes) and each box keeps its level's."""
  if len(features) != len(strides):
    raise ValueError(f"{len(features)} feature levels but {len(strides)} strides")
  levels = roi_levels(boxes, len(features), finest_scale)
  pooled = jnp.stack([roi_align(level, boxes, output_size, 1.0 / stride, sampling_ratio, aligned)
                      for level, stride in zip(features, strides)])
  return jnp.take_along_axis(pooled, levels[None, :, None, None, None], 0)[0]
