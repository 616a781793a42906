"""Crop geometry shared by the heatmap recipes (tf.data): the official affine crop of a box, the flip folded into
it, left/right swaps, and the warp.

The official codes solve for the crop from three point pairs with OpenCV and flip the image before warping; here
the crop is the similarity that solution equals, and a flip is folded into the same matrix (one warp, the same
pixels sampled).
"""

from __future__ import annotations

import math

import tensorflow as tf

from hrnet_jax.heatmaps.keypoint_set import PIXEL_STD, KeypointSpec


def affine_matrix(center: tf.Tensor, scale: tf.Tensor, rotation: tf.Tensor | float,
                  output_size: tuple[int, int]) -> tf.Tensor:
  """The 2x3 matrix of the official ``get_affine_transform``: the box's width onto the output width, the box's
  center onto the output's center, rotated by ``rotation`` degrees (counter-clockwise). ``output_size`` is (w, h).

  The official code solves for it from three point pairs with OpenCV; the solution is this similarity."""
  out_w, out_h = output_size
  zoom = out_w / (scale[0] * PIXEL_STD)
  angle = tf.cast(rotation, tf.float32) * (math.pi / 180)
  cos, sin = tf.cos(angle) * zoom, tf.sin(angle) * zoom
  linear = tf.stack([tf.stack([cos, sin]), tf.stack([-sin, cos])])
  offset = tf.constant([out_w / 2, out_h / 2]) - tf.linalg.matvec(linear, center)
  return tf.concat([linear, offset[:, None]], axis=1)


def mirrored_affine_matrix(center: tf.Tensor, scale: tf.Tensor, rotation: tf.Tensor | float,
                           output_size: tuple[int, int], axis: tf.Tensor) -> tf.Tensor:
  """The matrix of an image mirrored by x -> ``axis`` - x, then cropped as ``affine_matrix`` around the mirrored
  center: what the official codes do by flipping the image and the center first (pose: axis = width - 1; facial
  landmarks: axis = width). Folding the flip into the matrix samples the same pixels, in one warp."""
  mirror = tf.stack([tf.stack([-1.0, 0.0, axis]), tf.constant([0.0, 1.0, 0.0])])
  crop = affine_matrix(tf.stack([axis - center[0], center[1]]), scale, rotation, output_size)
  return tf.concat([crop[:, :2] @ mirror[:, :2], crop[:, :2] @ mirror[:, 2:] + crop[:, 2:]], axis=1)


def swap_pairs(flipped: tf.Tensor, spec: KeypointSpec, *per_keypoint: tf.Tensor) -> list[tf.Tensor]:
  """Each [K, ...] tensor in the flipped image's keypoint order when ``flipped`` (left and right swapped)."""
  permutation = tf.constant(spec.flip_permutation())
  return [tf.where(flipped, tf.gather(x, permutation), x) for x in per_keypoint]


def transform_points(points: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
  return points @ tf.transpose(matrix[:, :2]) + matrix[:, 2]


def warp(image: tf.Tensor, matrix: tf.Tensor, output_size: tuple[int, int]) -> tf.Tensor:
  """``cv2.warpAffine(image, matrix, output_size, INTER_LINEAR)`` with a black border; float32 out."""
  inverse = tf.linalg.inv(tf.concat([matrix, tf.constant([[0.0, 0.0, 1.0]])], axis=0))
  transform = tf.concat([tf.reshape(inverse[:2], [6]), tf.zeros([2])], axis=0)
  out_w, out_h = output_size
  warped = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(image, tf.float32)[None], transforms=transform[None], output_shape=tf.constant([out_h, out_w]),
      fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
  return warped[0]
