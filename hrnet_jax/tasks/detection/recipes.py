"""The detection recipe, as MMDetection's COCO pipeline (tf.data side).

``Resize(img_scale=(long, short), keep_ratio=True)``: the image scaled by ``min(long / its long side, short / its
short side)``, each side rounded (``int(x + 0.5)``), bilinear; boxes scaled by the per-axis ratio actually applied
and clipped to the image. Training flips horizontally with probability 0.5 (``short_sides``: the short side drawn
from these values, as ``multiscale_mode='value'`` of the multi-scale FCOS configs). Then ImageNet normalisation (RGB) and padding
to the fixed ``canvas`` with zeros (after normalisation, as ``Normalize`` then ``Pad``); ``bgr`` reverses the channels
as MMDetection's HRNet FCOS configs do (``to_rgb=False`` with the BGR mean and std). Objects stay padded to the
dataset's fixed count: ``box_valid`` marks the real, non-crowd ones whose stored box is at least 1 x 1 pixel with a
positive area (crowd regions and smaller boxes are ignored in training, as ``CocoDataset._parse_ann_info``). With
``masks`` (Mask R-CNN), training adds each object's mask sampled over its box to ``mask_size`` x ``mask_size``
(``masks.box_masks``, decoded from its RLE on the host), flipped with the image. Evaluation adds what maps
predictions back (the image id, the scale applied per axis, the resized and the original size) and the stored
ground truth in original pixels, from which evaluation builds COCO's index when no annotation file is given.
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf

from hrnet_jax.data.image_ops import decode, fold_seed, normalize, pad_to, resize_image
from hrnet_jax.data.pipeline import EvalPreprocess, TrainPreprocess
from hrnet_jax.tasks.detection.masks import box_masks

Example = dict[str, tf.Tensor]


def keep_ratio_size(height: tf.Tensor, width: tf.Tensor, long: float, short: tf.Tensor) -> tf.Tensor:
  """MMDetection's ``rescale_size`` [h, w] for ``img_scale=(long, short)``."""
  height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  factor = tf.minimum(long / tf.maximum(height, width), tf.cast(short, tf.float32) / tf.minimum(height, width))
  return tf.cast(tf.stack([height, width]) * factor + 0.5, tf.int32)


class Detection:
  """Train and eval functions for one detection config (``config`` is ``config.data``)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.long, self.short = config.image_scale
    self.short_sides = tuple(config.short_sides)
    self.canvas = tuple(config.canvas)
    self.flip = config.flip
    self.bgr = config.bgr
    self.mask_size = config.mask_size if config.masks else 0

  def _resized(self, example: Example, short: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(image resized and normalised, boxes [G, 4] in its pixels, the per-axis scale (x, y), the original size
    (h, w))."""
    image = decode(example["image"], 3)
    original = tf.shape(image)[:2]
    size = keep_ratio_size(original[0], original[1], self.long, short)
    image = normalize(resize_image(image, size))
    if self.bgr:  # BGR order, normalised with the same statistics reversed: MMDetection's HRNet FCOS configs
      image = image[..., ::-1]
    scale = tf.cast(size[::-1], tf.float32) / tf.cast(original[::-1], tf.float32)
    limits = tf.cast(tf.tile(size[::-1], [2]), tf.float32)
    boxes = tf.clip_by_value(example["boxes"] * tf.tile(scale, [2]), 0.0, limits)
    return image, boxes, scale, original

  def _into_canvas(self, image: tf.Tensor) -> tf.Tensor:
    size = tf.shape(image)[:2]
    message = f"a resized image does not fit data.canvas {self.canvas}; raise it (or lower data.image_scale)"
    with tf.control_dependencies([tf.debugging.assert_less_equal(size, tf.constant(self.canvas), message=message)]):
      return tf.ensure_shape(pad_to(image, *self.canvas, 0.0), [*self.canvas, 3])

  def _objects(self, example: Example, boxes: tf.Tensor) -> Example:
    sizes = example["boxes"][:, 2:] - example["boxes"][:, :2]  # as stored, before resizing
    present = tf.range(tf.shape(boxes)[0]) < tf.cast(example["num_objects"], tf.int32)
    valid = present & ~example["is_crowd"] & tf.reduce_all(sizes >= 1.0, -1) & (example["areas"] > 0)
    return {"boxes": boxes, "labels": tf.cast(example["labels"], tf.int32), "box_valid": valid}

  def _box_masks(self, example: Example, original: tf.Tensor) -> tf.Tensor:
    """[G, mask_size, mask_size] uint8: each object's mask over its stored box (``masks.box_masks``)."""
    masks = tf.numpy_function(
        lambda rles, count, boxes, height, width: box_masks(rles, count, boxes, height, width, self.mask_size),
        [example["rles"], example["num_objects"], example["boxes"], original[0], original[1]], tf.uint8,
        stateful=False)
    return tf.ensure_shape(masks, [example["boxes"].shape[0], self.mask_size, self.mask_size])

  def train(self, example: Example, seed: tf.Tensor) -> Example:
    short = self.short
    if self.short_sides:
      choice = tf.random.stateless_uniform([], fold_seed(seed, 0), 0, len(self.short_sides), tf.int32)
      short = tf.gather(tf.constant(self.short_sides, tf.int32), choice)
    image, boxes, _, original = self._resized(example, short)
    masks = self._box_masks(example, original) if self.mask_size else None
    if self.flip:
      flipped = tf.random.stateless_uniform([], fold_seed(seed, 1)) < 0.5
      width = tf.cast(tf.shape(image)[1], tf.float32)
      image = tf.where(flipped, image[:, ::-1], image)
      boxes = tf.where(flipped, tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], -1),
                       boxes)
      masks = None if masks is None else tf.where(flipped, masks[:, :, ::-1], masks)
    objects = self._objects(example, boxes)
    if masks is not None:
      objects["gt_masks"] = masks
    return {"image": self._into_canvas(image), "image_size": tf.shape(image)[:2], **objects}

  def evaluate(self, example: Example) -> Example:
    image, _, scale, original = self._resized(example, self.short)
    present = tf.range(tf.shape(example["boxes"])[0]) < tf.cast(example["num_objects"], tf.int32)
    return {"image": self._into_canvas(image), "image_id": tf.cast(example["image_id"], tf.int64), "scale": scale,
            "image_size": tf.shape(image)[:2], "original_size": original,
            # The ground truth as stored (original pixels), for evaluation without an annotation file.
            "gt_boxes": example["boxes"], "gt_labels": tf.cast(example["labels"], tf.int32),
            "gt_crowd": example["is_crowd"], "gt_areas": example["areas"], "gt_ids": example["object_ids"],
            "gt_present": present}


def detection(config: ml_collections.ConfigDict) -> tuple[TrainPreprocess, EvalPreprocess]:
  recipe = Detection(config)
  return recipe.train, recipe.evaluate
