"""Preprocessing by name (tf.data side): each entry makes (train_fn, eval_fn) from the data config.

Train functions take ``(example, seed)`` and draw every random number statelessly from ``seed`` so that the
augmentation of an example is a function of its position in the data stream, not of thread timing.
"""

from __future__ import annotations

from typing import Callable

import ml_collections
import tensorflow as tf

from hrnet_jax.data.pipeline import EvalPreprocess, TrainPreprocess

# The official codes normalise with the ImageNet statistics, on RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(image: tf.Tensor) -> tf.Tensor:
  image = tf.cast(image, tf.float32) / 255.0
  return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def decode(encoded: tf.Tensor, channels: int) -> tf.Tensor:
  image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
  image.set_shape([None, None, channels])
  return image


def resize_to(image: tf.Tensor, size: int, method: str = "bilinear") -> tf.Tensor:
  """Square resize to ``size`` (0 keeps the native size); masks use 'nearest' so labels stay labels."""
  if not size:
    return image
  resized = tf.image.resize(image, (size, size), method=method, antialias=method != "nearest")
  return tf.cast(tf.round(resized) if method != "nearest" else resized, image.dtype)


def _flip_seed(seed: tf.Tensor, salt: int) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, salt)


def synthetic_classification(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  size = config.get("image_size", 0)

  def train(example, seed):
    image = resize_to(decode(example["image"], 3), size)
    image = tf.image.stateless_random_flip_left_right(image, _flip_seed(seed, 0))
    return {"image": normalize(image), "label": tf.cast(example["label"], tf.int32)}

  def evaluate(example):
    image = resize_to(decode(example["image"], 3), size)
    return {"image": normalize(image), "label": tf.cast(example["label"], tf.int32)}

  return train, evaluate


def synthetic_segmentation(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  size = config.get("image_size", 0)

  def pair(example):
    return resize_to(decode(example["image"], 3), size), resize_to(decode(example["mask"], 1), size, "nearest")

  def train(example, seed):
    image, mask = pair(example)
    flip = tf.random.stateless_uniform([], _flip_seed(seed, 0)) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    return {"image": normalize(image), "label": tf.cast(mask[..., 0], tf.int32)}

  def evaluate(example):
    image, mask = pair(example)
    return {"image": normalize(image), "label": tf.cast(mask[..., 0], tf.int32)}

  return train, evaluate


PREPROCESSORS: dict[str, Callable[[ml_collections.ConfigDict], tuple[TrainPreprocess, EvalPreprocess]]] = {
    "synthetic_classification": synthetic_classification,
    "synthetic_segmentation": synthetic_segmentation,
}


def get(name: str, config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  if name not in PREPROCESSORS:
    raise ValueError(f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSORS)}")
  return PREPROCESSORS[name](config)
