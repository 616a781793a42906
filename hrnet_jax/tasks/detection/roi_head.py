"""The R-CNN box head of the two-stage detectors, as MMDetection v2's ``Shared2FCBBoxHead`` in a
``StandardRoIHead``.

- Head: each RoI's 7x7 features (``multilevel_roi_align``, flattened in PyTorch's channel-major order so official
  weights load) through two shared 1024-d fc layers (Xavier-uniform) to ``num_classes + 1`` logits (background last,
  N(0, 0.01)) and class-specific deltas (N(0, 0.001)), or four class-agnostic ones (Cascade R-CNN).
- Targets (``roi_targets``): the ground truth joins the proposals (``add_gt_as_proposals``, each assigned to
  itself), ``MaxIoUAssigner`` with one IoU threshold for both sides and no low-quality matches (0.5; Cascade's
  stages 0.6 and 0.7), 512 sampled at a quarter positives; deltas normalised by ``stds``.
- Losses: softmax cross-entropy over the sampled RoIs and L1 on the positives' deltas of their class (Cascade:
  smooth L1 with beta 1), both averaged over the batch's sampled RoIs (``BBoxHead.loss``'s ``avg_factor``).
- Test (``detections``, ``multiclass_nms``): each (RoI, class) box decoded and clipped, kept above the score
  threshold, class-aware NMS and the best ``max_detections``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from hrnet_jax import ops
from hrnet_jax.ops import sampling
from hrnet_jax.tasks.detection.fcos import Detections
from hrnet_jax.tasks.detection.rpn import smooth_l1

BOX_STDS = (0.1, 0.1, 0.2, 0.2)
POSITIVE_FRACTION = 0.25  # of the sampled RoIs at most


def delta_weights(stds: Sequence[float]) -> tuple[float, ...]:
  """The box coder's weights for MMDetection's ``target_stds`` (its means are 0 throughout)."""
  return tuple(1.0 / s for s in stds)


class BoxHead(nn.Module):
  """Pooled RoIs [B, R, h, w, C] -> (logits [B, R, num_classes + 1], deltas [B, R, num_classes * 4] or
  [B, R, 4] when ``class_agnostic``)."""
  num_classes: int
  fc_features: int = 1024
  class_agnostic: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled: jax.Array) -> tuple[jax.Array, jax.Array]:
    dense = lambda features, init, name: nn.Dense(features, dtype=self.dtype, param_dtype=self.param_dtype,
                                                  kernel_init=init, name=name)
    x = jnp.moveaxis(pooled, -1, -3).reshape(*pooled.shape[:2], -1)  # (C, h, w) order, as torch's flatten
    for k in range(2):
      x = nn.relu(dense(self.fc_features, nn.initializers.xavier_uniform(), f"shared_fcs_{k}")(x))
    logits = dense(self.num_classes + 1, nn.initializers.normal(0.01), "fc_cls")(x)
    deltas = dense(4 if self.class_agnostic else 4 * self.num_classes, nn.initializers.normal(0.001), "fc_reg")(x)
    return logits.astype(jnp.float32), deltas.astype(jnp.float32)


class RoITargets(NamedTuple):
  """One image's sampled RoIs [S, 4] with their class targets [S] (``num_classes``: background), delta targets
  [S, 4], the ground truth each positive is matched to [S] (0 for the others), and which slots are positive /
  sampled at all / a ground-truth box joined to the proposals [S]. The positives come first."""
  rois: jax.Array
  labels: jax.Array
  deltas: jax.Array
  matched: jax.Array
  positive: jax.Array
  valid: jax.Array
  from_gt: jax.Array


def roi_targets(key: jax.Array, proposals: jax.Array, proposal_valid: jax.Array, gt_boxes: jax.Array,
                gt_labels: jax.Array, gt_valid: jax.Array, num_classes: int, iou_threshold: float = 0.5,
                num_samples: int = 512, pos_fraction: float = POSITIVE_FRACTION,
                stds: Sequence[float] = BOX_STDS) -> RoITargets:
  """Assignment and sampling of one image's ``proposals`` [P, 4] with its ground truth joined to them."""
  candidates = jnp.concatenate([gt_boxes, proposals])
  assigned = sampling.max_iou_assign(candidates, gt_boxes, gt_valid, iou_threshold, iou_threshold, iou_threshold,
                                     match_low_quality=False, box_valid=jnp.concatenate([gt_valid, proposal_valid]))
  count = gt_boxes.shape[0]
  own = jnp.where(gt_valid, jnp.arange(1, count + 1), -1)  # the sampler's add_gt_: each ground truth is its own
  assigned = assigned.at[:count].set(own.astype(assigned.dtype))
  sample = sampling.random_sample(key, assigned, num_samples, pos_fraction)
  rois = candidates[sample.indices]
  matched = jnp.maximum(assigned[sample.indices] - 1, 0)
  deltas = ops.encode_deltas(gt_boxes[matched], rois, delta_weights(stds))
  return RoITargets(rois, jnp.where(sample.positive, gt_labels[matched], num_classes).astype(jnp.int32),
                    jnp.where(sample.positive[:, None], deltas, 0.0), matched, sample.positive, sample.valid,
                    sample.valid & (sample.indices < count))


