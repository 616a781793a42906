"""The data-order core on its own: which examples make each global batch, each process's slice of it, and the
guard that turns an undecodable example into a masked one without moving the others."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from hrnet_jax.data import order, pipeline


def test_each_epoch_is_a_permutation_and_epochs_concatenate_end_to_end():
  num_examples, batch = 10, 4  # batches straddle epoch boundaries: 4 + 4 + (2 | 2) + ...
  stream = np.concatenate([order.train_indices(num_examples, batch, seed=3, step=s) for s in range(10)])
  epochs = stream.reshape(4, num_examples)
  for epoch, indices in enumerate(epochs):
    assert sorted(indices) == list(range(num_examples))
    np.testing.assert_array_equal(indices, order.epoch_permutation(num_examples, 3, epoch))
  assert not np.array_equal(epochs[0], epochs[1])  # fresh permutations, not one repeated


def test_the_order_is_a_pure_function_of_seed_and_step():
  first = [order.train_indices(37, 8, seed=0, step=s) for s in (0, 5, 123)]
  order.epoch_permutation.cache_clear()
  again = [order.train_indices(37, 8, seed=0, step=s) for s in (123, 5, 0)][::-1]  # any order of asking
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(order.train_indices(37, 8, seed=1, step=0), first[0])


def test_process_slices_partition_the_global_batch():
  slices = [order.process_slice(12, index, 3) for index in range(3)]
  assert [(s.start, s.stop) for s in slices] == [(0, 4), (4, 8), (8, 12)]
  positions = order.global_positions(7, 12)
  np.testing.assert_array_equal(np.concatenate([positions[s] for s in slices]), positions)
  with pytest.raises(ValueError, match="global batch 10 is not divisible by 3 processes"):
    order.process_slice(10, 0, 3)


def test_eval_batches_cover_every_example_once():
  assert [order.num_eval_batches(n, 4) for n in (1, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]


def test_grouped_batches_hold_one_group_and_each_epoch_sees_every_example():
  """Orientation buckets (MMDetection's GroupSampler): groups of 7 and 2 examples in batches of 4 make 2 + 1
  batches per epoch, each of one group, the last of a group filled from its own examples."""
  groups = np.array([0, 1, 0, 0, 0, 1, 0, 0, 0])
  grouped = order.GroupedOrder(groups, 4, seed=5)
  assert grouped.batches_per_epoch == 3
  for epoch in range(3):
    batches = [grouped.batch(epoch * 3 + k) for k in range(3)]
    for group, indices in batches:
      assert (groups[indices] == group).all() and len(indices) == 4
    seen = np.concatenate([indices for _, indices in batches])
    assert set(seen) == set(range(9))  # every example; the 3 spare places repeat some
    counts = np.bincount(seen, minlength=9)
    assert counts.max() == 2 and counts.sum() == 12
  assert [grouped.batch(s)[0] for s in range(9)] != [grouped.batch(0)[0]] * 9
  again = order.GroupedOrder(groups, 4, seed=5)  # a pure function of (seed, step), asked in any order
  for step in (8, 0, 4):
    assert again.batch(step)[0] == grouped.batch(step)[0]
    np.testing.assert_array_equal(again.batch(step)[1], grouped.batch(step)[1])
  assert [order.GroupedOrder(groups, 4, seed=6).batch(s)[1].tolist() for s in range(3)] != [
      grouped.batch(s)[1].tolist() for s in range(3)]
  np.testing.assert_array_equal(order.GroupedOrder(np.zeros(3, int), 2, 0).batch(0)[1].size, 2)


def test_grouped_pipelines_give_each_batch_its_groups_shape_and_resume_exactly():
  """Each group's batches come from its own preprocessing (here: its own shape); a pipeline started at step 3
  gives what an uninterrupted one gives from there; evaluation visits each group in turn, every example once."""
  groups = np.array([0, 1, 1, 0, 0, 1, 0])
  source = [{"value": np.float32(i)} for i in range(len(groups))]
  shapes = [(2, 3), (3, 2)]

  def train_fn(group):
    return lambda example, seed: {"value": example["value"] * tf.ones(shapes[group]),
                                  "seed": tf.cast(seed[1], tf.float32)}

  def train_batches(start_step, count):
    iterator = pipeline.train_iterator(source, [train_fn(0), train_fn(1)], global_batch_size=2, seed=1,
                                       start_step=start_step, groups=groups)
    batches = [next(iterator) for _ in range(count)]
    iterator.close()
    return batches

  batches = train_batches(0, 8)
  grouped = order.GroupedOrder(groups, 2, seed=1)
  for step, batch in enumerate(batches):
    group, indices = grouped.batch(step)
    assert batch["value"].shape == (2, *shapes[group])
    np.testing.assert_array_equal(batch["value"][:, 0, 0], indices)
    np.testing.assert_array_equal(batch["seed"], order.global_positions(step, 2))  # augmentation seeds
  for resumed, uninterrupted in zip(train_batches(3, 5), batches[3:]):
    np.testing.assert_array_equal(resumed["value"], uninterrupted["value"])

  def eval_fn(group):
    return lambda example: {"value": example["value"] * tf.ones(shapes[group])}

  evaluation = list(pipeline.eval_iterator(source, [eval_fn(0), eval_fn(1)], global_batch_size=2, groups=groups))
  assert [b["value"].shape[1:] for b in evaluation] == [shapes[0]] * 2 + [shapes[1]] * 2
  assert [b["index"][b["mask"] > 0].tolist() for b in evaluation] == [[0, 3], [4, 6], [1, 2], [5]]


def test_map_or_mark_replaces_a_failing_element_with_zeros_in_place():
  dataset = tf.data.Dataset.from_tensor_slices({"value": tf.constant([1.0, -1.0, 2.0, 3.0]),
                                                "index": tf.constant([0, 1, 2, 3], tf.int64)})

  def fn(element):  # fails on negative values, as a decoder on a corrupt file
    checked = tf.debugging.assert_non_negative(element["value"])
    with tf.control_dependencies([checked]):
      return {"value": tf.sqrt(element["value"]) * tf.ones([2])}

  marked = list(pipeline.map_or_mark(dataset, fn, keep=("index",)).as_numpy_iterator())
  assert [int(m["index"]) for m in marked] == [0, 1, 2, 3]  # order and count kept
  assert [float(m["decoded"]) for m in marked] == [1.0, 0.0, 1.0, 1.0]
  np.testing.assert_allclose([m["value"] for m in marked], [[1, 1], [0, 0], [2**0.5] * 2, [3**0.5] * 2], rtol=1e-6)


def test_map_or_mark_needs_fixed_shapes():
  dataset = tf.data.Dataset.from_tensor_slices({"value": tf.constant([1, 2])})
  with pytest.raises(ValueError, match="preprocessing must produce fixed shapes"):
    pipeline.map_or_mark(dataset, lambda element: {"value": tf.range(element["value"])})


def test_a_ctrl_c_while_tensorflow_makes_a_batch_is_held_until_the_batch_is_made():
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers are set in the main thread only")
  seen_while_making = []

  def interrupted(signum, frame):
    del signum, frame
    raise KeyboardInterrupt

  first_taken = threading.Event()

  def elements():  # runs in TensorFlow's threads, which may make an element before it is asked for
    yield 0
    first_taken.wait(10)
    deadline = time.monotonic() + 10
    while signal.getsignal(signal.SIGINT) is interrupted and time.monotonic() < deadline:
      time.sleep(0.01)  # until the caller asks for the next batch (its handler changes then) or 10 s
    seen_while_making.append(signal.getsignal(signal.SIGINT))
    os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C a user presses while the batch is being made
    yield 1

  previous = signal.signal(signal.SIGINT, interrupted)
  batches = pipeline.BatchIterator(
      tf.data.Dataset.from_generator(elements, output_signature=tf.TensorSpec((), tf.int64)))
  try:
    assert next(batches) == 0
    first_taken.set()
    with pytest.raises(KeyboardInterrupt):
      next(batches)  # the batch made, then the interruption delivered by the caller's own handler
  finally:
    signal.signal(signal.SIGINT, previous)
    batches.close()
  assert len(seen_while_making) == 1 and seen_while_making[0] is not interrupted  # never raised inside TensorFlow
