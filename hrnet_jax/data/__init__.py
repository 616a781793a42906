"""Input pipelines (the only package that imports TensorFlow)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import ml_collections

from hrnet_jax.data import pipeline, preprocess, sources


@dataclasses.dataclass
class Input:
  """A run's data: the endless training iterator, a factory of eval passes, and the sizes the loop needs."""
  train: Iterator[dict]
  make_eval: Callable[[], Iterator[dict]]
  num_train_examples: int
  num_eval_examples: int
  num_eval_batches: int


def create_input(config: ml_collections.ConfigDict, *, start_step: int, process_index: int,
                 process_count: int) -> Input:
  """Opens ``config.data`` and builds this process's pipelines, resuming the data stream at ``start_step``."""
  data = config.data
  train_source, _ = sources.open_source(data.name, data.train_split, data.get("data_dir"), data.get("manual_dir"))
  eval_source, _ = sources.open_source(data.name, data.eval_split, data.get("data_dir"), data.get("manual_dir"))
  train_fn, eval_fn = preprocess.get(data.preprocess, data)
  train = pipeline.train_iterator(
      train_source, train_fn, global_batch_size=config.global_batch_size, seed=config.seed, start_step=start_step,
      process_index=process_index, process_count=process_count)

  def make_eval():
    return pipeline.eval_iterator(eval_source, eval_fn, global_batch_size=config.eval_batch_size,
                                  process_index=process_index, process_count=process_count)

  return Input(train=train, make_eval=make_eval, num_train_examples=len(train_source),
               num_eval_examples=len(eval_source),
               num_eval_batches=pipeline.num_eval_batches(len(eval_source), config.eval_batch_size))
