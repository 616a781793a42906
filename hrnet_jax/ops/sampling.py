"""Training-target assignment and sampling with static shapes, as MMDetection v2's ``MaxIoUAssigner`` and
``RandomSampler`` (the two-stage detectors' RPN and R-CNN heads).

An assignment is MMDetection's ``gt_inds`` [N] int32: -1 ignored, 0 background, ``k + 1`` matched to ground truth
``k``. A sample is a fixed number of slots filled positives first, as ``RandomSampler`` draws them: at most
``int(num * pos_fraction)`` positives chosen uniformly at random, then negatives up to ``num``; when there are too few
candidates the remaining slots are marked invalid instead of shrinking the array.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hrnet_jax.ops.boxes import box_iou


def max_iou_assign(boxes: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array, pos_iou: float, neg_iou: float,
                   min_pos_iou: float, match_low_quality: bool = True,
                   box_valid: jax.Array | None = None) -> jax.Array:
  """``MaxIoUAssigner.assign`` (``gt_max_assign_all=True``, no ignore regions) of ``boxes`` [N, 4] to the valid of
  ``gt_boxes`` [G, 4]: background under ``neg_iou``, matched to the best ground truth from ``pos_iou``; then, with
  ``match_low_quality``, each ground truth whose best IoU is at least ``min_pos_iou`` takes every box reaching that
  IoU (a later ground truth over an earlier one, as the official loop). Boxes not ``box_valid`` (anchors outside the
  image, padding) are ignored, as the official code leaves them out. Without ground truth every box is background."""
  box_valid = jnp.ones(boxes.shape[0], bool) if box_valid is None else box_valid
  overlaps = jnp.nan_to_num(box_iou(gt_boxes, boxes), nan=0.0)  # an empty box with an empty box: 0, as eps does
  overlaps = jnp.where(gt_valid[:, None] & box_valid[None], overlaps, -1.0)  # [G, N]
  best_overlap, best_gt = overlaps.max(0), overlaps.argmax(0)
  assigned = jnp.full(boxes.shape[0], -1, jnp.int32)
  assigned = jnp.where((best_overlap >= 0) & (best_overlap < neg_iou), 0, assigned)
  assigned = jnp.where(best_overlap >= pos_iou, best_gt + 1, assigned)
  if match_low_quality:
    gt_best = overlaps.max(1, keepdims=True)
    reaches = (overlaps == gt_best) & (gt_best >= min_pos_iou) & gt_valid[:, None]
    last = gt_boxes.shape[0] - 1 - jnp.argmax(reaches[::-1], 0)  # the last ground truth that reaches it
    assigned = jnp.where(reaches.any(0), last + 1, assigned)
  assigned = jnp.where(gt_valid.any(), assigned, 0)
  return jnp.where(box_valid, assigned, -1).astype(jnp.int32)


class Sample(NamedTuple):
  indices: jax.Array  # [num] int32 into the assigned boxes; positives first
  positive: jax.Array  # [num] bool
  valid: jax.Array  # [num] bool: a sampled box (the rest fill the static shape)


def random_sample(key: jax.Array, assigned: jax.Array, num: int, pos_fraction: float) -> Sample:
  """``RandomSampler(num, pos_fraction, neg_pos_ub=-1)`` on an assignment [N]: uniform choices without
  replacement, drawn as the top random keys over each eligible set."""
  count = assigned.shape[0]
  expected_positives = int(num * pos_fraction)
  positive_key, negative_key = jax.random.split(key)

  def draw(eligible, k, key):
    values, indices = jax.lax.top_k(jnp.where(eligible, jax.random.uniform(key, (count,)), -1.0), min(k, count))
    return indices, values >= 0

  positive_indices, positive_found = draw(assigned > 0, expected_positives, positive_key)
  negative_indices, negative_found = draw(assigned == 0, num, negative_key)
  negative_found &= jnp.arange(negative_found.shape[0]) < num - positive_found.sum()
  indices = jnp.concatenate([positive_indices, negative_indices])
  found = jnp.concatenate([positive_found, negative_found])
  positive = jnp.concatenate([positive_found, jnp.zeros_like(negative_found)])
  if indices.shape[0] < num:  # fewer candidates than slots
    pad = num - indices.shape[0]
    indices, found, positive = (jnp.pad(x, (0, pad)) for x in (indices, found, positive))
  order = jnp.argsort(~found, stable=True)[:num]  # the drawn slots first, positives before negatives
  return Sample(indices[order].astype(jnp.int32), positive[order], found[order])
