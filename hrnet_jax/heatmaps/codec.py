"""Heatmaps both ways: the Gaussian targets a recipe encodes keypoints into (tf.data), and reading keypoints back
out of predicted heatmaps (JAX), shared by pose and landmarks.

Both follow deep-high-resolution-net.pytorch exactly (the target's Gaussian centred on the rounded heatmap
position; argmax, the quarter-pixel step toward the higher neighbour, flip test with the one-pixel shift) because
those details move COCO AP by tenths of a point. In this module TensorFlow is imported by ``gaussian_targets``
only, when a pipeline is traced: decoding, which the losses and metrics use, runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import jax
import jax.numpy as jnp

from hrnet_jax.heatmaps.keypoint_set import PIXEL_STD, KeypointSpec

if TYPE_CHECKING:
  import tensorflow as tf


def gaussian_targets(joints: tf.Tensor, visible: tf.Tensor, image_size: tuple[int, int],
                     heatmap_size: tuple[int, int], sigma: float,
                     round_to_nearest: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
  """The official ``generate_target`` ('gaussian'): per joint a Gaussian of ``sigma`` heatmap pixels centred on
  the rounded heatmap position, cut to a (6 sigma + 1)-pixel window; the weight is 0 for unlabelled joints and
  for joints whose window lies wholly outside the map. Sizes are (w, h). Returns ([h, w, K] heatmaps, [K]).
  ``round_to_nearest`` False truncates the position instead (the facial-landmark code's ``astype(int)``)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel,redefined-outer-name  (tf.data only)
  (image_w, image_h), (map_w, map_h) = image_size, heatmap_size
  stride = tf.constant([image_w / map_w, image_h / map_h])
  radius = sigma * 3
  offset = 0.5 if round_to_nearest else 0.0
  mu = tf.cast(tf.cast(joints / stride + offset, tf.int32), tf.float32)  # int() truncates, as the official code
  upper_left = tf.cast(tf.cast(mu - radius, tf.int32), tf.float32)
  lower_right = tf.cast(tf.cast(mu + radius + 1, tf.int32), tf.float32)
  peak = upper_left + float((2 * radius + 1) // 2)
  outside = tf.reduce_any((upper_left >= [map_w, map_h]) | (lower_right < 0), axis=-1)
  weight = tf.where(outside, 0.0, tf.cast(visible > 0, tf.float32))
  xs = tf.range(map_w, dtype=tf.float32)[None, :, None]
  ys = tf.range(map_h, dtype=tf.float32)[:, None, None]
  in_window = ((xs >= upper_left[:, 0]) & (xs < lower_right[:, 0]) & (ys >= upper_left[:, 1])
               & (ys < lower_right[:, 1]))
  gaussian = tf.exp(-((xs - peak[:, 0]) ** 2 + (ys - peak[:, 1]) ** 2) / (2 * sigma**2))
  return tf.where(in_window & (weight > 0.5), gaussian, 0.0), weight


def flip_heatmaps(heatmaps: jax.Array, spec: KeypointSpec, shift: bool = True) -> jax.Array:
  """Heatmaps predicted on a flipped image ([B, H, W, K]) brought back to the original: mirrored, left/right
  channels swapped, and (``shift``, the official SHIFT_HEATMAP) moved one pixel right, because the flip maps
  pixel x to W - 1 - x in the image but the 1/4-resolution heatmap grid does not flip onto itself."""
  heatmaps = heatmaps[:, :, ::-1, :][..., jnp.asarray(spec.flip_permutation())]
  if shift:
    heatmaps = jnp.concatenate([heatmaps[:, :, :1], heatmaps[:, :, :-1]], axis=2)
  return heatmaps


def heatmap_maxima(heatmaps: jax.Array, refine: bool = True, margin: int = 2) -> tuple[jax.Array, jax.Array]:
  """Per keypoint: (x, y) in heatmap pixels [B, K, 2] and the peak value [B, K].

  As the official ``get_final_preds``: the argmax (0 where the peak is not positive), then a quarter pixel
  toward the higher neighbour in x and y when the peak is at least ``margin`` pixels from the left/top edge and
  2 from the right/bottom (the pose code; the facial-landmark code's ``decode_preds`` uses margin 1)."""
  batch, height, width, count = heatmaps.shape
  flat = heatmaps.transpose(0, 3, 1, 2).reshape(batch, count, height * width)
  maxvals = jnp.max(flat, axis=-1)
  # argmax (the first maximum) as max then min index: jnp.argmax's two-operand reduce has no TFLite kernel.
  positions = jnp.arange(height * width)
  index = jnp.min(jnp.where(flat == maxvals[..., None], positions, height * width - 1), axis=-1)
  x, y = index % width, index // width
  coords = jnp.stack([x, y], -1).astype(jnp.float32) * (maxvals > 0)[..., None]
  if not refine:
    return coords, maxvals
  px, py = (jnp.floor(coords[..., 0] + 0.5).astype(jnp.int32), jnp.floor(coords[..., 1] + 0.5).astype(jnp.int32))
  inside = (px >= margin) & (px < width - 1) & (py >= margin) & (py < height - 1)

  def at(dx, dy):
    xs, ys = jnp.clip(px + dx, 0, width - 1), jnp.clip(py + dy, 0, height - 1)
    return jnp.take_along_axis(flat, (ys * width + xs)[..., None], axis=-1)[..., 0]

  step = jnp.stack([jnp.sign(at(1, 0) - at(-1, 0)), jnp.sign(at(0, 1) - at(0, -1))], -1) * 0.25
  return coords + jnp.where(inside[..., None], step, 0.0), maxvals


def heatmap_to_image(coords: jax.Array, center: jax.Array, scale: jax.Array,
                     heatmap_size: tuple[int, int]) -> jax.Array:
  """Heatmap coordinates [B, K, 2] back to the original image (the official ``transform_preds``, rotation 0):
  the box ``center`` +- ``scale`` * 200 / 2 spans the heatmap (``heatmap_size`` is (height, width))."""
  height, width = heatmap_size
  pixels_per_cell = scale[:, None, 0:1] * PIXEL_STD / width
  return (coords - jnp.asarray([width / 2, height / 2])) * pixels_per_cell + center[:, None, :]


def predict_heatmaps(apply: Callable[[jax.Array], jax.Array], images: jax.Array, spec: KeypointSpec,
                     flip_test: bool) -> jax.Array:
  """Heatmaps of ``images`` [B, H, W, 3], averaged with those of the mirrored images when ``flip_test``."""
  heatmaps = apply(images).astype(jnp.float32)
  if flip_test:
    heatmaps = 0.5 * (heatmaps + flip_heatmaps(apply(images[:, :, ::-1]).astype(jnp.float32), spec))
  return heatmaps
