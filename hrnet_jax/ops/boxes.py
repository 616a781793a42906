"""Box arithmetic on absolute ``(x1, y1, x2, y2)`` boxes, with torchvision's semantics (``torchvision.ops.boxes``,
``torchvision.models.detection._utils.BoxCoder``): no "+1" in widths, a box's area is ``(x2 - x1) * (y2 - y1)``.

Every function is jit-friendly: static shapes, no data-dependent control flow. Pairwise forms take ``[N, 4]`` and
``[M, 4]`` and return ``[N, M]``; the ``aligned`` forms pair the i-th box of each (any matching leading shape), as
the losses need.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

# torchvision's clamp on decoded log-sizes: exp(4.135) = 62.5, no box grows more than that over its reference.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def box_area(boxes: jnp.ndarray) -> jnp.ndarray:
  """``[..., 4]`` -> ``[...]``, as ``torchvision.ops.box_area`` (negative for inverted boxes, not clamped)."""
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _iou_and_union(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """IoU and union of broadcastable box arrays, in torchvision's order of operations (so equal in float32)."""
  top_left = jnp.maximum(boxes1[..., :2], boxes2[..., :2])
  bottom_right = jnp.minimum(boxes1[..., 2:], boxes2[..., 2:])
  size = jnp.clip(bottom_right - top_left, 0)
  inter = size[..., 0] * size[..., 1]
  union = box_area(boxes1) + box_area(boxes2) - inter
  return inter / union, union


def _generalized(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  iou, union = _iou_and_union(boxes1, boxes2)
  top_left = jnp.minimum(boxes1[..., :2], boxes2[..., :2])
  bottom_right = jnp.maximum(boxes1[..., 2:], boxes2[..., 2:])
  size = jnp.clip(bottom_right - top_left, 0)
  enclosure = size[..., 0] * size[..., 1]
  return iou - (enclosure - union) / enclosure


def box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Pairwise IoU ``[N, 4] x [M, 4] -> [N, M]``, as ``torchvision.ops.box_iou`` (NaN where both boxes are empty)."""
  return _iou_and_union(boxes1[:, None], boxes2[None])[0]


def generalized_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Pairwise generalised IoU ``[N, M]``, as ``torchvision.ops.generalized_box_iou``."""
  return _generalized(boxes1[:, None], boxes2[None])


def aligned_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """IoU of each box with its partner: ``[..., 4] x [..., 4] -> [...]``."""
  return _iou_and_union(boxes1, boxes2)[0]


def aligned_generalized_box_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Generalised IoU of each box with its partner (``1 -`` this is ``torchvision.ops.generalized_box_iou_loss``
  with ``eps=0``)."""
  return _generalized(boxes1, boxes2)


def _centres_and_sizes(boxes: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  size = boxes[..., 2:] - boxes[..., :2]
  return boxes[..., :2] + 0.5 * size, size


def encode_deltas(boxes: jnp.ndarray, references: jnp.ndarray,
                  weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> jnp.ndarray:
  """The regression targets ``(dx, dy, dw, dh)`` that take ``references`` (anchors, proposals) to ``boxes``, as
  torchvision's ``BoxCoder.encode_single``; ``weights`` are ``1 / std`` of MMDetection's ``DeltaXYWHBBoxCoder``
  (its means are 0 in every HRNet recipe)."""
  weights = jnp.asarray(weights, boxes.dtype)
  centre, size = _centres_and_sizes(boxes)
  reference_centre, reference_size = _centres_and_sizes(references)
  shift = weights[:2] * (centre - reference_centre) / reference_size
  scale = weights[2:] * jnp.log(size / reference_size)
  return jnp.concatenate([shift, scale], -1)


def decode_deltas(deltas: jnp.ndarray, references: jnp.ndarray,
                  weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                  clip: float = BBOX_XFORM_CLIP, symmetric_clip: bool = False) -> jnp.ndarray:
  """The inverse of ``encode_deltas``, as ``BoxCoder.decode_single``: log-sizes clamped at ``clip`` (with
  ``symmetric_clip`` also at ``-clip``, as MMDetection's ``delta2bbox``)."""
  weights = jnp.asarray(weights, deltas.dtype)
  reference_centre, reference_size = _centres_and_sizes(references)
  centre = deltas[..., :2] / weights[:2] * reference_size + reference_centre
  log_size = deltas[..., 2:] / weights[2:]
  log_size = jnp.clip(log_size, -clip, clip) if symmetric_clip else jnp.minimum(log_size, clip)
  size = jnp.exp(log_size) * reference_size
  return jnp.concatenate([centre - 0.5 * size, centre + 0.5 * size], -1)


def encode_distances(points: jnp.ndarray, boxes: jnp.ndarray) -> jnp.ndarray:
  """FCOS's targets: the distances ``(left, top, right, bottom)`` from ``points`` ``[..., 2]`` (x, y) to the sides
  of ``boxes`` (negative where a point lies outside)."""
  return jnp.concatenate([points - boxes[..., :2], boxes[..., 2:] - points], -1)


def decode_distances(points: jnp.ndarray, distances: jnp.ndarray) -> jnp.ndarray:
  """The boxes whose sides lie ``distances`` ``(left, top, right, bottom)`` from ``points``."""
  return jnp.concatenate([points - distances[..., :2], points + distances[..., 2:]], -1)


def clip_boxes(boxes: jnp.ndarray, height: jnp.ndarray | float, width: jnp.ndarray | float) -> jnp.ndarray:
  """Boxes ``[..., 4]`` clipped to an image of ``height`` x ``width`` (scalars: ``jax.vmap`` it over images), as
  ``torchvision.ops.clip_boxes_to_image``."""
  return jnp.clip(boxes, 0, jnp.stack([width, height, width, height]).astype(boxes.dtype))
