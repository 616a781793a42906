"""How a task declares itself: ``TaskSpec`` (its network, config section, recipes, datasets and hooks), ``Recipe``
(a preprocessing recipe and the batch keys it produces) and the batch contract between them.

A declaration is data plus references to code: a reference is the object itself or a ``"module:attribute"`` string
imported on first use, so that declaring (and listing) tasks imports neither TensorFlow nor any task's training
code (a declaration may import a light module its defaults come from, as segmentation's inference options).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import ml_collections
import numpy as np

from hrnet_jax.model.factory import ModelDefaults

Ref = Any  # an object, or "module:attribute"


def resolve(ref: Ref) -> Any:
  """The object a reference names."""
  if not isinstance(ref, str):
    return ref
  module, _, attribute = ref.partition(":")
  return getattr(importlib.import_module(module), attribute)


@dataclasses.dataclass(frozen=True)
class BatchKey:
  """One key of a batch: its dtype and its shape per example."""
  dtype: str
  shape: tuple[int, ...] = ()

  def describe(self) -> str:
    return f"{self.dtype}{list(self.shape)}"


KeySpecs = Mapping[str, BatchKey]

# What the pipeline (``data.pipeline``) adds to every recipe's examples: the loss weight of an example (0 when its
# image could not be decoded) and, in evaluation, its index in the split and whether it failed to decode (padding
# examples have mask 0 and undecodable 0).
PIPELINE_TRAIN_KEYS: KeySpecs = {"mask": BatchKey("float32")}
PIPELINE_EVAL_KEYS: KeySpecs = {"mask": BatchKey("float32"), "index": BatchKey("int64"),
                                "undecodable": BatchKey("float32")}


@dataclasses.dataclass(frozen=True)
class PredictOptions:
  """What ``python -m hrnet_jax.predict`` passes to a task's predict hook (each task reads what applies to it)."""
  top: int = 5  # classification: classes listed per image
  boxes: Mapping[str, list[list[float]]] | None = None  # pose, landmarks: image path or file name -> [x, y, w, h]s
  output_dir: str = "predictions"  # where pictures (overlays, label maps) go


@dataclasses.dataclass
class Prediction:
  """A predict hook's answer: the JSON to write, the lines to print, and an error per image that failed."""
  payload: Any
  lines: list[str]
  errors: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Serving:
  """What ``python -m hrnet_jax.export`` serialises for a task: ``run(apply, image, **inputs)`` -> named arrays,
  where ``apply`` runs the model in inference mode and ``image`` [B, H, W, 3] is normalised as in training.

  inputs: the per-example inputs after the image, in call order: name -> (shape per example, meaning).
  outputs: name -> meaning (shapes per example included), for the export's sidecar.
  names: what the outputs index (class or keypoint names), when the task knows them without the dataset.
  """
  run: Callable[..., Mapping[str, Any]]
  inputs: Mapping[str, tuple[tuple[int, ...], str]]
  outputs: Mapping[str, str]
  names: tuple[str, ...] = ()


