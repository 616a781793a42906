"""Preprocessing by name (tf.data side): each entry makes (train_fn, eval_fn) from the data config.

Train functions take ``(example, seed)`` and draw every random number statelessly from ``seed`` so that the
augmentation of an example is a function of its position in the data stream, not of thread timing.
"""

from __future__ import annotations

from typing import Callable

import math

import ml_collections
import tensorflow as tf

from hrnet_jax import keypoints
from hrnet_jax.normalization import IMAGENET_MEAN, IMAGENET_STD
from hrnet_jax.data import landmarks, synthetic, topdown
from hrnet_jax.data.segmentation import SceneCrop, synthetic_masks
from hrnet_jax.data.pipeline import EvalPreprocess, TrainPreprocess

def normalize(image: tf.Tensor) -> tf.Tensor:
  image = tf.cast(image, tf.float32) / 255.0
  return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def decode(encoded: tf.Tensor, channels: int, size: tuple[int, int] | None = None) -> tf.Tensor:
  """Any image format to uint8 HxWxC; ``size`` (when every image has it) makes the shape static."""
  image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
  return tf.ensure_shape(image, [*(size or (None, None)), channels])


def resize_to(image: tf.Tensor, size: int, method: str = "bilinear") -> tf.Tensor:
  """Square resize to ``size`` (0 keeps the native size); masks use 'nearest' so labels stay labels."""
  if not size:
    return image
  resized = tf.image.resize(image, (size, size), method=method, antialias=method != "nearest")
  return tf.cast(tf.round(resized) if method != "nearest" else resized, image.dtype)


NATIVE = (synthetic.IMAGE_SIZE, synthetic.IMAGE_SIZE)  # every synthetic image


def synthetic_classification(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  size = config.get("image_size", 0)

  def train(example, seed):
    image = resize_to(decode(example["image"], 3, NATIVE), size)
    image = tf.image.stateless_random_flip_left_right(image, topdown.fold_seed(seed, 0))
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
  size = config.get("image_size") or 224
  eval_resize = config.get("eval_resize") or int(round(size / 0.875))
  area_range = tuple(config.get("crop_area", (0.08, 1.0)))
  ratio_range = tuple(config.get("crop_ratio", (3 / 4, 4 / 3)))

  def train(example, seed):
    image = decode_random_crop(example["image"], topdown.fold_seed(seed, 0), area_range, ratio_range)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    image = tf.image.stateless_random_flip_left_right(image, topdown.fold_seed(seed, 1))
    return {"image": normalize(tf.clip_by_value(image, 0, 255)), "label": tf.cast(example["label"], tf.int32)}

  def evaluate(example):
    image = center_crop(resize_shorter_side(decode(example["image"], 3), eval_resize), size)
    image = tf.ensure_shape(tf.clip_by_value(image, 0, 255), [size, size, 3])
    return {"image": normalize(image), "label": tf.cast(example["label"], tf.int32)}

  return train, evaluate


def slot_vertices_by_sector(example: dict) -> dict:
  """Synthetic shapes: puts each polygon vertex in the slot of the 60-degree sector it points to from the
  polygon's center (clockwise from "up"), so that slots are learnable keypoints that a flip maps to 5 - k. A
  sector holds at most one vertex of a regular polygon of up to 6 vertices; a rare tie on a boundary is dropped."""
  points = tf.cast(example["keypoints"], tf.float32)
  labelled = points[:, 2] > 0
  center = tf.reduce_sum(points[:, :2] * tf.cast(labelled, tf.float32)[:, None], 0) / tf.maximum(
      tf.reduce_sum(tf.cast(labelled, tf.float32)), 1.0)
  offset = points[:, :2] - center
  angle = tf.math.floormod(tf.atan2(offset[:, 0], -offset[:, 1]), 2 * math.pi)  # image y points down
  count = len(keypoints.SYNTHETIC_SHAPES.names)
  slot = tf.where(labelled, tf.minimum(tf.cast(angle / (2 * math.pi / count), tf.int32), count - 1), count)
  slotted = tf.scatter_nd(slot[:, None], points, [count + 1, 3])[:count]
  occupancy = tf.scatter_nd(slot[:, None], tf.ones_like(slot), [count + 1])[:count]
  slotted = tf.where((occupancy > 1)[:, None], 0.0, slotted)
  return {**example, "keypoints": slotted}


def topdown_pose(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  """Top-down keypoints (``data.keypoints`` names the set: 'coco' or 'synthetic_shapes'); see ``topdown``."""
  prepare = slot_vertices_by_sector if config.keypoints == "synthetic_shapes" else None
  return _normalizing(topdown.TopDown(config, keypoints.get_spec(config.keypoints), prepare))


def synthetic_faces(example: dict) -> dict:
  """Synthetic shapes as landmark examples: the slotted vertices, and the official COFW box rule (the
  landmarks' floor/ceil box: its center, its longer side / 200) for center and scale. An example already in
  landmark form (e.g. a box given to ``predict``) passes through."""
  if "landmarks" in example:
    return example
  slotted = slot_vertices_by_sector(example)["keypoints"]
  box = tf.cast(example["bbox"], tf.float32)
  low, high = tf.floor(box[:2]), tf.math.ceil(box[:2] + box[2:])
  scale = tf.reduce_max(high - low) / keypoints.PIXEL_STD
  return {"image": example["image"], "landmarks": slotted[:, :2], "labelled": tf.cast(slotted[:, 2] > 0, tf.float32),
          "center": (low + high) / 2, "scale": scale, "box_size": scale * keypoints.PIXEL_STD}


def face_landmarks(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  """Facial-landmark crops (``data.keypoints``: 'wflw', '300w', 'cofw', 'aflw' or 'synthetic_shapes')."""
  prepare = synthetic_faces if config.keypoints == "synthetic_shapes" else None
  return _normalizing(landmarks.FaceCrop(config, keypoints.get_spec(config.keypoints), prepare))


def segmentation(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  """Random scale, crop and flip for training; the padded image and label for evaluation (see ``SceneCrop``)."""
  return _normalizing(SceneCrop(config, synthetic_masks if config.name == "synthetic_shapes" else None))


def _normalizing(pipeline: topdown.TopDown | landmarks.FaceCrop | SceneCrop) -> tuple[TrainPreprocess, EvalPreprocess]:
  """The pipeline's train and eval functions, with the image normalised (they produce it in [0, 255])."""
  def normalized(example):
    return {**example, "image": normalize(example["image"])}

  return (lambda example, seed: normalized(pipeline.train(example, seed)),
          lambda example: normalized(pipeline.evaluate(example)))


PREPROCESSORS: dict[str, Callable[[ml_collections.ConfigDict], tuple[TrainPreprocess, EvalPreprocess]]] = {
    "synthetic_classification": synthetic_classification,
    "segmentation": segmentation,
    "imagenet": imagenet,
    "topdown_pose": topdown_pose,
    "face_landmarks": face_landmarks,
}


def get(name: str, config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  if name not in PREPROCESSORS:
    raise ValueError(f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSORS)}")
  return PREPROCESSORS[name](config)
