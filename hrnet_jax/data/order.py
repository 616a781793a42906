"""The data order, a pure function of (seed, step): NumPy only, so it is tested and reasoned about alone.

Global example position q = step * global_batch + k reads example ``permutation(seed, epoch)[q mod N]`` (epochs are
fresh permutations, concatenated end to end); every process takes its contiguous slice of each global batch.
Evaluation visits the split in order, in whole global batches (the last one padded).
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
