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


def resized_window(image: tf.Tensor, size: tf.Tensor, top: tf.Tensor, left: tf.Tensor, window: tuple[int, int],
                   method: str, fill) -> tf.Tensor:
  """``pad_to(resize(image, size), *window, fill)[top:top + window[0], left:left + window[1]]``, computed from
  only the source pixels the window reads: for a random crop of a large random rescale (Cityscapes at scale 2.1
  resizes 2 MP to 9 MP to keep 0.5 MP) this skips nearly all the work.

  ``method``: 'bilinear' (``resize_image``: TensorFlow's half-pixel bilinear, the same arithmetic) or 'nearest'
  (``floor(destination * in / out)``, OpenCV's INTER_NEAREST as ``resize_label``). Pixels outside the resized
  image are ``fill``. The window must lie inside the padded image: ``0 <= top <= max(size[0], window[0]) -
  window[0]``, and the same for ``left``. The result is float32 for 'bilinear' (only the window's pixels are
  converted), ``image``'s dtype for 'nearest'.
  """
  in_size = tf.shape(image)[:2]

  def source(axis: int, start: tf.Tensor, length: int):
    stop = tf.minimum(start + length, size[axis])
    destination = tf.cast(tf.range(start, tf.maximum(stop, start)), tf.float32)
    scale = tf.cast(in_size[axis], tf.float32) / tf.cast(size[axis], tf.float32)
    if method == "nearest":
      return tf.minimum(tf.cast(tf.floor(destination * scale), tf.int32), in_size[axis] - 1), None, None
    position = (destination + 0.5) * scale - 0.5
    lower = tf.floor(position)
    upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), in_size[axis] - 1)
    return tf.maximum(tf.cast(lower, tf.int32), 0), upper, position - lower

  rows, rows_upper, row_weights = source(0, top, window[0])
  columns, columns_upper, column_weights = source(1, left, window[1])
  if method == "nearest":
    resized = tf.gather(tf.gather(image, rows), columns, axis=1)
  else:
    column_weights = column_weights[None, :, None]
    row_weights = row_weights[:, None, None]

    def across(picked_rows):  # interpolate along the columns first, as TensorFlow's kernel does
      left_ = tf.cast(tf.gather(picked_rows, columns, axis=1), tf.float32)  # cast only what the window reads
      right_ = tf.cast(tf.gather(picked_rows, columns_upper, axis=1), tf.float32)
      return left_ + (right_ - left_) * column_weights

    top_rows, bottom_rows = across(tf.gather(image, rows)), across(tf.gather(image, rows_upper))
    resized = top_rows + (bottom_rows - top_rows) * row_weights
  return pad_to(resized, *window, fill)


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
