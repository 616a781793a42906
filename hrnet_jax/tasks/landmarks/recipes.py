"""The facial-landmark recipe (tf.data), as HRNet-Facial-Landmark-Detection: the official center/scale box
(x1.25) cropped to 256x256, random scale (uniform +-25%), rotation (uniform +-30 degrees, probability 0.6), flip
(x -> width - x, the dataset's pairs swapped), Gaussian targets at 64x64 centred on the truncated heatmap position.

It shares the geometry (affine matrix, warp) and the targets with the pose recipe (``hrnet_jax.heatmaps``). One
difference from the official code, on purpose: the official crop resizes twice through ``scipy.misc.imresize``,
which also stretches every image's contrast to its own min/max (a side effect of imresize on float input); here one
bilinear warp maps the box to the input, so intensities are the image's own.
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
from hrnet_jax.tasks.landmarks.landmark_sets import landmark_spec


class FaceCrop:
  """Train and eval preprocessing over examples with ``image`` (encoded), ``landmarks`` [K, 2], ``center`` [2],
  ``scale`` (units of 200 px, before x1.25), ``box_size`` and optionally ``labelled`` [K] (default all 1).

  Config (``config.data``): ``input_size`` (square side, 256), ``sigma``, ``scale_factor`` (0.25),
  ``rotation_factor`` (30), ``rotation_prob`` (0.6), ``flip``, ``box_padding`` (1.25)."""

  def __init__(self, config: ml_collections.ConfigDict, spec: KeypointSpec,
               prepare: Callable[[dict], dict] | None = None):
    self.spec = spec
    self.size = config.input_size
    self.sigma = config.sigma
    self.scale_factor, self.rotation_factor = config.scale_factor, config.rotation_factor
    self.rotation_prob, self.flip = config.rotation_prob, config.flip
    self.padding = config.box_padding
    self.prepare = prepare or (lambda example: example)

  def read(self, example: dict) -> tuple[dict, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(prepared example, image, landmarks [K, 2], labelled [K], center [2], scale [2] with the padding)."""
    example = self.prepare(example)
    image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
    # A custom dataset stores [None, 2] (its file's count); the set's count makes the shape static.
    landmarks = tf.ensure_shape(tf.cast(example["landmarks"], tf.float32), [self.spec.count, 2])
    labelled = tf.cast(example.get("labelled", tf.ones(tf.shape(landmarks)[:1])), tf.float32)
    scale = tf.cast(example["scale"], tf.float32) * self.padding
    return example, image, landmarks, labelled, tf.cast(example["center"], tf.float32), tf.stack([scale, scale])

  def train_transform(self, image_width: tf.Tensor, landmarks: tf.Tensor, labelled: tf.Tensor, center: tf.Tensor,
                      scale: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(matrix from the image to the input, landmarks and labels in the input's order, whether flipped)."""
    def uniform(salt, low=0.0, high=1.0):
      return tf.random.stateless_uniform([], fold_seed(seed, salt), low, high)

    scale *= uniform(0, 1 - self.scale_factor, 1 + self.scale_factor)
    rotation = tf.where(uniform(2) <= self.rotation_prob, uniform(1, -self.rotation_factor, self.rotation_factor), 0.0)
    output_size = (self.size, self.size)
    matrix = geometry.affine_matrix(center, scale, rotation, output_size)
    flipped = tf.constant(False)
    if self.flip:
      flipped = uniform(3) <= 0.5
      axis = tf.cast(image_width, tf.float32)  # the official ``fliplr_joints``: x -> width - x
      matrix = tf.where(flipped, geometry.mirrored_affine_matrix(center, scale, rotation, output_size, axis), matrix)
      landmarks, labelled = geometry.swap_pairs(flipped, self.spec, landmarks, labelled)
    return matrix, landmarks, labelled, flipped

  def _targets(self, image: tf.Tensor, matrix: tf.Tensor, landmarks: tf.Tensor, labelled: tf.Tensor) -> dict:
    # The official code draws a target only for landmarks with y > 0; every landmark still counts in the loss.
    drawn = labelled * tf.cast(landmarks[:, 1] > 0, tf.float32)
    heatmaps, _ = codec.gaussian_targets(geometry.transform_points(landmarks, matrix), drawn, (self.size,) * 2,
                                           (self.size // 4,) * 2, self.sigma, round_to_nearest=False)
    image = tf.clip_by_value(geometry.warp(image, matrix, (self.size, self.size)), 0, 255)
    return {"image": image, "target": heatmaps, "target_weight": labelled}

  def train(self, example: dict, seed: tf.Tensor) -> dict:
    example, image, landmarks, labelled, center, scale = self.read(example)
    matrix, landmarks, labelled, _ = self.train_transform(tf.shape(image)[1], landmarks, labelled, center, scale, seed)
    return self._targets(image, matrix, landmarks, labelled)

  def evaluate(self, example: dict) -> dict:
    example, image, landmarks, labelled, center, scale = self.read(example)
    out = self._targets(image, geometry.affine_matrix(center, scale, 0.0, (self.size, self.size)), landmarks,
                        labelled)
    return {**out, "center": center, "scale": scale, "gt_landmarks": landmarks,
            "box_size": tf.cast(example["box_size"], tf.float32)}


def synthetic_faces(example: dict) -> dict:
  """Synthetic shapes as landmark examples: the slotted vertices, and the official COFW box rule (the
  landmarks' floor/ceil box: its center, its longer side / 200) for center and scale. An example already in
  landmark form (e.g. a box given to ``predict``) passes through."""
  if "landmarks" in example:
    return example
  slotted = slot_vertices_by_sector(example)["keypoints"]
  box = tf.cast(example["bbox"], tf.float32)
  low, high = tf.floor(box[:2]), tf.math.ceil(box[:2] + box[2:])
  scale = tf.reduce_max(high - low) / PIXEL_STD
  return {"image": example["image"], "landmarks": slotted[:, :2], "labelled": tf.cast(slotted[:, 2] > 0, tf.float32),
          "center": (low + high) / 2, "scale": scale, "box_size": scale * PIXEL_STD}


def face_landmarks(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  """Facial-landmark crops (``data.keypoints``: 'wflw', '300w', 'cofw', 'aflw', 'synthetic_shapes' or 'custom')."""
  prepare = synthetic_faces if config.keypoints == "synthetic_shapes" else None
  return normalizing(FaceCrop(config, landmark_spec(config), prepare))
