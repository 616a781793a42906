"""Input-pipeline throughput of a config's data, without a model: is the data fast enough to feed training?

    python -m hrnet_jax.data.benchmark --config configs/imagenet.py:variant=w32 \\
        --config.data.data_dir=/data/tensorflow_datasets [--batches 50] [--output benchmarks/pipeline.jsonl]

Times ``--batches`` training batches (after ``--warmup``) and one pass of up to ``--batches`` eval batches through
the same tf.data pipelines the trainer uses (decode, augment, batch, prefetch) and prints examples/s, and
examples/s per CPU core, which is what to compare with the model's img/s per accelerator (``hrnet_jax.benchmark``).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import time

from absl import flags
from ml_collections import config_flags

from hrnet_jax import cli, tasks
from hrnet_jax.data import inputs as data_inputs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/imagenet.py:variant=w32.",
                                          lock_config=True)
_BATCHES = flags.DEFINE_integer("batches", 50, "Timed batches per split.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed training batches first (thread pools, file caches).")
_OUTPUT = flags.DEFINE_string("output", None, "Append the JSON line to this file.")
flags.mark_flags_as_required(["config"])


def _examples_per_second(iterator, batches: int) -> tuple[float, int]:
  start, examples = time.perf_counter(), 0
  for batch in itertools.islice(iterator, batches):
    examples += len(batch["image"])
  return examples / (time.perf_counter() - start), examples


def main(argv):
  del argv
  config = _CONFIG.value
  task = tasks.create(config)
  inputs = data_inputs.create_input(config, start_step=0, process_index=0, process_count=1,
                                    eval_source=task.eval_source())
  cores = len(os.sched_getaffinity(0))
  try:
    for _ in range(_WARMUP.value):
      next(inputs.train)
    train_rate, train_examples = _examples_per_second(inputs.train, _BATCHES.value)
  finally:
    inputs.train.close()
  evaluation = inputs.eval.make_eval()
  try:
    eval_rate, eval_examples = _examples_per_second(evaluation, _BATCHES.value)
  finally:
    evaluation.close()
  # The network input (h, w), as the recipe declares it.
  size = list(tasks.recipes()[config.data.preprocess].batch_keys(config.data)[0]["image"].shape[:2])
  result = {"dataset": config.data.name, "preprocess": config.data.preprocess, "image_size": size,
            "batch": config.global_batch_size, "cores": cores, "train_examples": train_examples,
            "train_examples_per_second": train_rate, "train_examples_per_second_per_core": train_rate / cores,
            "eval_examples": eval_examples, "eval_examples_per_second": eval_rate,
            "eval_examples_per_second_per_core": eval_rate / cores,
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  print(f"{config.data.name} ({config.data.preprocess}) on {cores} cores: train {train_rate:.1f} examples/s "
        f"({train_rate / cores:.1f} per core), eval {eval_rate:.1f} examples/s ({eval_rate / cores:.1f} per core)")
  print(json.dumps(result))
  if _OUTPUT.value:
    with open(_OUTPUT.value, "a") as f:
      f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
  cli.run(main)
