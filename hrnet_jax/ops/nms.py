"""Greedy non-maximum suppression with static shapes, exactly ``torchvision.ops.nms`` / ``batched_nms``.

Greedy NMS keeps, in score order, every box whose IoU with each box kept before it is at most the threshold. The
k-th kept box is therefore the highest-scoring box that no earlier kept box suppressed, so the loop here runs once
per *output* (``max_outputs`` iterations, each one IoU row of O(N)), never building the N x N matrix, and it is
exact at every threshold (unlike tiled approximations, exact only at thresholds >= 0.5). Equal scores keep the
lower index first; a NaN IoU suppresses nothing, as in torchvision's kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hrnet_jax.ops.boxes import aligned_box_iou


def nms(boxes: jnp.ndarray, scores: jnp.ndarray, iou_threshold: float, max_outputs: int,
        valid: jnp.ndarray | None = None, classes: jnp.ndarray | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
  """``boxes`` [N, 4] (xyxy), ``scores`` [N] -> ``(indices [max_outputs] int32, valid [max_outputs] bool)``: the
  first ``valid.sum()`` indices are torchvision's ``nms(boxes, scores, iou_threshold)[:max_outputs]``, the rest 0.

  ``valid`` [N] leaves candidates out (padding, scores under a threshold); ``classes`` [N] makes it class-aware,
  a box suppressing only boxes of its own class, as ``torchvision.ops.batched_nms``.
  """
  boxes, scores = jnp.asarray(boxes), jnp.asarray(scores)
  count = boxes.shape[0]
  order = jnp.argsort(-scores, stable=True)
  boxes = boxes[order]
  remaining = jnp.ones(count, bool) if valid is None else jnp.asarray(valid)[order]
  same_class = None if classes is None else jnp.asarray(classes)[order]
  positions = jnp.arange(count)

  def keep_next(k, state):
    remaining, indices, kept = state
    best = jnp.argmax(remaining)  # the first remaining box in score order
    found = remaining[best]
    suppressed = aligned_box_iou(boxes[best], boxes) > iou_threshold
    if same_class is not None:
      suppressed &= same_class == same_class[best]
    remaining = remaining & ~suppressed & (positions != best)
    return remaining, indices.at[k].set(jnp.where(found, order[best], 0)), kept.at[k].set(found)

  if count == 0:
    return jnp.zeros(max_outputs, jnp.int32), jnp.zeros(max_outputs, bool)
  _, indices, kept = jax.lax.fori_loop(0, max_outputs, keep_next, (
      remaining, jnp.zeros(max_outputs, jnp.int32), jnp.zeros(max_outputs, bool)))
  return indices, kept


def batched_nms(boxes: jnp.ndarray, scores: jnp.ndarray, classes: jnp.ndarray, iou_threshold: float,
                max_outputs: int, valid: jnp.ndarray | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Class-aware ``nms``: as ``torchvision.ops.batched_nms(boxes, scores, classes, iou_threshold)``, whose result
  is in score order over all classes."""
  return nms(boxes, scores, iou_threshold, max_outputs, valid=valid, classes=classes)
