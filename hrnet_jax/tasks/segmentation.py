"""Semantic segmentation: per-pixel cross-entropy with an ignore label, mIoU from a confusion matrix."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hrnet_jax import layers
from hrnet_jax.tasks.base import Batch, Task


class SegmentationTask(Task):
  name = "segmentation"

  @property
  def ignore_label(self) -> int:
    return self.config.get("ignore_label", 255)

  def _logits_at_label_size(self, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    # The head predicts at 1/4; loss and metrics are computed at the label's resolution, as the official code.
    align_corners = bool(self.config.model.overrides.get("align_corners", False))
    return layers.resize_bilinear(outputs, labels.shape[1:3], align_corners)

  def loss(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    labels = batch["label"]
    logits = self._logits_at_label_size(outputs, labels)
    # ``mask`` is 0 for examples whose image could not be decoded: none of their pixels count.
    valid = (labels != self.ignore_label) & (batch["mask"][:, None, None] > 0)
    per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labels, 0))
    loss = jnp.sum(per_pixel * valid) / jnp.maximum(jnp.sum(valid), 1)
    accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * valid) / jnp.maximum(jnp.sum(valid), 1)
    return loss, {"pixel_accuracy": accuracy}

  def eval_sums(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    labels = batch["label"]
    num_classes = outputs.shape[-1]
    predictions = jnp.argmax(self._logits_at_label_size(outputs, labels), -1)
    valid = (labels != self.ignore_label) & (batch["mask"][:, None, None] > 0)
    return {"confusion": confusion_matrix(labels, predictions, valid, num_classes)}

  def finalize(self, sums: dict[str, Any], examples: dict[str, Any]) -> dict[str, float]:
    del examples
    per_class = iou_per_class(np.asarray(sums["confusion"]))
    confusion = np.asarray(sums["confusion"], np.float64)
    metrics = {"miou": 100 * float(np.nanmean(per_class)),
               "pixel_accuracy": 100 * float(np.trace(confusion) / max(confusion.sum(), 1))}
    metrics.update({f"iou/{c}": 100 * float(v) for c, v in enumerate(per_class)})
    return metrics


def confusion_matrix(labels: jax.Array, predictions: jax.Array, valid: jax.Array, num_classes: int) -> jax.Array:
  """Counts (label, prediction) pairs over valid pixels; rows are labels. Exact in int32 up to 2^31 pixels."""
  index = jnp.where(valid, labels * num_classes + predictions, 0)
  counts = jnp.bincount(index.reshape(-1), weights=valid.reshape(-1).astype(jnp.int32), length=num_classes**2)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
  """Intersection over union per class; NaN for a class absent from both labels and predictions."""
  confusion = confusion.astype(np.float64)
  intersection = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - intersection
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(union > 0, intersection / union, np.nan)
