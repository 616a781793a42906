"""The interface every task implements."""

from __future__ import annotations

import abc
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from hrnet_jax import models

Batch = dict[str, jax.Array]


class Task(abc.ABC):
  """Loss and metrics of one task. Evaluation accumulates masked *sums*, so padding never counts and
  the result is exact however the eval set is split over batches, devices and hosts."""

  name: str

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def create_model(self) -> nn.Module:
    model = self.config.model
    options = {"scan_repeats": model.scan_repeats, **dict(model.overrides)}
    return models.create_model(model.name, task=self.name, dtype=jnp.dtype(model.dtype),
                               param_dtype=jnp.dtype(model.param_dtype), **options)

  def check_dataset(self, class_names: list[str] | None) -> None:
    """Raises ValueError when the dataset's labels cannot be this model's outputs (e.g. a class-count mismatch)."""
    del class_names

  def predict(self, apply: Callable[[jax.Array], Any], batch: Batch) -> Any:
    """The outputs evaluated (``apply`` runs the model in inference mode); e.g. pose averages a flipped pass."""
    return apply(batch["image"])

  @abc.abstractmethod
  def loss(self, outputs: Any, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over the batch (float32) and extra training metrics."""

  @abc.abstractmethod
  def eval_sums(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    """Sums over the valid (``mask`` 1) examples of the batch."""

  def eval_examples(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    """Per-example arrays [B, ...] that the metric needs whole (e.g. keypoints for COCOeval); the loop gathers
    those of the valid examples over every batch, device and host. Most metrics need none."""
    del outputs, batch
    return {}

  @abc.abstractmethod
  def finalize(self, sums: dict[str, Any], examples: dict[str, Any]) -> dict[str, float]:
    """Final metrics from the sums over the whole eval set and the gathered ``eval_examples``."""
