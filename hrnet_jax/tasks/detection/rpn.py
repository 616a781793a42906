"""The region proposal network of the two-stage detectors, as MMDetection v2's ``RPNHead`` on HRNetV2p.

- Head: a 3x3 conv + ReLU shared by every level, then 1x1 convs for one sigmoid objectness logit and four box
  deltas per anchor; every conv N(0, 0.01), biases 0.
- Targets (``rpn_targets``): anchors assigned by ``MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3)`` with low-quality
  matches, 256 sampled at half positives (``RandomSampler``); deltas with means 0 and stds 1.
- Losses: binary cross-entropy on the sampled anchors' objectness and L1 on the positives' deltas (Cascade R-CNN:
  smooth L1 with beta 1/9), both averaged over the batch's sampled anchors (MMDetection's ``avg_factor``).
- Proposals (``proposals``, ``_get_bboxes_single``): per level the ``pre_nms`` anchors of highest objectness,
  decoded and clipped to the image, empty boxes dropped; NMS at 0.7 within each level (``batched_nms`` with the level
  as class) and the ``max_proposals`` best. Training takes 2000 per level before NMS, testing 1000.

Targets and proposals are for one image (``jax.vmap`` them over a batch).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hrnet_jax import ops
from hrnet_jax.ops import sampling

ANCHOR_SCALES = (8.0,)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)


class RPNOutputs(NamedTuple):
  """Over every level's anchors, in ``anchor_grid`` order: objectness logits [B, N] and deltas [B, N, 4]."""
  logits: jax.Array
  deltas: jax.Array


class RPNHead(nn.Module):
  anchors_per_location: int = 3
  channels: int = 256
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, levels: Sequence[jax.Array]) -> RPNOutputs:
    conv = lambda features, size, name: nn.Conv(
        features, (size, size), padding=size // 2, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=nn.initializers.normal(0.01), name=name)
    shared = conv(self.channels, 3, "rpn_conv")
    classifier, regressor = conv(self.anchors_per_location, 1, "rpn_cls"), conv(4 * self.anchors_per_location, 1,
                                                                                "rpn_reg")
    logits, deltas = [], []
    for level in levels:
      x = nn.relu(shared(level))
      logits.append(classifier(x).reshape(x.shape[0], -1).astype(jnp.float32))
      deltas.append(regressor(x).reshape(x.shape[0], -1, 4).astype(jnp.float32))
    return RPNOutputs(jnp.concatenate(logits, 1), jnp.concatenate(deltas, 1))


class RPNTargets(NamedTuple):
  """The sampled anchors of one image: their indices [S], delta targets [S, 4], and which slots are positive (the
  objectness target) / sampled at all [S]."""
  indices: jax.Array
  deltas: jax.Array
  positive: jax.Array
  valid: jax.Array


def rpn_targets(key: jax.Array, anchors: np.ndarray, anchor_valid: jax.Array, gt_boxes: jax.Array,
                gt_valid: jax.Array, num_samples: int = 256, pos_fraction: float = 0.5) -> RPNTargets:
  """Assignment and sampling of one image's ``anchors`` [N, 4] (those not ``anchor_valid`` are never sampled)."""
  anchors = jnp.asarray(anchors)
  assigned = sampling.max_iou_assign(anchors, gt_boxes, gt_valid, 0.7, 0.3, 0.3, match_low_quality=True,
                                     box_valid=anchor_valid)
  sample = sampling.random_sample(key, assigned, num_samples, pos_fraction)
  matched = gt_boxes[jnp.maximum(assigned[sample.indices] - 1, 0)]
  deltas = ops.encode_deltas(matched, anchors[sample.indices])
  return RPNTargets(sample.indices, jnp.where(sample.positive[:, None], deltas, 0.0), sample.positive, sample.valid)


def smooth_l1(difference: jax.Array, beta: float) -> jax.Array:
  """MMDetection's ``smooth_l1_loss`` elementwise: quadratic under ``beta``, linear above; ``beta`` 0 is L1."""
  distance = jnp.abs(difference)
  if beta <= 0:
    return distance
  return jnp.where(distance < beta, 0.5 * distance * distance / beta, distance - 0.5 * beta)


def rpn_loss(outputs: RPNOutputs, targets: RPNTargets, box_beta: float = 0.0) -> dict[str, jax.Array]:
  """Objectness cross-entropy and delta L1 (smooth L1 for ``box_beta`` > 0) of a batch ([B, ...] each),
  averaged over the sampled anchors."""
  logits = jnp.take_along_axis(outputs.logits, targets.indices, 1)
  deltas = jnp.take_along_axis(outputs.deltas, targets.indices[..., None], 1)
  count = jnp.maximum(targets.valid.sum(), 1)
  cross_entropy = optax.sigmoid_binary_cross_entropy(logits, targets.positive.astype(jnp.float32))
  objectness = jnp.where(targets.valid, cross_entropy, 0.0)
  box = jnp.where(targets.positive[..., None], smooth_l1(deltas - targets.deltas, box_beta), 0.0)
  return {"loss_rpn_cls": objectness.sum() / count, "loss_rpn_bbox": box.sum() / count}


class Proposals(NamedTuple):
  boxes: jax.Array  # [K, 4] xyxy in input pixels
  scores: jax.Array  # [K] objectness probability
  valid: jax.Array  # [K] bool


def proposals(logits: jax.Array, deltas: jax.Array, anchors: Sequence[np.ndarray], image_size: jax.Array,
              pre_nms: int, max_proposals: int, iou_threshold: float = 0.7) -> Proposals:
  """One image's proposals from its ``logits`` [N] and ``deltas`` [N, 4] over the levels' ``anchors``, clipped to
  ``image_size`` (h, w): the image inside the padded input."""
  starts = np.cumsum([0] + [len(a) for a in anchors])
  boxes, scores, levels = [], [], []
  for level, (start, end) in enumerate(zip(starts[:-1], starts[1:])):
    level_scores, chosen = jax.lax.top_k(jax.nn.sigmoid(logits[start:end]), min(pre_nms, end - start))
    decoded = ops.decode_deltas(deltas[start:end][chosen], jnp.asarray(anchors[level])[chosen], symmetric_clip=True)
    boxes.append(ops.clip_boxes(decoded, image_size[0], image_size[1]))
    scores.append(level_scores)
    levels.append(jnp.full(chosen.shape, level, jnp.int32))
  boxes, scores, levels = (jnp.concatenate(x) for x in (boxes, scores, levels))
  non_empty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  kept, found = ops.batched_nms(boxes, scores, levels, iou_threshold, max_proposals, valid=non_empty)
  return Proposals(jnp.where(found[:, None], boxes[kept], 0.0), jnp.where(found, scores[kept], 0.0), found)

