"""Top-k classes of images with a trained classifier:

    python -m hrnet_jax.predict --config configs/imagenet.py:variant=w18 --checkpoint PATH IMAGE... \\
        [--top 5] [--output predictions.json]

Images get the config's eval preprocessing (ImageNet: shorter side 256, center 224). Class names come from the
config's dataset when it is available (folder names for ``image_folder``, synset ids for ``imagenet2012``),
indices otherwise. An image that cannot be read or decoded is reported and skipped; the others are still
predicted and written, and the exit status is 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from hrnet_jax import checkpointing, cli, tasks

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/imagenet.py:variant=w18.",
                                          lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Orbax checkpoint dir or PyTorch-layout weights file.")
_TOP = flags.DEFINE_integer("top", 5, "How many classes to list per image.")
_OUTPUT = flags.DEFINE_string("output", "predictions.json", "Where to write the predictions as JSON.")
flags.mark_flags_as_required(["config", "checkpoint"])


def _class_names(config: ml_collections.ConfigDict) -> list[str] | None:
  from hrnet_jax.data import sources  # pylint: disable=import-outside-toplevel
  data = config.data
  try:
    return sources.open_source(data.name, data.eval_split, data.get("data_dir"), data.get("manual_dir"))[1]
  except (sources.DatasetNotFoundError, ValueError) as error:
    logging.warning("class names unavailable (%s); printing class indices", cli.one_line(error))
    return None


def preprocess_images(config: ml_collections.ConfigDict, paths: list[str]) -> tuple[np.ndarray, dict[str, str]]:
  """The eval-preprocessed images that could be read and decoded, and an error message for each other path."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from hrnet_jax.data import preprocess  # pylint: disable=import-outside-toplevel
  _, eval_fn = preprocess.get(config.data.preprocess, config.data)
  images, errors = {}, {}
  for path in paths:
    try:
      with open(path, "rb") as f:
        example = {"image": tf.constant(f.read()), "label": tf.constant(0, tf.int64)}
      images[path] = eval_fn(example)["image"].numpy()
    except (OSError, tf.errors.OpError) as error:
      errors[path] = cli.one_line(error)[:200]
  return images, errors


def predict(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
            top: int = 5) -> tuple[list[dict[str, Any]], dict[str, str]]:
  """Per image: path and the top classes with index, name, probability and logit; and the failed paths."""
  if config.task != "classification":
    raise ValueError(f"predict lists classes, so it needs a classification config; this one is {config.task!r}")
  task = tasks.get_task(config.task)(config)
  model = task.create_model()
  variables = checkpointing.load_variables(model, checkpoint, use_ema=bool(config.ema_decay))
  images, errors = preprocess_images(config, paths)
  for path, message in errors.items():
    logging.error("cannot read or decode %s: %s", path, message)
  if not images:
    return [], errors
  names = _class_names(config)
  logits = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(np.stack(list(images.values())))), np.float64)
  probabilities = np.exp(logits - logits.max(-1, keepdims=True))
  probabilities /= probabilities.sum(-1, keepdims=True)
  results = []
  for path, row, probs in zip(images, logits, probabilities):
    best = np.argsort(-row, kind="stable")[:top]
    results.append({"image": path, "top": [
        {"index": int(i), "name": names[i] if names else str(i), "probability": float(probs[i]),
         "logit": float(row[i])} for i in best]})
  return results, errors


def main(argv):
  paths = argv[1:]
  if not paths:
    raise ValueError("give one or more image paths after the flags")
  results, errors = predict(_CONFIG.value, _CHECKPOINT.value, paths, _TOP.value)
  for result in results:
    print(result["image"])
    for rank, entry in enumerate(result["top"], 1):
      print(f"  {rank}. {entry['name']:<24} {100 * entry['probability']:6.2f}%")
  with open(_OUTPUT.value, "w") as f:
    json.dump({"checkpoint": _CHECKPOINT.value, "predictions": results, "errors": errors}, f, indent=2)
  print(f"wrote {_OUTPUT.value}")
  if errors:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