def class_deltas(deltas: jax.Array, labels: jax.Array) -> jax.Array:
  """The deltas [..., 4] of each RoI's class (``labels`` [...], background mapped anywhere) from class-specific
  deltas [..., C * 4]; class-agnostic deltas [..., 4] pass through."""
  if deltas.shape[-1] == 4:
    return deltas
  per_class = deltas.reshape(*deltas.shape[:-1], -1, 4)
  index = jnp.minimum(labels, per_class.shape[-2] - 1)
  return jnp.take_along_axis(per_class, index[..., None, None], -2)[..., 0, :]


def roi_loss(logits: jax.Array, deltas: jax.Array, targets: RoITargets, box_beta: float = 0.0) -> dict[str, jax.Array]:
  """Cross-entropy and delta L1 (smooth L1 for ``box_beta`` > 0) of a batch's sampled RoIs ([B, S, ...] each),
  averaged over those sampled."""
  count = jnp.maximum(targets.valid.sum(), 1)
  cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, targets.labels)
  chosen = class_deltas(deltas, targets.labels)
  box = jnp.where(targets.positive[..., None], smooth_l1(chosen - targets.deltas, box_beta), 0.0)
  return {"loss_cls": jnp.where(targets.valid, cross_entropy, 0.0).sum() / count, "loss_bbox": box.sum() / count}


def decode_rois(deltas: jax.Array, rois: jax.Array, image_size: jax.Array,
                stds: Sequence[float] = BOX_STDS) -> jax.Array:
  """One image's boxes from its RoIs [R, 4] and deltas: [R, C, 4] class-specific or [R, 4] class-agnostic,
  clipped to ``image_size`` (h, w)."""
  if deltas.shape[-1] == 4:
    boxes = ops.decode_deltas(deltas, rois, delta_weights(stds), symmetric_clip=True)
  else:
    boxes = ops.decode_deltas(deltas.reshape(deltas.shape[0], -1, 4), rois[:, None], delta_weights(stds),
                              symmetric_clip=True)
  return ops.clip_boxes(boxes, image_size[0], image_size[1])


def detections(rois: jax.Array, roi_valid: jax.Array, logits: jax.Array, deltas: jax.Array, image_size: jax.Array,
               score_threshold: float = 0.05, iou_threshold: float = 0.5, max_detections: int = 100,
               stds: Sequence[float] = BOX_STDS) -> Detections:
  """One image's detections from its RoIs [R, 4] and their head outputs (Cascade: the logits averaged over the
  stages, the last stage's deltas)."""
  scores = jax.nn.softmax(logits, -1)[:, :-1]  # background is the last class
  count, num_classes = scores.shape
  boxes = decode_rois(deltas, rois, image_size, stds)
  boxes = jnp.broadcast_to(boxes[:, None] if boxes.ndim == 2 else boxes, (count, num_classes, 4)).reshape(-1, 4)
  labels = jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), count)
  valid = ((scores > score_threshold) & roi_valid[:, None]).reshape(-1)
  scores = scores.reshape(-1)
  kept, found = ops.batched_nms(boxes, scores, labels, iou_threshold, max_detections, valid=valid)
  return Detections(jnp.where(found[:, None], boxes[kept], 0.0), jnp.where(found, scores[kept], 0.0),
                    labels[kept], found)
