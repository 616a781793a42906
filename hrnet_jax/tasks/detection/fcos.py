"""FCOS (Tian et al., ICCV 2019) as MMDetection v2 runs it on HRNetV2p: the head, the official target assignment,
the losses and the jitted post-processing.

- Head: one 4-conv GroupNorm tower for classification (which also predicts centerness) and one for regression,
  shared by every level; ``exp(scale_l * x)`` gives the four distances, with one learned scale per level. Convs
  are initialised N(0, 0.01), the classifier's bias at the 1% prior; tower convs have no bias (MMDetection's
  ``ConvModule`` before a norm).
- Targets (``fcos_targets``): a location is assigned the ground-truth box it lies inside (or, with
  ``center_sampling``, inside the box's central ``radius * stride`` square) whose largest distance to the location
  falls in the level's regression range; of several, the one of smallest area wins (the first on ties).
- Losses: sigmoid focal loss (alpha 0.25, gamma 2) over every location and class, averaged over positives + images;
  IoU loss ``-log(IoU)`` on the decoded boxes of positives, weighted by their centerness target and averaged over
  its sum; binary cross-entropy on centerness, averaged over positives.
- Test (MMDetection v2.0's ``FCOSHead.get_bboxes``; later versions threshold after the centerness product): per
  level the ``pre_nms`` locations of highest ``max_class(score x centerness)``; each (location, class)
  above ``score_threshold`` scored ``score x centerness``; class-aware NMS and the best ``max_detections`` --
  MMDetection's ``multiclass_nms``, exactly, with static shapes.

Targets and detections are for one image (``jax.vmap`` them over a batch); the loss takes the batch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hrnet_jax import ops
from hrnet_jax.model.heads import HRFPNHead

INF = 1e8
# MMDetection's defaults for strides 8..128 (HRFPN with conv stride 2, five levels).
STRIDES = (8, 16, 32, 64, 128)
REGRESS_RANGES = ((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, INF))


def level_points(sizes: Sequence[tuple[int, int]], strides: Sequence[int]) -> list[np.ndarray]:
  """Each level's locations [H_l * W_l, 2] as (x, y) input pixels, row-major: ``(j, i) * stride + stride // 2``."""
  points = []
  for (height, width), stride in zip(sizes, strides):
    ys, xs = np.meshgrid(np.arange(height) * stride, np.arange(width) * stride, indexing="ij")
    points.append(np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32) + stride // 2)
  return points


class Targets(NamedTuple):
  labels: jax.Array  # [P] int32, num_classes for background
  distances: jax.Array  # [P, 4] (left, top, right, bottom) to the assigned box


def fcos_targets(points: Sequence[np.ndarray], strides: Sequence[int],
                 regress_ranges: Sequence[tuple[float, float]], boxes: jax.Array, labels: jax.Array,
                 valid: jax.Array, num_classes: int, center_sampling: bool = False,
                 radius: float = 1.5) -> Targets:
  """The official assignment of one image's ground truth (``boxes`` [G, 4] xyxy, ``labels`` [G], ``valid`` [G]:
  padding and crowd regions False) to every level's locations, concatenated level by level."""
  if not len(points) == len(strides) == len(regress_ranges):
    raise ValueError(f"{len(points)} levels of points, {len(strides)} strides, {len(regress_ranges)} ranges")
  counts = [len(p) for p in points]
  xy = jnp.asarray(np.concatenate(points))[:, None]  # [P, 1, 2]
  ranges = jnp.asarray(np.repeat(np.asarray(regress_ranges, np.float32), counts, 0))[:, None]  # [P, 1, 2]
  distances = ops.encode_distances(xy, boxes[None])  # [P, G, 4]
  if center_sampling:
    reach = jnp.asarray(np.repeat(np.asarray(strides, np.float32) * radius, counts))[:, None, None]
    centres = (boxes[None, :, :2] + boxes[None, :, 2:]) / 2
    central = jnp.concatenate([jnp.maximum(centres - reach, boxes[None, :, :2]),
                               jnp.minimum(centres + reach, boxes[None, :, 2:])], -1)
    inside = ops.encode_distances(xy, central).min(-1) > 0
  else:
    inside = distances.min(-1) > 0
  reach = distances.max(-1)
  fits = (reach >= ranges[..., 0]) & (reach <= ranges[..., 1])
  areas = jnp.where(inside & fits & valid[None], ops.box_area(boxes)[None], INF)
  best = jnp.argmin(areas, -1)
  assigned = jnp.take_along_axis(areas, best[:, None], -1)[:, 0] < INF
  return Targets(jnp.where(assigned, labels[best], num_classes).astype(jnp.int32),
                 jnp.take_along_axis(distances, best[:, None, None], 1)[:, 0])


