"""Top-down keypoint preprocessing in tf.data: box -> center/scale, augmentation, affine warp, Gaussian targets.

Follows deep-high-resolution-net.pytorch (``JointsDataset``) step for step, including its conventions (a box is
measured in units of 200 pixels, pixel centers at integer coordinates, the target's Gaussian centred on the
rounded heatmap position), so that a model trained here is evaluated like the official one. Two differences that
change nothing numerically: the horizontal flip is folded into the affine matrix (``mirrored_affine_matrix``)
instead of flipping the image first, and every random number is drawn statelessly from the example's seed.
"""

from __future__ import annotations

import math
from typing import Callable

import ml_collections
import tensorflow as tf

from hrnet_jax import keypoints as keypoints_lib

PIXEL_STD = keypoints_lib.PIXEL_STD


def box_to_center_scale(box: tf.Tensor, aspect_ratio: float, padding: float = 1.25) -> tuple[tf.Tensor, tf.Tensor]:
  """[x, y, w, h] -> (center, scale): the box grown to ``aspect_ratio`` (w / h), padded, in units of 200 px."""
  box = tf.cast(box, tf.float32)
  x, y, w, h = box[0], box[1], box[2], box[3]
  center = tf.stack([x + w * 0.5, y + h * 0.5])
  w, h = tf.where(w > aspect_ratio * h, w, h * aspect_ratio), tf.where(w > aspect_ratio * h, w / aspect_ratio, h)
  return center, tf.stack([w, h]) / PIXEL_STD * padding


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


def swap_pairs(flipped: tf.Tensor, spec: keypoints_lib.KeypointSpec, *per_keypoint: tf.Tensor) -> list[tf.Tensor]:
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


