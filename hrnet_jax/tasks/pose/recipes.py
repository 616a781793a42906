"""The top-down pose recipe (tf.data): box -> center/scale, augmentation, affine warp, Gaussian targets.

Follows deep-high-resolution-net.pytorch (``JointsDataset``) step for step, including its conventions (a box is
measured in units of 200 pixels, pixel centers at integer coordinates, the target's Gaussian centred on the
rounded heatmap position), so that a model trained here is evaluated like the official one. Two differences that
change nothing numerically: the horizontal flip is folded into the affine matrix
(``geometry.mirrored_affine_matrix``) instead of flipping the image first, and every random number is drawn
statelessly from the example's seed.
"""

from __future__ import annotations

from typing import Callable

import ml_collections
import tensorflow as tf

from hrnet_jax.data.image_ops import fold_seed, normalizing
from hrnet_jax.data.pipeline import EvalPreprocess, TrainPreprocess
from hrnet_jax.heatmaps import codec, geometry
from hrnet_jax.heatmaps.keypoint_set import PIXEL_STD, KeypointSpec
from hrnet_jax.heatmaps.synthetic import slot_vertices_by_sector
from hrnet_jax.tasks.pose.keypoint_sets import keypoint_spec


def box_to_center_scale(box: tf.Tensor, aspect_ratio: float, padding: float = 1.25) -> tuple[tf.Tensor, tf.Tensor]:
  """[x, y, w, h] -> (center, scale): the box grown to ``aspect_ratio`` (w / h), padded, in units of 200 px."""
  box = tf.cast(box, tf.float32)
  x, y, w, h = box[0], box[1], box[2], box[3]
  center = tf.stack([x + w * 0.5, y + h * 0.5])
  w, h = tf.where(w > aspect_ratio * h, w, h * aspect_ratio), tf.where(w > aspect_ratio * h, w / aspect_ratio, h)
  return center, tf.stack([w, h]) / PIXEL_STD * padding


def half_body(joints: tf.Tensor, visible: tf.Tensor, spec: KeypointSpec, aspect_ratio: float,
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


class TopDown:
  """Train and eval preprocessing over examples with ``image`` (encoded), ``bbox`` [x, y, w, h], ``keypoints``
  [K, 3] (x, y, v) and optionally ``score``, ``image_id``, ``area``. ``prepare`` rewrites a raw example first.
  Images come out warped, in [0, 255] (not normalised).

  Config (``config.data``): ``input_size`` (h, w), ``sigma``, ``scale_factor``, ``rotation_factor``,
  ``rotation_prob``, ``half_body_prob``, ``flip``, ``box_padding``."""

  def __init__(self, config: ml_collections.ConfigDict, spec: KeypointSpec,
               prepare: Callable[[dict], dict] | None = None):
    input_h, input_w = config.input_size
    self.spec = spec
    self.output_size = (input_w, input_h)
    self.heatmap_size = (input_w // 4, input_h // 4)
    self.aspect_ratio = input_w / input_h
    self.sigma = config.sigma
    self.scale_factor, self.rotation_factor = config.scale_factor, config.rotation_factor
    self.rotation_prob, self.half_body_prob = config.rotation_prob, config.half_body_prob
    self.flip, self.padding = config.flip, config.box_padding
    self.prepare = prepare or (lambda example: example)

  def read(self, example: dict) -> tuple[dict, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(prepared example, decoded image, joints [K, 2] zeroed where unlabelled, labelled [K] as 0/1)."""
    example = self.prepare(example)
    image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
    # Stored [None, 3] (a file's own keypoint count); the set's count makes the shape static.
    keypoints = tf.ensure_shape(tf.cast(example["keypoints"], tf.float32), [self.spec.count, 3])
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
    matrix = geometry.affine_matrix(center, scale, rotation, self.output_size)
    flipped = tf.constant(False)
    if self.flip:
      flipped = tf.random.stateless_uniform([], fold_seed(seed, 5)) <= 0.5
      # x -> width - 1 - x: the pose code's ``fliplr_joints`` and ``c[0] = width - c[0] - 1``.
      axis = tf.cast(image_width, tf.float32) - 1
      mirrored = geometry.mirrored_affine_matrix(center, scale, rotation, self.output_size, axis)
      matrix = tf.where(flipped, mirrored, matrix)
      joints, visible = geometry.swap_pairs(flipped, self.spec, joints, visible)
    return matrix, joints, visible, flipped

  def _targets(self, image: tf.Tensor, matrix: tf.Tensor, joints: tf.Tensor, visible: tf.Tensor) -> dict:
    joints = tf.where(visible[:, None] > 0, geometry.transform_points(joints, matrix), joints)
    heatmaps, weight = codec.gaussian_targets(joints, visible, self.output_size, self.heatmap_size, self.sigma)
    image = tf.clip_by_value(geometry.warp(image, matrix, self.output_size), 0, 255)
    return {"image": image, "target": heatmaps, "target_weight": weight}

  def train(self, example: dict, seed: tf.Tensor) -> dict:
    example, image, joints, visible = self.read(example)
    matrix, joints, visible, _ = self.train_transform(tf.shape(image)[1], example["bbox"], joints, visible, seed)
    return self._targets(image, matrix, joints, visible)

  def evaluate(self, example: dict) -> dict:
    example, image, joints, visible = self.read(example)
    center, scale = box_to_center_scale(example["bbox"], self.aspect_ratio, self.padding)
    out = self._targets(image, geometry.affine_matrix(center, scale, 0.0, self.output_size), joints, visible)
    bbox = tf.cast(example["bbox"], tf.float32)
    return {**out, "center": center, "scale": scale,
            "score": tf.cast(example.get("score", 1.0), tf.float32),
            "image_id": tf.cast(example.get("image_id", -1), tf.int64),
            # The official NMS and rescoring use the padded box's area, not the annotation's.
            "box_area": tf.reduce_prod(scale * PIXEL_STD),
            "gt_keypoints": tf.cast(example["keypoints"], tf.float32), "gt_bbox": bbox,
            "gt_area": tf.cast(example.get("area", bbox[2] * bbox[3]), tf.float32)}


def topdown_pose(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  """Top-down keypoints (``data.keypoints`` names the set: 'coco', 'synthetic_shapes' or 'custom'), normalised
  images."""
  prepare = slot_vertices_by_sector if config.keypoints == "synthetic_shapes" else None
  return normalizing(TopDown(config, keypoint_spec(config), prepare))
