"""A/B of the corrupt-image guard: tf.data ``map`` vs ``pipeline.map_or_mark`` on ImageNet train preprocessing.

    python benchmarks/make_jpeg_folder.py /tmp/jpeg_folder && python benchmarks/map_or_mark_overhead.py /tmp/jpeg_folder

Alternates the two pipelines three times (10 batches of 64 at 224 each, after 2 warm-up batches) and prints
examples/s per run and the medians.
"""

import itertools
import statistics
import sys
import time

import numpy as np
import tensorflow as tf

from hrnet_jax import tasks
from hrnet_jax.data import image_folder, pipeline
from hrnet_jax.tasks.classification import recipes


def batches(source, train_fn, guarded: bool):
  def records():
    for i in itertools.count():
      yield {**source[i % len(source)], "_position": np.int64(i)}

  signature = {"image": tf.TensorSpec((), tf.string), "label": tf.TensorSpec((), tf.int64),
               "_position": tf.TensorSpec((), tf.int64)}
  dataset = tf.data.Dataset.from_generator(records, output_signature=signature)

  def augment(example):
    seed = tf.stack([tf.constant(0, tf.int64), example["_position"]])
    return train_fn({"image": example["image"], "label": example["label"]}, seed)

  if guarded:
    dataset = pipeline.map_or_mark(dataset, augment)
  else:
    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return iter(dataset.batch(64).prefetch(tf.data.AUTOTUNE))


def main() -> None:
  source = image_folder.ImageFolderSource(sys.argv[1], "train")
  train_fn, _ = recipes.imagenet(tasks.recipes()["imagenet"].data_config(image_size=224))
  rates = {"map": [], "map_or_mark": []}
  for _ in range(3):
    for name in rates:
      iterator = batches(source, train_fn, guarded=name == "map_or_mark")
      next(iterator), next(iterator)
      start = time.perf_counter()
      for _ in range(10):
        next(iterator)
      rates[name].append(640 / (time.perf_counter() - start))
  for name, values in rates.items():
    print(f"{name:<12} examples/s {[round(v) for v in values]}, median {statistics.median(values):.0f}")


if __name__ == "__main__":
  main()