def gaussian_targets(joints: tf.Tensor, visible: tf.Tensor, image_size: tuple[int, int],
                     heatmap_size: tuple[int, int], sigma: float,
                     round_to_nearest: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
  """The official ``generate_target`` ('gaussian'): per joint a Gaussian of ``sigma`` heatmap pixels centred on
  the rounded heatmap position, cut to a (6 sigma + 1)-pixel window; the weight is 0 for unlabelled joints and
  for joints whose window lies wholly outside the map. Sizes are (w, h). Returns ([h, w, K] heatmaps, [K]).
  ``round_to_nearest`` False truncates the position instead (the facial-landmark code's ``astype(int)``)."""
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


def half_body(joints: tf.Tensor, visible: tf.Tensor, spec: keypoints_lib.KeypointSpec, aspect_ratio: float,
              seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The official ``half_body_transform``: a box around the labelled upper- or lower-body joints, grown by 1.5.
  Returns (ok, center, scale); ``ok`` is False when the chosen half has fewer than two labelled joints."""
  labelled = visible > 0
  upper = tf.constant([i in spec.upper_body for i in range(spec.count)])
  num_upper = tf.reduce_sum(tf.cast(labelled & upper, tf.int32))
  num_lower = tf.reduce_sum(tf.cast(labelled & ~upper, tf.int32))
  # The official code tests ``np.random.randn() < 0.5`` (a normal draw, so the upper half about 69% of the time).
  pick_upper = (tf.random.stateless_normal([], seed) < 0.5) & (num_upper > 2)
  pick_upper = pick_upper | ~(num_lower > 2)
  selected = labelled & tf.where(pick_upper, upper, ~upper)
  points = tf.boolean_mask(joints, selected)
  ok = tf.shape(points)[0] >= 2
  points = tf.cond(ok, lambda: points, lambda: tf.zeros([2, 2]))
  low, high = tf.reduce_min(points, 0), tf.reduce_max(points, 0)
  w, h = high[0] - low[0], high[1] - low[1]
  w, h = tf.where(w > aspect_ratio * h, w, h * aspect_ratio), tf.where(w > aspect_ratio * h, w / aspect_ratio, h)
  return ok, tf.reduce_mean(points, 0), tf.stack([w, h]) / PIXEL_STD * 1.5


def fold_seed(seed: tf.Tensor, salt: int) -> tf.Tensor:
  """An independent stateless seed for the ``salt``-th random draw of an example."""
  return tf.random.experimental.stateless_fold_in(seed, salt)


class TopDown:
  """Train and eval preprocessing over examples with ``image`` (encoded), ``bbox`` [x, y, w, h], ``keypoints``
  [K, 3] (x, y, v) and optionally ``score``, ``image_id``, ``area``. ``prepare`` rewrites a raw example first.
  Images come out warped, in [0, 255] (not normalised).

  Config (``config.data``): ``input_size`` (h, w), ``sigma``, ``scale_factor``, ``rotation_factor``,
  ``rotation_prob``, ``half_body_prob``, ``flip``, ``box_padding``."""

  def __init__(self, config: ml_collections.ConfigDict, spec: keypoints_lib.KeypointSpec,
               prepare: Callable[[dict], dict] | None = None):
    input_h, input_w = config.input_size
    self.spec = spec
    self.output_size = (input_w, input_h)
    self.heatmap_size = (input_w // 4, input_h // 4)
    self.aspect_ratio = input_w / input_h
    self.sigma = config.get("sigma", 2.0)
    self.scale_factor, self.rotation_factor = config.get("scale_factor", 0.35), config.get("rotation_factor", 45.0)
    self.rotation_prob, self.half_body_prob = config.get("rotation_prob", 0.6), config.get("half_body_prob", 0.3)
    self.flip, self.padding = config.get("flip", True), config.get("box_padding", 1.25)
    self.prepare = prepare or (lambda example: example)

  def read(self, example: dict) -> tuple[dict, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(prepared example, decoded image, joints [K, 2] zeroed where unlabelled, labelled [K] as 0/1)."""
    example = self.prepare(example)
    image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
    keypoints = tf.cast(example["keypoints"], tf.float32)
    visible = tf.minimum(keypoints[:, 2], 1.0)  # 1 = labelled (visible or occluded), as the official joints_vis
    return example, image, keypoints[:, :2] * visible[:, None], visible

  def train_transform(self, image_width: tf.Tensor, bbox: tf.Tensor, joints: tf.Tensor, visible: tf.Tensor,
                      seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """The random augmentation of one example: (matrix from the original image to the input, joints and
    labels in the input's keypoint order, whether it was flipped)."""
    center, scale = box_to_center_scale(bbox, self.aspect_ratio, self.padding)
    ok, half_center, half_scale = half_body(joints, visible, self.spec, self.aspect_ratio, fold_seed(seed, 0))
    use_half = (ok & (tf.reduce_sum(visible) > self.spec.half_body_min_joints)
                & (tf.random.stateless_uniform([], fold_seed(seed, 1)) < self.half_body_prob))
    center, scale = tf.where(use_half, half_center, center), tf.where(use_half, half_scale, scale)
    factor = self.scale_factor
    scale *= tf.clip_by_value(tf.random.stateless_normal([], fold_seed(seed, 2)) * factor + 1, 1 - factor, 1 + factor)
    rotation = tf.clip_by_value(tf.random.stateless_normal([], fold_seed(seed, 3)) * self.rotation_factor,
                                -2 * self.rotation_factor, 2 * self.rotation_factor)
    rotation = tf.where(tf.random.stateless_uniform([], fold_seed(seed, 4)) <= self.rotation_prob, rotation, 0.0)
    matrix = affine_matrix(center, scale, rotation, self.output_size)
    flipped = tf.constant(False)
    if self.flip:
      flipped = tf.random.stateless_uniform([], fold_seed(seed, 5)) <= 0.5
      # x -> width - 1 - x: the pose code's ``fliplr_joints`` and ``c[0] = width - c[0] - 1``.
      axis = tf.cast(image_width, tf.float32) - 1
      matrix = tf.where(flipped, mirrored_affine_matrix(center, scale, rotation, self.output_size, axis), matrix)
      joints, visible = swap_pairs(flipped, self.spec, joints, visible)
    return matrix, joints, visible, flipped

  def _targets(self, image: tf.Tensor, matrix: tf.Tensor, joints: tf.Tensor, visible: tf.Tensor) -> dict:
    joints = tf.where(visible[:, None] > 0, transform_points(joints, matrix), joints)
    heatmaps, weight = gaussian_targets(joints, visible, self.output_size, self.heatmap_size, self.sigma)
    image = tf.clip_by_value(warp(image, matrix, self.output_size), 0, 255)
    return {"image": image, "target": heatmaps, "target_weight": weight}

  def train(self, example: dict, seed: tf.Tensor) -> dict:
    example, image, joints, visible = self.read(example)
    matrix, joints, visible, _ = self.train_transform(tf.shape(image)[1], example["bbox"], joints, visible, seed)
    return self._targets(image, matrix, joints, visible)

  def evaluate(self, example: dict) -> dict:
    example, image, joints, visible = self.read(example)
    center, scale = box_to_center_scale(example["bbox"], self.aspect_ratio, self.padding)
    out = self._targets(image, affine_matrix(center, scale, 0.0, self.output_size), joints, visible)
    bbox = tf.cast(example["bbox"], tf.float32)
    return {**out, "center": center, "scale": scale,
            "score": tf.cast(example.get("score", 1.0), tf.float32),
            "image_id": tf.cast(example.get("image_id", -1), tf.int64),
            # The official NMS and rescoring use the padded box's area, not the annotation's.
            "box_area": tf.reduce_prod(scale * PIXEL_STD),
            "gt_keypoints": tf.cast(example["keypoints"], tf.float32), "gt_bbox": bbox,
            "gt_area": tf.cast(example.get("area", bbox[2] * bbox[3]), tf.float32)}