def centerness(distances: jax.Array) -> jax.Array:
  """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of distances [..., 4] (defined for positives only)."""
  horizontal, vertical = distances[..., 0::2], distances[..., 1::2]
  return jnp.sqrt(horizontal.min(-1) / horizontal.max(-1) * vertical.min(-1) / vertical.max(-1))


class Outputs(NamedTuple):
  """Per level, concatenated over levels in ``level_points`` order: class logits [B, P, C], distances [B, P, 4]
  (input pixels), centerness logits [B, P]."""
  logits: jax.Array
  distances: jax.Array
  centerness: jax.Array


def _normal(stddev: float):
  return nn.initializers.normal(stddev)


class Scale(nn.Module):
  """A learned scalar factor, 1 at first (mmcv's ``Scale``)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return x * self.param("scale", nn.initializers.ones, (), jnp.float32)


class FCOSHead(nn.Module):
  """The FCOS head on pyramid levels [B, H_l, W_l, C_in] -> ``Outputs``."""
  num_classes: int
  channels: int = 256
  num_convs: int = 4
  num_groups: int = 32
  prior: float = 0.01
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, levels: Sequence[jax.Array], train: bool = False) -> Outputs:
    del train  # GroupNorm only
    dense = lambda features, name, bias=0.0: nn.Conv(
        features, (3, 3), padding=1, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=_normal(0.01),
        bias_init=nn.initializers.constant(bias), name=name)
    towers = {}
    for tower in ("cls", "reg"):
      towers[tower] = [(nn.Conv(self.channels, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                                param_dtype=self.param_dtype, kernel_init=_normal(0.01), name=f"{tower}_convs_{k}"),
                        nn.GroupNorm(self.num_groups, epsilon=1e-5, dtype=self.dtype, param_dtype=self.param_dtype,
                                     name=f"{tower}_gn_{k}")) for k in range(self.num_convs)]
    classifier = dense(self.num_classes, "fcos_cls", -math.log((1 - self.prior) / self.prior))
    regressor, centre = dense(4, "fcos_reg"), dense(1, "fcos_centerness")
    outputs = []
    for k, level in enumerate(levels):
      features = {}
      for tower, layers in towers.items():
        x = level
        for conv, norm in layers:
          x = nn.relu(norm(conv(x)))
        features[tower] = x
      flat = lambda x: x.reshape(x.shape[0], -1, x.shape[-1]).astype(jnp.float32)
      outputs.append(Outputs(flat(classifier(features["cls"])),
                             jnp.exp(Scale(name=f"scales_{k}")(flat(regressor(features["reg"])))),
                             flat(centre(features["cls"]))[..., 0]))
    return Outputs(*(jnp.concatenate(parts, 1) for parts in zip(*outputs)))


class FCOSDetector(nn.Module):
  """HRNetV2p + FCOS: the backbone's branches -> the V2p pyramid (MMDetection's HRFPN) -> the FCOS head. The
  pyramid's level ``k`` has stride ``4 * fpn_stride * 2**k`` (``strides``)."""
  num_outputs: int
  fcos_channels: int = 256
  fcos_convs: int = 4
  fpn_channels: int = 256
  fpn_levels: int = 5
  fpn_stride: int = 2
  fpn_pooling: str = "avg"
  fpn_representation: str = "v2"  # Fig. 10(b): "v1" / "v1h" pyramids from the 1x branch
  align_corners: bool = False
  bn_momentum: float = 0.1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, branches: Sequence[jax.Array], train: bool = False) -> Outputs:
    levels = HRFPNHead(self.fpn_channels, self.fpn_levels, self.fpn_stride, self.fpn_pooling, self.align_corners,
                       self.fpn_representation, self.bn_momentum, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="neck")(branches, train)
    return FCOSHead(self.num_outputs, self.fcos_channels, self.fcos_convs, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="bbox_head")(levels, train)


def pyramid_strides(fpn_levels: int, fpn_stride: int) -> tuple[int, ...]:
  return tuple(4 * fpn_stride * 2**k for k in range(fpn_levels))


