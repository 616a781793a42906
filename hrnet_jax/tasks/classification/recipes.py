"""Classification recipes (tf.data side): the synthetic shapes' classes, and the official ImageNet recipe.

Train functions take ``(example, seed)`` and draw every random number statelessly from ``seed`` so that the
augmentation of an example is a function of its position in the data stream, not of thread timing.
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf

from hrnet_jax.data import synthetic
from hrnet_jax.data.image_ops import decode, fold_seed, normalize, resize_to
from hrnet_jax.data.pipeline import EvalPreprocess, TrainPreprocess

NATIVE = (synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE)  # every synthetic image


def synthetic_classification(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  """The shapes' class; ``image_size`` resizes the 64x64 images (0 keeps them)."""
  size = config.image_size

  def train(example, seed):
    image = resize_to(decode(example["image"], 3, NATIVE), size)
    image = tf.image.stateless_random_flip_left_right(image, fold_seed(seed, 0))
    return {"image": normalize(image), "label": tf.cast(example["label"], tf.int32)}

  def evaluate(example):
    image = resize_to(decode(example["image"], 3, NATIVE), size)
    return {"image": normalize(image), "label": tf.cast(example["label"], tf.int32)}

  return train, evaluate


def _crop_window(shape: tf.Tensor, seed: tf.Tensor, area_range: tuple[float, float],
                 ratio_range: tuple[float, float]) -> tf.Tensor:
  """[y, x, h, w] of a random crop covering ``area_range`` of the image with aspect ratio in ``ratio_range``.

  As torchvision's RandomResizedCrop (the official recipe): 10 attempts, then the whole image (torchvision falls
  back to a center crop of clamped ratio instead; this happens for under 1% of ImageNet images).
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed, min_object_covered=0.0,
      aspect_ratio_range=ratio_range, area_range=area_range, max_attempts=10, use_image_if_no_bounding_boxes=True)
  return tf.stack([begin[0], begin[1], size[0], size[1]])


def decode_random_crop(encoded: tf.Tensor, seed: tf.Tensor, area_range: tuple[float, float],
                       ratio_range: tuple[float, float]) -> tf.Tensor:
  """Decodes only the random crop of a JPEG (much less work than the whole image); other formats in full."""
  def jpeg():
    window = _crop_window(tf.image.extract_jpeg_shape(encoded), seed, area_range, ratio_range)
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

  def other():
    image = decode(encoded, 3)
    window = _crop_window(tf.shape(image), seed, area_range, ratio_range)
    return image[window[0]:window[0] + window[2], window[1]:window[1] + window[3]]

  image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  image.set_shape([None, None, 3])
  return image


def resize_shorter_side(image: tf.Tensor, shorter: int) -> tf.Tensor:
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  scale = shorter / tf.cast(tf.minimum(height, width), tf.float32)
  new_size = tf.cast(tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32)
  new_size = tf.maximum(new_size, shorter)  # the shorter side is exactly ``shorter`` whatever the rounding
  return tf.image.resize(image, new_size, method="bilinear", antialias=True)


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  top = (tf.shape(image)[0] - size) // 2
  left = (tf.shape(image)[1] - size) // 2
  return image[top:top + size, left:left + size]


def imagenet(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  """The official ImageNet recipe: random-resized crop + flip for training; shorter side to 256, center 224.

  ``image_size`` is the crop (224); ``eval_resize`` the shorter side before the eval crop (0: image_size / 0.875,
  256 at 224); ``crop_area`` and ``crop_ratio`` the random-resized-crop ranges (0.08-1, 3/4-4/3).
  """
  size = config.image_size
  eval_resize = config.eval_resize or int(round(size / 0.875))
  area_range, ratio_range = tuple(config.crop_area), tuple(config.crop_ratio)

  def train(example, seed):
    image = decode_random_crop(example["image"], fold_seed(seed, 0), area_range, ratio_range)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    image = tf.image.stateless_random_flip_left_right(image, fold_seed(seed, 1))
    return {"image": normalize(tf.clip_by_value(image, 0, 255)), "label": tf.cast(example["label"], tf.int32)}

  def evaluate(example):
    image = center_crop(resize_shorter_side(decode(example["image"], 3), eval_resize), size)
    image = tf.ensure_shape(tf.clip_by_value(image, 0, 255), [size, size, 3])
    return {"image": normalize(image), "label": tf.cast(example["label"], tf.int32)}

  return train, evaluate
