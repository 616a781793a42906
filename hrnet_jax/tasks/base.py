"""The interface every task implements (JAX only, no TensorFlow)."""

from __future__ import annotations

import abc
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from hrnet_jax import tasks
from hrnet_jax.model import factory
from hrnet_jax.tasks.spec import KeySpecs, Serving

Batch = dict[str, jax.Array]


def enlarged(image: Image.Image, side: int = 256) -> Image.Image:
  """``image`` scaled up by a whole factor until its longer side reaches ``side`` (tiny inputs stay visible)."""
  scale = max(1, side // max(image.size))
  return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


class ArrayCollector:
  """Keeps each eval batch's per-example arrays; ``result()`` concatenates them in data order."""

  def __init__(self):
    self._parts: dict[str, list[np.ndarray]] = {}

  def add(self, examples: dict[str, np.ndarray]) -> None:
    for key, value in examples.items():
      self._parts.setdefault(key, []).append(value)

  def result(self) -> dict[str, np.ndarray]:
    return {key: np.concatenate(values) for key, values in self._parts.items()}


class Task(abc.ABC):
  """Loss and metrics of one task. Evaluation accumulates masked *sums*, so padding never counts and
  the result is exact however the eval set is split over batches, devices and hosts.

  ``train_reads`` and ``eval_reads`` are the batch keys the task reads: a recipe that does not produce one of them
  cannot be paired with the task (``tasks.create`` fails at start-up, naming the key).
  """

  name: str
  train_reads: tuple[str, ...] = ("image", "mask")
  eval_reads: tuple[str, ...] = ("image", "mask")

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  @property
  def count_name(self) -> str | None:
    """The model option naming the number of outputs (``num_classes``, ``num_keypoints``, ...)."""
    return factory.model_defaults(self.name).count_name

  def output_count(self) -> int | None:
    return factory.output_count(self.name, self.config.model.overrides)

  def batch_keys(self, like: Batch | None = None) -> tuple[KeySpecs, KeySpecs]:
    """(train, eval) keys of the batches of this run's recipe (``config.data.preprocess``), as it declares them:
    with orientation buckets, of the bucket whose images have the shape of ``like``'s (else of the first)."""
    recipe = tasks.recipes()[self.config.data.preprocess]
    declared = [recipe.batch_keys(data) for data in recipe.buckets(self.config.data)]
    if like is not None:
      for keys in declared:
        if tuple(like["image"].shape[1:]) in (keys[0]["image"].shape, keys[1]["image"].shape):
          return keys
    return declared[0]

  def create_model(self) -> nn.Module:
    model = self.config.model
    options = {"scan_repeats": model.scan_repeats, **dict(model.overrides)}
    return factory.create_model(model.name, task=self.name, dtype=jnp.dtype(model.dtype),
                                param_dtype=jnp.dtype(model.param_dtype), **options)

  def check_dataset(self, class_names: list[str] | None) -> None:
    """Raises ValueError when the dataset's labels cannot be this model's outputs (e.g. a class-count mismatch)."""
    del class_names

  def eval_source(self) -> Any:
    """The eval examples when they come from elsewhere than the dataset's eval split (pose: a detector's boxes);
    None reads the split."""
    return None

  def model_inputs(self, batch: Batch, train: bool) -> dict[str, jax.Array]:
    """What the network reads from the batch besides the images (``HRNet``'s ``head_inputs``): a two-stage
    detector samples its RoIs from the ground truth in training. Most networks read the images only."""
    del batch, train
    return {}

  def inference(self, model: Any, variables: Any, batch: Batch) -> Callable[[jax.Array], Any]:
    """``predict``'s ``apply``: the model in inference mode on images, with the batch's ``model_inputs``."""
    inputs = self.model_inputs(batch, train=False)
    return lambda images: model.apply(variables, images, train=False, **inputs)

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

  def example_collector(self) -> Any:
    """What receives each eval batch's valid ``eval_examples`` on the host (``add``) and gives ``finalize`` their
    total (``result()``). The default keeps the arrays; a task whose metric needs less than its arrays turns each
    batch into that as it arrives (detection: COCO result entries), so memory does not grow with the eval set."""
    return ArrayCollector()

  def preview(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    """Per-example arrays [B, ...] from which ``draw_preview`` pictures a prediction: small ones (points, labels,
    top classes; never full-size scores), computed in the eval step. {} draws nothing."""
    del outputs, batch
    return {}

  def draw_preview(self, image: Image.Image, preview: dict[str, np.ndarray]) -> Image.Image:
    """One example's ``preview`` drawn over its input ``image`` (for TensorBoard at each evaluation)."""
    del preview
    return image

  @abc.abstractmethod
  def finalize(self, sums: dict[str, Any], examples: Any) -> dict[str, float]:
    """Final metrics from the sums over the whole eval set and the collected ``eval_examples`` (the
    ``example_collector``'s result)."""

  def serving(self) -> Serving | None:
    """The deployed prediction (``python -m hrnet_jax.export``): inputs, outputs and how one follows from the other;
    None for a task that exports nothing yet."""
    return None

  def synthetic_batch(self, batch: int, size: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random images and targets in the layout ``loss`` reads (for ``python -m hrnet_jax.benchmark``)."""
    raise NotImplementedError(f"task {self.name!r} has no synthetic batch for the benchmark")