def pyramid_sizes(height: int, width: int, fpn_levels: int, fpn_stride: int) -> list[tuple[int, int]]:
  """The (h, w) of each pyramid level for an input of ``height`` x ``width`` (multiples of 32), as the network
  computes them: 1/4, pooled by 2**k (rounding down), then the 3x3 conv of stride ``fpn_stride`` (rounding up).
  800 x 1344 with stride 2: 100 x 168, 50 x 84, 25 x 42, 13 x 21, 6 x 11."""
  return [tuple(-(-(side // 4 // 2**k) // fpn_stride) for side in (height, width)) for k in range(fpn_levels)]


def sigmoid_focal_loss(logits: jax.Array, targets: jax.Array, alpha: float = 0.25, gamma: float = 2.0) -> jax.Array:
  """Elementwise focal loss of Lin et al. (MMDetection's ``sigmoid_focal_loss``), in float32."""
  probability = jax.nn.sigmoid(logits)
  cross_entropy = optax.sigmoid_binary_cross_entropy(logits, targets)
  complement = probability * (1 - targets) + (1 - probability) * targets
  weight = alpha * targets + (1 - alpha) * (1 - targets)
  return weight * complement**gamma * cross_entropy


def fcos_loss(outputs: Outputs, targets: Targets, points: jax.Array, num_classes: int,
              image_weight: jax.Array | None = None) -> dict[str, jax.Array]:
  """The three FCOS losses of a batch (``outputs`` and ``targets`` [B, P, ...]; ``points`` [P, 2]). Images of
  ``image_weight`` 0 [B] count for nothing (nor in the image count of the classification loss's divisor)."""
  positive = targets.labels < num_classes  # [B, P]
  count = positive.sum()
  weight = jnp.ones(positive.shape[0]) if image_weight is None else image_weight.astype(jnp.float32)
  one_hot = jax.nn.one_hot(targets.labels, num_classes)  # background: all zeros
  focal = sigmoid_focal_loss(outputs.logits, one_hot).sum((1, 2))
  classification = jnp.sum(focal * weight) / jnp.maximum(count + weight.sum(), 1)
  safe = jnp.where(positive[..., None], targets.distances, 1.0)  # keeps 0/0 out of the masked terms' gradients
  quality = jnp.where(positive, centerness(safe), 0.0)
  predicted = ops.decode_distances(points, outputs.distances)
  iou = jnp.maximum(ops.aligned_box_iou(predicted, ops.decode_distances(points, safe)), 1e-6)
  box = jnp.sum(jnp.where(positive, -jnp.log(iou) * quality, 0.0)) / jnp.maximum(quality.sum(), 1e-6)
  centre = jnp.where(positive, optax.sigmoid_binary_cross_entropy(outputs.centerness, quality), 0.0)
  centre = centre.sum() / jnp.maximum(count, 1)
  return {"loss_cls": classification, "loss_bbox": box, "loss_centerness": centre}


class Detections(NamedTuple):
  boxes: jax.Array  # [K, 4] xyxy, input pixels
  scores: jax.Array  # [K]
  labels: jax.Array  # [K] int32
  valid: jax.Array  # [K] bool


def fcos_detections(outputs: Outputs, points: Sequence[np.ndarray], image_size: tuple[jax.Array, jax.Array],
                    pre_nms: int = 1000, score_threshold: float = 0.05, iou_threshold: float = 0.5,
                    max_detections: int = 100) -> Detections:
  """One image's detections from its ``outputs`` ([P, ...] each): MMDetection's FCOS test path (boxes clipped
  to ``image_size`` (height, width), the image's size before padding)."""
  starts = np.cumsum([0] + [len(p) for p in points])
  boxes, scores, labels, valid = [], [], [], []
  for level, (start, end) in enumerate(zip(starts[:-1], starts[1:])):
    probability = jax.nn.sigmoid(outputs.logits[start:end])  # [P_l, C]
    quality = jax.nn.sigmoid(outputs.centerness[start:end])
    keep = min(pre_nms, end - start)
    _, chosen = jax.lax.top_k((probability * quality[:, None]).max(-1), keep)
    decoded = ops.decode_distances(jnp.asarray(points[level])[chosen], outputs.distances[start:end][chosen])
    decoded = ops.clip_boxes(decoded, *image_size)
    num_classes = probability.shape[-1]
    boxes.append(jnp.repeat(decoded, num_classes, 0))
    scores.append((probability[chosen] * quality[chosen, None]).reshape(-1))
    valid.append((probability[chosen] > score_threshold).reshape(-1))
    labels.append(jnp.tile(jnp.arange(num_classes), keep))
  boxes, scores, labels, valid = (jnp.concatenate(x) for x in (boxes, scores, labels, valid))
  kept, found = ops.batched_nms(boxes, scores, labels, iou_threshold, max_detections, valid=valid)
  return Detections(boxes[kept], jnp.where(found, scores[kept], 0.0), labels[kept].astype(jnp.int32), found)
