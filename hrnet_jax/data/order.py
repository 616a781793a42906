"""The data order, a pure function of (seed, step): NumPy only, so it is tested and reasoned about alone.

Global example position q = step * global_batch + k reads example ``permutation(seed, epoch)[q mod N]`` (epochs are
fresh permutations, concatenated end to end); every process takes its contiguous slice of each global batch.
Evaluation visits the split in order, in whole global batches (the last one padded). With groups (``GroupedOrder``:
orientation buckets), each batch holds one group's examples; evaluation visits each group in order in turn.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def global_positions(step: int, global_batch_size: int) -> np.ndarray:
  """Positions in the endless stream of training examples that make up global batch ``step``."""
  return step * global_batch_size + np.arange(global_batch_size)


def train_indices(num_examples: int, global_batch_size: int, seed: int, step: int) -> np.ndarray:
  """Dataset indices of global batch ``step``: epochs are fresh permutations, concatenated end to end."""
  positions = global_positions(step, global_batch_size)
  epochs, offsets = np.divmod(positions, num_examples)
  return np.array([epoch_permutation(num_examples, seed, int(e))[o] for e, o in zip(epochs, offsets)])


def process_slice(global_batch_size: int, process_index: int, process_count: int) -> slice:
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} is not divisible by {process_count} processes")
  local = global_batch_size // process_count
  return slice(process_index * local, (process_index + 1) * local)


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
  return -(-num_examples // global_batch_size)


def group_members(groups: np.ndarray) -> list[np.ndarray]:
  """The dataset indices of each group 0, 1, ..., in order."""
  groups = np.asarray(groups)
  return [np.flatnonzero(groups == group) for group in range(int(groups.max(initial=-1)) + 1)]


class GroupedOrder:
  """Training batches that each hold examples of one group only (orientation buckets, as MMDetection's
  ``GroupSampler``), still a pure function of (seed, step).

  Epoch e: each group's examples are shuffled (seed, e, group) and cut into global batches, its last batch filled
  by repeating its own shuffled order from the start; then the batches of all groups are shuffled (seed, e). Every
  example is seen once per epoch (a few twice, to fill batches); an epoch has ``batches_per_epoch`` steps.
  """

  def __init__(self, groups: np.ndarray, global_batch_size: int, seed: int):
    self.members = group_members(groups)
    self.global_batch_size, self.seed = global_batch_size, seed
    self.batches_per_epoch = sum(num_eval_batches(len(m), global_batch_size) for m in self.members)
    if not self.batches_per_epoch:
      raise ValueError("no examples to train on")
    self.epoch = functools.lru_cache(maxsize=2)(self._epoch)  # this order's own cache: a step reads one epoch

  def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """([batches] group, [batches, global_batch_size] dataset indices) of ``epoch``, in step order."""
    groups, batches = [], []
    for group, members in enumerate(self.members):
      count = num_eval_batches(len(members), self.global_batch_size)
      shuffled = members[np.random.default_rng([self.seed, epoch, group]).permutation(len(members))]
      batches.append(np.resize(shuffled, count * self.global_batch_size).reshape(count, self.global_batch_size))
      groups += [group] * count
    order = np.random.default_rng([self.seed, epoch]).permutation(len(groups))
    return np.asarray(groups)[order], np.concatenate(batches)[order]

  def batch(self, step: int) -> tuple[int, np.ndarray]:
    """(group, dataset indices) of global batch ``step``."""
    epoch, offset = divmod(step, self.batches_per_epoch)
    groups, batches = self.epoch(epoch)
    return int(groups[offset]), batches[offset]
