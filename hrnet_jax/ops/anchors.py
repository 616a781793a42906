"""Anchors as MMDetection v2's ``AnchorGenerator`` makes them (the two-stage detectors' RPN): for each level of
stride ``s`` the base anchors are centred on 0 (``center_offset=0``), of width ``s * scale / sqrt(ratio)`` and height
``s * scale * sqrt(ratio)`` (ratio = height / width), ratio-major with the scales inner; each location ``(j, i)``
shifts them by ``(j * s, i * s)``, locations row-major and the anchors of a location together.

Anchors are NumPy arrays: they depend only on static shapes, so a jitted step holds them as constants.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def base_anchors(stride: int, scales: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
  """[len(ratios) * len(scales), 4] xyxy around (0, 0)."""
  heights = np.sqrt(np.asarray(ratios, np.float64))
  widths = 1 / heights
  scales = np.asarray(scales, np.float64)
  ws = (stride * widths[:, None] * scales[None]).ravel()
  hs = (stride * heights[:, None] * scales[None]).ravel()
  return np.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], -1).astype(np.float32)


def anchor_grid(sizes: Sequence[tuple[int, int]], strides: Sequence[int], scales: Sequence[float],
                ratios: Sequence[float]) -> list[np.ndarray]:
  """Each level's anchors [H_l * W_l * A, 4] for feature maps of ``sizes`` (h, w) at ``strides``."""
  if len(sizes) != len(strides):
    raise ValueError(f"{len(sizes)} feature map sizes but {len(strides)} anchor strides")
  grids = []
  for (height, width), stride in zip(sizes, strides):
    ys, xs = np.meshgrid(np.arange(height) * stride, np.arange(width) * stride, indexing="ij")
    shifts = np.stack([xs.ravel(), ys.ravel(), xs.ravel(), ys.ravel()], -1).astype(np.float32)
    grids.append((shifts[:, None] + base_anchors(stride, scales, ratios)[None]).reshape(-1, 4))
  return grids


def anchor_valid(sizes: Sequence[tuple[int, int]], strides: Sequence[int], anchors_per_location: int,
                 image_size: jax.Array) -> jax.Array:
  """[sum of H_l * W_l * A] bool: the anchors at locations inside one image (``image_size`` [2], its (h, w)
  inside the padded batch) padded to a multiple of 32, as MMDetection's ``valid_flags`` with the image's
  ``pad_shape``: locations over the rest of the batch's padding are not trained."""
  padded = (jnp.asarray(image_size, jnp.int32) + 31) // 32 * 32
  levels = []
  for (height, width), stride in zip(sizes, strides):
    rows = jnp.arange(height) < jnp.minimum((padded[0] + stride - 1) // stride, height)
    columns = jnp.arange(width) < jnp.minimum((padded[1] + stride - 1) // stride, width)
    levels.append(jnp.repeat((rows[:, None] & columns[None]).reshape(-1), anchors_per_location))
  return jnp.concatenate(levels)
