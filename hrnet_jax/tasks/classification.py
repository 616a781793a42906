"""Image classification: softmax cross-entropy, top-1/top-5 accuracy."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from hrnet_jax.tasks.base import Batch, Task


class ClassificationTask(Task):
  name = "classification"

  def loss(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    num_classes = outputs.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes),
                                  self.config.get("label_smoothing", 0.0))
    loss = jnp.mean(optax.softmax_cross_entropy(outputs, targets))
    return loss, {"accuracy": jnp.mean(jnp.argmax(outputs, -1) == batch["label"])}

  def eval_sums(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    mask = batch["mask"]
    labels = batch["label"]
    top5 = jax.lax.top_k(outputs, min(5, outputs.shape[-1]))[1]
    loss = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
    return {"count": jnp.sum(mask),
            "top1": jnp.sum(mask * (top5[:, 0] == labels)),
            "top5": jnp.sum(mask * jnp.any(top5 == labels[:, None], axis=-1)),
            "loss": jnp.sum(mask * loss)}

  def finalize(self, sums: dict[str, Any]) -> dict[str, float]:
    count = float(sums["count"])
    return {"top1": 100 * float(sums["top1"]) / count, "top5": 100 * float(sums["top5"]) / count,
            "loss": float(sums["loss"]) / count, "count": count}
