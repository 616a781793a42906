"""Image classification: softmax cross-entropy, top-1/top-5 accuracy."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image, ImageDraw

from hrnet_jax.tasks.base import Batch, Task, enlarged
from hrnet_jax.tasks.spec import Serving


class ClassificationTask(Task):
  name = "classification"
  train_reads = eval_reads = ("image", "label", "mask")

  def check_dataset(self, class_names: list[str] | None) -> None:
    num_classes = self.output_count()
    if class_names is not None and len(class_names) != num_classes:
      raise ValueError(f"the dataset has {len(class_names)} classes but the model predicts {num_classes}; set "
                       f"--config.model.overrides.num_classes={len(class_names)} (or the config's classes= arg)")

  def loss(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    num_classes = outputs.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes),
                                  self.config.label_smoothing)
    # ``mask`` is 0 for examples whose image could not be decoded: they carry no loss.
    mask = batch["mask"].astype(jnp.float32)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    loss = jnp.sum(mask * optax.softmax_cross_entropy(outputs, targets)) / count
    return loss, {"accuracy": jnp.sum(mask * (jnp.argmax(outputs, -1) == batch["label"])) / count}

  def eval_sums(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    mask = batch["mask"]
    labels = batch["label"]
    top5 = jax.lax.top_k(outputs, min(5, outputs.shape[-1]))[1]
    loss = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
    return {"count": jnp.sum(mask),
            "top1": jnp.sum(mask * (top5[:, 0] == labels)),
            "top5": jnp.sum(mask * jnp.any(top5 == labels[:, None], axis=-1)),
            "loss": jnp.sum(mask * loss)}

  def preview(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    probabilities, classes = jax.lax.top_k(jax.nn.softmax(outputs.astype(jnp.float32)), min(3, outputs.shape[-1]))
    return {"classes": classes, "probabilities": probabilities, "label": batch["label"]}

  def draw_preview(self, image: Image.Image, preview: dict[str, np.ndarray]) -> Image.Image:
    """The image with its label and the top three classes with their probabilities written under it."""
    image = enlarged(image)
    canvas = Image.new("RGB", (image.width, image.height + 28), (0, 0, 0))
    canvas.paste(image)
    top = ", ".join(f"{c} {p:.2f}" for c, p in zip(preview["classes"], preview["probabilities"]))
    ImageDraw.Draw(canvas).text((2, image.height + 2), f"label {preview['label']}\ntop: {top}", fill=(255, 255, 255))
    return canvas

  def finalize(self, sums: dict[str, Any], examples: dict[str, Any]) -> dict[str, float]:
    del examples
    count = float(sums["count"])
    return {"top1": 100 * float(sums["top1"]) / count, "top5": 100 * float(sums["top5"]) / count,
            "loss": float(sums["loss"]) / count, "count": count}

  def serving(self) -> Serving:
    def run(apply, image):
      logits = apply(image).astype(jnp.float32)
      return {"probabilities": jax.nn.softmax(logits), "logits": logits}
    return Serving(run, inputs={}, outputs={"probabilities": "[classes] softmax of the logits",
                                            "logits": "[classes] the model's output"})

  def synthetic_batch(self, batch: int, size: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"image": rng.standard_normal((batch, *size, 3), dtype=np.float32), "mask": np.ones((batch,), np.float32),
            "label": rng.integers(0, self.output_count(), (batch,), dtype=np.int32)}
