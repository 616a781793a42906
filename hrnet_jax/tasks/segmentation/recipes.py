"""The segmentation recipe, as HRNet-Semantic-Segmentation's ``BaseDataset`` (tf.data side).

Training (``gen_sample``): a random scale ``0.5 + k / 10`` for k uniform in 0..``scale_steps`` (16: 0.5 to 2.1)
sets the long side to ``int(base_size * scale + 0.5)`` (image bilinear, label nearest as OpenCV), the result is
padded up to the crop (black image, ignored label), randomly cropped and flipped with probability 0.5 (a flip swaps
the label set's left/right classes). LIP first resizes every training image to the crop size, as its loader.

Evaluation: the image (optionally resized to ``eval_image_size``, as LIP's test protocol) and its label, each padded
into a fixed canvas (black, ignored) with its true size beside it, so batches have static shapes whatever the
image sizes; inference (``inference``) works per example inside the canvas.
"""

from __future__ import annotations

from typing import Callable

import ml_collections
import tensorflow as tf

from hrnet_jax.data.image_ops import fold_seed, normalizing, pad_to, resize_image, resized_window
from hrnet_jax.data.pipeline import EvalPreprocess, TrainPreprocess
from hrnet_jax.tasks.segmentation import label_sets

Example = dict[str, tf.Tensor]


def decode_label(encoded: tf.Tensor) -> tf.Tensor:
  """The label PNG's ids, as stored (8-bit)."""
  return tf.io.decode_png(encoded, channels=1)[..., 0]


def resize_label(label: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  """OpenCV's INTER_NEAREST: source index floor(destination * in / out), no half-pixel shift."""
  resized = tf.raw_ops.ResizeNearestNeighbor(images=label[None, :, :, None], size=size, align_corners=False,
                                             half_pixel_centers=False)
  return resized[0, :, :, 0]


def long_side_size(height: tf.Tensor, width: tf.Tensor, long_side: tf.Tensor) -> tf.Tensor:
  """The official ``image_resize`` size [h, w]: long side ``long_side``, the other rounded proportionally."""
  longer, shorter = tf.maximum(height, width), tf.minimum(height, width)
  scaled = (2 * shorter * long_side + longer) // (2 * longer)
  return tf.where(height > width, tf.stack([long_side, scaled]), tf.stack([scaled, long_side]))


class SceneCrop:
  """Train and eval functions for one segmentation config (``config`` is ``config.data``).

  ``prepare`` adapts another dataset's examples to {"image", "label"} (the synthetic shapes' masks).
  """

  def __init__(self, config: ml_collections.ConfigDict, prepare: Callable[[Example], Example] | None = None):
    self.crop = tuple(config.crop_size)
    self.base_size = config.base_size
    self.scale_steps = config.scale_steps
    self.resize_first = config.resize_to_crop_first
    self.flip = config.flip
    self.ignore_background = config.ignore_background
    self.eval_image_size = tuple(config.eval_image_size)
    self.canvas = tuple(config.eval_canvas)
    self.label_canvas = tuple(config.label_canvas or self.canvas)
    self.flip_classes = label_sets.label_set(config).flip_permutation()
    self.prepare = prepare or (lambda example: example)

  def _label(self, example: Example) -> tf.Tensor:
    return self._class_ids(decode_label(example["label"]))

  def _class_ids(self, label: tf.Tensor) -> tf.Tensor:
    label = tf.cast(label, tf.int32)
    if self.ignore_background:  # PASCAL-Context 59: background is not a class
      label = tf.where((label == 0) | (label == label_sets.IGNORE_LABEL), label_sets.IGNORE_LABEL, label - 1)
    return label

  def train(self, example: Example, seed: tf.Tensor) -> Example:
    example = self.prepare(example)
    # Decoded 8-bit, and converted only where the crop is cut (LIP's first resize gives a float image).
    image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
    label = decode_label(example["label"])
    if self.resize_first:
      image, label = resize_image(image, self.crop), resize_label(label, self.crop)
    size = tf.shape(image)[:2]
    if self.scale_steps:
      step = tf.random.stateless_uniform([], fold_seed(seed, 0), 0, self.scale_steps + 1, tf.int32)
      scale = 0.5 + tf.cast(step, tf.float64) / 10.0
      long_side = tf.cast(tf.floor(self.base_size * scale + 0.5), tf.int32)
      size = long_side_size(size[0], size[1], long_side)
    # The crop of the rescaled image padded up to the crop size, resizing only the window the crop reads.
    padded = tf.maximum(size, tf.constant(self.crop))
    top = tf.random.stateless_uniform([], fold_seed(seed, 1), 0, padded[0] - self.crop[0] + 1, tf.int32)
    left = tf.random.stateless_uniform([], fold_seed(seed, 2), 0, padded[1] - self.crop[1] + 1, tf.int32)
    image = resized_window(image, size, top, left, self.crop, "bilinear", 0.0)
    label = self._class_ids(resized_window(label, size, top, left, self.crop, "nearest", label_sets.IGNORE_LABEL))
    if self.flip:
      flipped = tf.random.stateless_uniform([], fold_seed(seed, 3)) < 0.5
      swapped = tf.gather(tf.constant(self.flip_classes, tf.int32), tf.minimum(label, len(self.flip_classes) - 1))
      swapped = tf.where(label == label_sets.IGNORE_LABEL, label, swapped)
      image = tf.cond(flipped, lambda: tf.reverse(image, [1]), lambda: image)
      label = tf.cond(flipped, lambda: tf.reverse(swapped, [1]), lambda: label)
    return {"image": tf.ensure_shape(image, [*self.crop, 3]), "label": tf.ensure_shape(label, self.crop)}

  def evaluate(self, example: Example) -> Example:
    """The padded image and its size; with the padded label and its size when the example has a label."""
    example = self.prepare(example)
    image = tf.cast(tf.io.decode_image(example["image"], channels=3, expand_animations=False), tf.float32)
    original_size = tf.shape(image)[:2]
    if self.eval_image_size:
      image = resize_image(image, self.eval_image_size)
    image_size = tf.shape(image)[:2]
    checks = [tf.debugging.assert_less_equal(
        image_size, tf.constant(self.canvas),
        message=f"an eval image is larger than data.eval_canvas {self.canvas}; raise it")]
    with tf.control_dependencies(checks):
      image = tf.ensure_shape(pad_to(image, *self.canvas, 0.0), [*self.canvas, 3])
    result = {"image": image, "image_size": image_size, "original_size": original_size}
    if "label" in example:
      label = self._label(example)
      checks = [tf.debugging.assert_less_equal(
          tf.shape(label), tf.constant(self.label_canvas),
          message=f"an eval label is larger than data.label_canvas {self.label_canvas}; raise it")]
      with tf.control_dependencies(checks):
        result["label"] = tf.ensure_shape(pad_to(label, *self.label_canvas, label_sets.IGNORE_LABEL),
                                          self.label_canvas)
      result["label_size"] = tf.shape(label)[:2]
    return result


def synthetic_masks(example: Example) -> Example:
  """Synthetic shapes as segmentation examples: the polygon mask (0 background, 1 + class) is the label."""
  return {"image": example["image"], "label": example["mask"]} if "mask" in example else example


def segmentation(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  """Random scale, crop and flip for training; the padded image and label for evaluation (see ``SceneCrop``)."""
  return normalizing(SceneCrop(config, synthetic_masks if config.name == "synthetic_shapes" else None))
