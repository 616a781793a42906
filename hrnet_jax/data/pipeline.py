"""Deterministic input pipelines over random-access tfds sources (tf.data).

The order comes from ``order`` (a pure function of (seed, step)); each example is augmented with the stateless seed
(seed, its position in the stream), so a run resumed at any step, or run on any number of processes and devices,
sees exactly the batches an uninterrupted single-process run would. Evaluation is padded to whole global batches
with a ``mask`` so that every example counts exactly once. With groups (orientation buckets), every batch holds one
group's examples, made by that group's pipeline (its own preprocessing: its own canvas).
"""

from __future__ import annotations

import atexit
import gc
import itertools
import signal
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from hrnet_jax.data import keep_tensorflow_on_the_host
from hrnet_jax.data.order import (GroupedOrder, global_positions, group_members, num_eval_batches, process_slice,
                                  train_indices)

keep_tensorflow_on_the_host(tf)

Example = dict[str, Any]
TrainPreprocess = Callable[[Example, tf.Tensor], Example]
EvalPreprocess = Callable[[Example], Example]


def _signature(record: Example) -> dict[str, tf.TensorSpec]:
  spec = {}
  for key, value in record.items():
    value = np.asarray(value)
    string = value.dtype.kind in "OSU"  # bytes, str, or tfds text as an object array
    spec[key] = tf.TensorSpec(value.shape, tf.string if string else tf.as_dtype(value.dtype))
  return spec


def _from_records(source: Sequence[Example], items: Callable[[], Iterator[tuple[int, Example]]],
                  extra: dict[str, tf.TensorSpec]) -> tf.data.Dataset:
  signature = {**_signature(source[0]), **extra}
  return tf.data.Dataset.from_generator(lambda: (record for _, record in items()), output_signature=signature)


class BatchIterator:
  """NumPy batches from tf.data pipelines, closable: each batch from the pipeline that ``schedule`` names next
  (one pipeline per group), or all from the only one.

  A tf.data iterator fed by a Python generator must be released before the interpreter shuts down, or TF's
  threads wait forever for the GIL: ``close()`` releases it, and every open iterator is closed at exit.
  """

  def __init__(self, datasets: tf.data.Dataset | Mapping[int, tf.data.Dataset],
               schedule: Iterable[int] | None = None):
    datasets = datasets if isinstance(datasets, Mapping) else {0: datasets}
    self._iterators = {group: dataset.as_numpy_iterator() for group, dataset in datasets.items()}
    self._schedule = iter(schedule) if schedule is not None else itertools.repeat(0)
    _OPEN_ITERATORS.add(self)

  def __iter__(self) -> "BatchIterator":
    return self

  def __next__(self) -> Example:
    if self._iterators is None:
      raise StopIteration
    return _holding_ctrl_c(self._iterators[next(self._schedule)])

  def close(self) -> None:
    self._iterators = None
    gc.collect()


def _holding_ctrl_c(iterator: Iterator[Example]) -> Example:
  """``next(iterator)``, with a Ctrl-C that arrives meanwhile held until TensorFlow has made the batch and then
  delivered as usual (a second one is delivered at once, for a pipeline that hangs).

  A ``KeyboardInterrupt`` raised while tf.data's C++ is making a batch from a Python generator corrupts its memory
  now and then: a clean-clone run died of SIGSEGV there; interrupting ``next`` 40 times per process aborted
  ("free(): invalid next size") 5 of 30 processes, and none of 48 with the interrupt held (three runs of
  ``benchmarks/interrupt_tf_data.py``).
  """
  previous = signal.getsignal(signal.SIGINT)
  if threading.current_thread() is not threading.main_thread() or not callable(previous):
    return next(iterator)  # signals reach the main thread's Python handler only; none set from Python: nothing held
  held = []

  def hold(signum, frame):
    if held:
      previous(signum, frame)
    held.append(signum)

  signal.signal(signal.SIGINT, hold)
  try:
    return next(iterator)
  finally:
    signal.signal(signal.SIGINT, previous)
    if held:
      previous(signal.SIGINT, None)


_OPEN_ITERATORS: "weakref.WeakSet[BatchIterator]" = weakref.WeakSet()


@atexit.register
def _close_open_iterators() -> None:
  for iterator in list(_OPEN_ITERATORS):
    iterator.close()


def map_or_mark(dataset: tf.data.Dataset, fn: Callable[..., Example], keep: tuple[str, ...] = ()) -> tf.data.Dataset:
  """``dataset.map(fn)``, except that an element whose ``fn`` fails (an undecodable image) becomes zeros with
  ``decoded`` 0 instead of ending the pass: the batch structure, and so the data order and eval counts, stay
  exact. TensorFlow logs each failure's message; the loop counts them (``undecodable``) and losses skip them.
  Keys in ``keep`` are copied into ``fn``'s output unchanged, and into a replacement too."""
  def transformed(element):
    return fn({k: v for k, v in element.items() if k not in keep})

  spec = dataset.map(transformed).element_spec
  if not all(s.shape.is_fully_defined() for s in spec.values()):
    raise ValueError(f"preprocessing must produce fixed shapes (so a failed example can be replaced); got {spec}")

  def decoded(element):
    return {**transformed(element), **{k: element[k] for k in keep}, "decoded": tf.constant(1.0)}

  def replacement(element):
    return {**{key: tf.zeros(s.shape, s.dtype) for key, s in spec.items()}, **{k: element[k] for k in keep},
            "decoded": tf.constant(0.0)}

  def one(element):
    attempt = tf.data.Dataset.from_tensors(element).map(decoded).ignore_errors(log_warning=True)
    return attempt.concatenate(tf.data.Dataset.from_tensors(element).map(replacement)).take(1)

  return dataset.interleave(one, cycle_length=16, block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)


