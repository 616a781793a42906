"""A run's inputs: the endless training iterator and exact eval passes of ``config.data``, through the recipe that
``config.data.preprocess`` names (tf.data)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Sequence

import ml_collections
import numpy as np

from hrnet_jax import tasks
from hrnet_jax.data import order, pipeline, sources


@dataclasses.dataclass
class EvalInput:
  """A factory of exact passes over the eval split."""
  make_eval: Callable[[], Iterator[dict]]
  num_eval_examples: int
  class_names: list[str] | None  # None when the dataset records no class names


@dataclasses.dataclass
class Input:
  """A run's data: the endless training iterator and the eval passes."""
  train: Iterator[dict]
  num_train_examples: int
  class_names: list[str] | None  # of the train split
  eval: EvalInput


def create_eval_input(config: ml_collections.ConfigDict, *, process_index: int, process_count: int,
                      eval_source: Sequence[dict[str, Any]] | None = None) -> EvalInput:
  """Opens ``config.data``'s eval split for this process (the train split is not needed, nor opened), or reads
  ``eval_source`` instead when the task gives one (``Task.eval_source``: pose on a detector's boxes)."""
  data = config.data
  if eval_source is not None:
    source, class_names = eval_source, None
  else:
    source, class_names = sources.open_source(data.name, data.eval_split, data.data_dir, data.manual_dir,
                                              data.labelled_only)
  groups = _orientation_groups(config, data.eval_split if eval_source is None else None)
  eval_fns = [eval_fn for _, eval_fn in _preprocessing(config)]

  def make_eval():
    return pipeline.eval_iterator(source, eval_fns[0] if groups is None else eval_fns,
                                  global_batch_size=config.eval_batch_size, process_index=process_index,
                                  process_count=process_count, groups=groups)

  return EvalInput(make_eval=make_eval, num_eval_examples=len(source), class_names=class_names)


def _preprocessing(config: ml_collections.ConfigDict) -> list[tuple]:
  """The recipe's (train_fn, eval_fn) for each orientation group (one when the run has no buckets)."""
  recipe = tasks.recipes()[config.data.preprocess]
  return [recipe.build(data) for data in recipe.buckets(config.data)]


def _orientation_groups(config: ml_collections.ConfigDict, split: str | None) -> np.ndarray | None:
  """Each example's orientation group in ``split`` when the run buckets by orientation, else None."""
  data = config.data
  if len(tasks.recipes()[data.preprocess].buckets(data)) == 1:
    return None
  if split is None:
    raise ValueError("data.orientation_buckets needs a dataset that records its images' orientations")
  return sources.orientation_groups(data.name, split, data.data_dir, data.manual_dir)


def steps_per_epoch(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
  """Global batches per epoch: the examples over the batch size, or with orientation buckets the buckets' batches
  (each orientation's last batch filled: ``order.GroupedOrder``)."""
  groups = _orientation_groups(config, config.data.train_split)
  if groups is None:
    return max(num_train_examples // config.global_batch_size, 1)
  return order.GroupedOrder(groups, config.global_batch_size, config.seed).batches_per_epoch


def open_train_source(config: ml_collections.ConfigDict) -> tuple[Sequence[dict[str, Any]], list[str] | None]:
  """The training split of ``config.data`` (random access) and its class names."""
  data = config.data
  return sources.open_source(data.name, data.train_split, data.data_dir, data.manual_dir, data.labelled_only)


def create_input(config: ml_collections.ConfigDict, *, start_step: int, process_index: int, process_count: int,
                 eval_source: Sequence[dict[str, Any]] | None = None,
                 train_source: tuple[Sequence[dict[str, Any]], list[str] | None] | None = None,
                 evaluation: EvalInput | None = None) -> Input:
  """Opens ``config.data`` (or takes ``train_source``, from ``open_train_source``, and ``evaluation``, from
  ``create_eval_input``) and builds this process's pipelines, resuming the data stream at ``start_step``."""
  data = config.data
  evaluation = evaluation or create_eval_input(config, process_index=process_index, process_count=process_count,
                                               eval_source=eval_source)
  source, class_names = train_source or open_train_source(config)
  groups = _orientation_groups(config, data.train_split)
  train_fns = [train_fn for train_fn, _ in _preprocessing(config)]
  train = pipeline.train_iterator(
      source, train_fns[0] if groups is None else train_fns, global_batch_size=config.global_batch_size,
      seed=config.seed, start_step=start_step, process_index=process_index, process_count=process_count,
      groups=groups)
  return Input(train=train, num_train_examples=len(source), class_names=class_names, eval=evaluation)
