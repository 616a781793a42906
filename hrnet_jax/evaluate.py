"""Evaluate a checkpoint on a config's eval split:

    python -m hrnet_jax.evaluate --config configs/imagenet.py:variant=w18 --checkpoint PATH [--output FILE.json]

PATH is an Orbax checkpoint of this codebase (a workdir, its ``best`` dir or a step dir) or a PyTorch-layout file
(``.pth``/``.pt``/``.bin`` official or timm weights, ``.safetensors``, ``.npz``). It must match the model exactly.
Every eval example counts exactly once, on any number of devices; images that cannot be decoded are counted and
reported, not silently dropped.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from hrnet_jax import cli, files, tasks
from hrnet_jax.engine import config_lib, sharding, trainer, weights

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/imagenet.py:variant=w18.",
                                          lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Orbax checkpoint dir or PyTorch-layout weights file.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the metrics to this JSON file.")
flags.mark_flags_as_required(["config", "checkpoint"])


def evaluate_checkpoint(config: ml_collections.ConfigDict, checkpoint: str) -> dict[str, Any]:
  """The task's metrics for ``checkpoint`` over the whole eval split, on every device."""
  config_lib.validate(config)
  mesh = sharding.make_mesh(config.num_devices or None)
  sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  task = tasks.create(config)
  model = task.create_model()
  from hrnet_jax.data import inputs as data_inputs  # pylint: disable=import-outside-toplevel  (TensorFlow from here)
  inputs = data_inputs.create_eval_input(config, process_index=jax.process_index(),
                                         process_count=jax.process_count(), eval_source=task.eval_source())
  task.check_dataset(inputs.class_names)
  variables = weights.load_variables(model, checkpoint, use_ema=bool(config.ema_decay))
  variables = sharding.replicate(variables, mesh)
  logging.info("evaluating %s on %d %s examples", checkpoint, inputs.num_eval_examples, config.data.eval_split)
  return trainer.evaluate(trainer.make_eval_step(model, task, mesh), variables, inputs.make_eval, mesh, task,
                          total_examples=inputs.num_eval_examples)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _OUTPUT.value:
    cli.writable_file(_OUTPUT.value, "--output")  # before the evaluation, not after it
  metrics = evaluate_checkpoint(_CONFIG.value, _CHECKPOINT.value)
  for key, value in metrics.items():
    print(f"{key:<16} {value:.4f}" if isinstance(value, float) else f"{key:<16} {value}")
  if _OUTPUT.value and jax.process_index() == 0:
    files.write_json(_OUTPUT.value, {"checkpoint": _CHECKPOINT.value, **metrics})


if __name__ == "__main__":
  cli.run(main)