def _batched(dataset: tf.data.Dataset, local_batch_size: int) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = True
  dataset = dataset.with_options(options).batch(local_batch_size, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def _per_group(preprocess: Any, groups: np.ndarray | None, num_examples: int) -> list:
  """One preprocessing function per group (a single one when there are no groups)."""
  if groups is None:
    return [preprocess]
  if len(groups) != num_examples:
    raise ValueError(f"{len(groups)} examples have a group, but the source has {num_examples}")
  preprocesses = list(preprocess)
  if len(preprocesses) <= int(groups.max(initial=0)):
    raise ValueError(f"{len(preprocesses)} preprocessing functions for {int(groups.max()) + 1} groups")
  return preprocesses


def train_iterator(source: Sequence[Example], preprocess: TrainPreprocess | Sequence[TrainPreprocess], *,
                   global_batch_size: int, seed: int, start_step: int, process_index: int = 0,
                   process_count: int = 1, groups: np.ndarray | None = None) -> BatchIterator:
  """This process's share of global batches ``start_step``, ``start_step + 1``, ... (endless). With ``groups``
  (each example's group), every global batch holds one group's examples (``order.GroupedOrder``), preprocessed by
  that group's function in ``preprocess`` (a sequence, one per group)."""
  mine = process_slice(global_batch_size, process_index, process_count)
  preprocesses = _per_group(preprocess, groups, len(source))

  def batch_order() -> Callable[[int], tuple[int, np.ndarray]]:
    """(group, dataset indices) of a step; each reader of the order gets its own (the pipelines run in threads)."""
    if groups is None:
      return lambda step: (0, train_indices(len(source), global_batch_size, seed, step))
    return GroupedOrder(groups, global_batch_size, seed).batch

  def records(group):
    batch_at, step = batch_order(), start_step
    while True:
      batch_group, indices = batch_at(step)
      if batch_group == group:
        for position, index in zip(global_positions(step, global_batch_size)[mine], indices[mine]):
          yield position, {**source[int(index)], "_position": np.int64(position)}
      step += 1

  def with_mask(example):
    mask = example.pop("decoded")  # losses average over the examples that decoded
    return {**example, "mask": mask}

  def pipeline(group):
    dataset = _from_records(source, lambda: records(group), {"_position": tf.TensorSpec((), tf.int64)})

    def augment(example):
      position = example.pop("_position")
      return preprocesses[group](example, tf.stack([tf.constant(seed, tf.int64), position]))

    return _batched(map_or_mark(dataset, augment).map(with_mask), mine.stop - mine.start)

  present = [0] if groups is None else [g for g, members in enumerate(group_members(groups)) if len(members)]
  schedule_order = batch_order()
  return BatchIterator({group: pipeline(group) for group in present},
                       (schedule_order(step)[0] for step in itertools.count(start_step)))


def eval_iterator(source: Sequence[Example], preprocess: EvalPreprocess | Sequence[EvalPreprocess], *,
                  global_batch_size: int, process_index: int = 0, process_count: int = 1,
                  groups: np.ndarray | None = None) -> BatchIterator:
  """One pass over ``source`` in order, padded to whole global batches; ``mask`` is 0 on padding. With ``groups``,
  each group's examples in turn, each group padded to whole batches and preprocessed by its function."""
  mine = process_slice(global_batch_size, process_index, process_count)
  preprocesses = _per_group(preprocess, groups, len(source))
  members = [np.arange(len(source))] if groups is None else group_members(groups)

  def records(indices):
    for step in range(num_eval_batches(len(indices), global_batch_size)):
      for position in global_positions(step, global_batch_size)[mine]:
        valid = position < len(indices)
        # Padding repeats the group's first example (a valid one keeps the preprocessing well-defined), mask 0.
        index = int(indices[position if valid else 0])
        yield position, {**source[index], "_valid": np.float32(valid), "_index": np.int64(index)}

  extra = {"_valid": tf.TensorSpec((), tf.float32), "_index": tf.TensorSpec((), tf.int64)}

  def with_mask(example):
    valid, decoded, index = example.pop("_valid"), example.pop("decoded"), example.pop("_index")
    # Padding and undecodable examples are masked out; undecodable ones are counted, so none is lost silently.
    return {**example, "index": index, "mask": valid * decoded, "undecodable": valid * (1 - decoded)}

  def pipeline(group):
    dataset = _from_records(source, lambda: records(members[group]), extra)
    dataset = map_or_mark(dataset, preprocesses[group], keep=("_valid", "_index"))
    return _batched(dataset.map(with_mask), mine.stop - mine.start)

  present = [group for group, indices in enumerate(members) if len(indices)]
  schedule = [group for group in present for _ in range(num_eval_batches(len(members[group]), global_batch_size))]
  return BatchIterator({group: pipeline(group) for group in present}, schedule)
