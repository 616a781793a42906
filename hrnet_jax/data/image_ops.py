"""Image operations every task's recipes share (tf.data side): decoding, the official normalisation, resizing,
and independent stateless seeds for an example's random draws."""

from __future__ import annotations

import contextlib
from typing import Iterator

import tensorflow as tf
from absl import logging

from hrnet_jax import cli
from hrnet_jax.model.normalization import IMAGENET_MEAN, IMAGENET_STD


def normalize(image: tf.Tensor) -> tf.Tensor:
  image = tf.cast(image, tf.float32) / 255.0
  return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def decode(encoded: tf.Tensor, channels: int, size: tuple[int, int] | None = None) -> tf.Tensor:
  """Any image format to uint8 HxWxC; ``size`` (when every image has it) makes the shape static."""
  image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
  return tf.ensure_shape(image, [*(size or (None, None)), channels])


def resize_image(image: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  """OpenCV's INTER_LINEAR (half-pixel bilinear, no antialiasing)."""
  return tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=False)


def pad_to(tensor: tf.Tensor, height, width, value) -> tf.Tensor:
  """Pads the bottom and right up to (height, width) with ``value``; never crops."""
  shape = tf.shape(tensor)
  pads = [[0, tf.maximum(height - shape[0], 0)], [0, tf.maximum(width - shape[1], 0)]]
  pads += [[0, 0]] * (len(tensor.shape) - 2)
  return tf.pad(tensor, pads, constant_values=tf.cast(value, tensor.dtype))


def resize_to(image: tf.Tensor, size: int, method: str = "bilinear") -> tf.Tensor:
  """Square resize to ``size`` (0 keeps the native size); masks use 'nearest' so labels stay labels."""
  if not size:
    return image
  resized = tf.image.resize(image, (size, size), method=method, antialias=method != "nearest")
  return tf.cast(tf.round(resized) if method != "nearest" else resized, image.dtype)


def fold_seed(seed: tf.Tensor, salt: int) -> tf.Tensor:
  """An independent stateless seed for the ``salt``-th random draw of an example."""
  return tf.random.experimental.stateless_fold_in(seed, salt)


def normalizing(pipeline) -> tuple:
  """The train and eval functions of a pipeline object (``train(example, seed)``, ``evaluate(example)``, images
  in [0, 255]), with the image normalised."""
  def normalized(example):
    return {**example, "image": normalize(example["image"])}

  return (lambda example, seed: normalized(pipeline.train(example, seed)),
          lambda example: normalized(pipeline.evaluate(example)))


@contextlib.contextmanager
def reporting_failures(path: str, errors: dict[str, str]) -> Iterator[None]:
  """Runs the block for one image file; if the file cannot be read or decoded, records why in ``errors`` and logs
  it instead of raising, so that the other images are still processed (``predict``)."""
  try:
    yield
  except (OSError, tf.errors.OpError) as error:
    errors[path] = cli.one_line(error)[:200]
    logging.error("cannot read or decode %s: %s", path, errors[path])
