"""``python -m hrnet_jax.predict`` for classification: the top classes of each image, with probabilities and logits.

Images get the config's eval preprocessing (ImageNet: shorter side 256, center 224). Class names come from the
config's dataset when it is available (folder names for ``image_folder``, synset ids for ``imagenet2012``),
indices otherwise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from hrnet_jax import cli, files, tasks
from hrnet_jax.data import sources
from hrnet_jax.data.image_ops import reporting_failures
from hrnet_jax.engine import metric_writer, weights
from hrnet_jax.tasks.spec import Prediction, PredictOptions


def _class_names(config: ml_collections.ConfigDict) -> list[str] | None:
  data = config.data
  try:
    return sources.open_source(data.name, data.eval_split, data.data_dir, data.manual_dir)[1]
  except (sources.DatasetNotFoundError, ValueError) as error:
    logging.warning("class names unavailable (%s); printing class indices", cli.one_line(error))
    return None


def preprocess_images(config: ml_collections.ConfigDict, paths: list[str]) -> tuple[dict[str, np.ndarray],
                                                                                      dict[str, str]]:
  """The eval-preprocessed images that could be read and decoded, and an error message for each other path."""
  _, eval_fn = tasks.recipes()[config.data.preprocess].build(config.data)
  images, errors = {}, {}
  for path in metric_writer.progress(paths, "reading images"):
    with reporting_failures(path, errors):
      example = {"image": tf.constant(files.path(path).read_bytes()), "label": tf.constant(0, tf.int64)}
      images[path] = eval_fn(example)["image"].numpy()
  return images, errors


def top_classes(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
                top: int = 5) -> tuple[list[dict[str, Any]], dict[str, str]]:
  """Per image: path and the top classes with index, name, probability and logit; and the failed paths."""
  _, model, variables = weights.load_for_inference(config, checkpoint)
  images, errors = preprocess_images(config, paths)
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


def predict_top_classes(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
                        options: PredictOptions) -> Prediction:
  results, errors = top_classes(config, checkpoint, paths, options.top)
  lines = []
  for result in results:
    lines.append(result["image"])
    lines += [f"  {rank}. {entry['name']:<24} {100 * entry['probability']:6.2f}%"
              for rank, entry in enumerate(result["top"], 1)]
  return Prediction({"checkpoint": checkpoint, "predictions": results, "errors": errors}, lines, errors)