class BatchContractError(ValueError):
  """A recipe's batches do not carry what a task reads, or not as the recipe declares."""


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A preprocessing recipe, named in configs by ``data.preprocess``.

  make: ``(config.data) -> (train_fn, eval_fn)`` on the tf.data side (``data.pipeline``'s TrainPreprocess and
    EvalPreprocess), usually a "module:function" reference into the task's ``recipes.py``.
  keys: ``(config.data) -> (train keys, eval keys)``: what one example of each holds after preprocessing.
  defaults: every ``config.data`` key the recipe reads, with its default (``config_lib.base_config`` adds them).
  portrait: for a recipe with orientation buckets (``data.orientation_buckets``: each batch holds only landscape or
    only portrait images, as MMDetection's ``GroupSampler``), ``(config.data) -> config.data`` of the portrait
    images' batches (another canvas); the landscape ones read ``config.data`` itself.
  """
  name: str
  make: Ref
  keys: Callable[[ml_collections.ConfigDict], tuple[KeySpecs, KeySpecs]]
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  portrait: Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict] | None = None

  def build(self, data: ml_collections.ConfigDict) -> tuple[Callable, Callable]:
    return resolve(self.make)(data)

  def buckets(self, data: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """The ``config.data`` of each orientation group (``sources.orientation_groups``: landscape, portrait) when the
    run buckets its batches by orientation, else ``[data]``."""
    if self.portrait is None or not data.get("orientation_buckets"):
      return [data]
    return [data, self.portrait(data)]

  def data_config(self, **values: Any) -> ml_collections.ConfigDict:
    """A ``config.data`` for this recipe alone: its defaults, with ``values`` on top (for tests and tools)."""
    return ml_collections.ConfigDict({"name": "", **self.defaults, **values})

  def batch_keys(self, data: ml_collections.ConfigDict) -> tuple[KeySpecs, KeySpecs]:
    """(train, eval) keys of a batch of this recipe, the pipeline's own included."""
    train, evaluation = self.keys(data)
    return {**train, **PIPELINE_TRAIN_KEYS}, {**evaluation, **PIPELINE_EVAL_KEYS}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """Everything the programs, the engine and the data code know about a task.

  name: the ``config.task`` value.
  model: the network of the task's official codebase (``create_model(name, task=...)`` builds it).
  task: the ``Task`` class (loss, eval sums, finalize), or None for a network without a training task yet.
  config: the top-level config keys the task owns, with their defaults (nested mappings are config sections;
    ``data`` adds keys to ``config.data``).
  recipes: the task's preprocessing recipes; the first is its default. A task reads any recipe that produces the
    keys it reads (``Task.train_reads`` / ``eval_reads``).
  builders: the tfds builders of the task's datasets, by dataset name (``coco_keypoints``, ...).
  predict: ``(config, checkpoint, paths, PredictOptions) -> Prediction`` for ``python -m hrnet_jax.predict``.
  """
  name: str
  model: ModelDefaults
  task: Ref = None
  config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  recipes: tuple[Recipe, ...] = ()
  builders: Mapping[str, Ref] = dataclasses.field(default_factory=dict)
  predict: Ref = None

  @property
  def trainable(self) -> bool:
    return self.task is not None

  def task_class(self) -> type:
    if self.task is None:
      raise ValueError(f"task {self.name!r} is a network without a training task yet (its head only); trainable "
                       "tasks are registered with a Task class")
    return resolve(self.task)


def check_pairing(task_name: str, task_class: type, recipe: Recipe, data: ml_collections.ConfigDict) -> None:
  """Fails, naming the recipe, the task and the key, when ``recipe`` does not produce a key the task reads."""
  train, evaluation = recipe.batch_keys(data)
  for phase, reads, produced in (("training", task_class.train_reads, train),
                                 ("evaluation", task_class.eval_reads, evaluation)):
    missing = [key for key in reads if key not in produced]
    if missing:
      raise BatchContractError(
          f"recipe {recipe.name!r} (data.preprocess) does not produce {missing[0]!r}, which task {task_name!r} "
          f"reads in {phase}; the recipe produces {', '.join(sorted(produced))}")


def check_batch(batch: Mapping[str, Any], expected: KeySpecs, recipe: str, task: str, phase: str) -> None:
  """Fails, naming the recipe, the task and the key, when a batch (leading batch axis) differs from what its recipe
  declares: a missing or undeclared key, another dtype, another shape per example."""
  def fail(key: str, what: str) -> None:
    raise BatchContractError(f"recipe {recipe!r} produced a {phase} batch for task {task!r} whose key {key!r} {what}")

  for key, spec in expected.items():
    if key not in batch:
      fail(key, "is missing (the recipe declares it)")
    value = batch[key]
    if np.dtype(value.dtype) != np.dtype(spec.dtype):
      fail(key, f"is {np.dtype(value.dtype).name}, declared {spec.dtype}")
    if tuple(value.shape[1:]) != tuple(spec.shape):
      fail(key, f"has shape {list(value.shape[1:])} per example, declared {list(spec.shape)}")
  for key in batch:
    if key not in expected:
      fail(key, f"is not declared (declared: {', '.join(sorted(expected))})")
