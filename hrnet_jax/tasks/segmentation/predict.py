"""``python -m hrnet_jax.predict`` for segmentation: a label map per image at its original size, with the config's
test protocol (``--config.test.scales``, ``--config.test.flip``).

Writes ``<name>_labels.png`` (train ids), ``<name>_color.png`` (the dataset's palette), ``<name>_overlay.png`` (the
colours over the image) and, for Cityscapes, ``<name>_labelIds.png`` (the official ids, for the test server).
"""

from __future__ import annotations

import functools
import io
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from hrnet_jax import files, tasks
from hrnet_jax.data.image_ops import reporting_failures
from hrnet_jax.engine import metric_writer, weights
from hrnet_jax.tasks.segmentation.draw import colorize, overlay
from hrnet_jax.tasks.spec import Prediction, PredictOptions


def label_maps(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
               output_dir: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
  """Per image: the label map at the image's size written as PNGs (raw train ids, colours, overlay; Cityscapes
  label ids too) and the share of pixels per predicted class; and the paths that could not be read."""
  # One image at a time, each in a canvas of its own size (compiled once per size), so any size can be predicted.
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.variable_size = False
  task, model, variables = weights.load_for_inference(config, checkpoint)
  recipe = tasks.recipes()[config.data.preprocess]
  label_set = task.label_set
  logging.info("segmenting with %s", task.inference_options().describe())

  @functools.partial(jax.jit, static_argnums=2)
  def label_map(variables, batch, size):
    scores = task.predict(task.inference(model, variables, batch), batch)
    return jnp.argmax(task.label_scores(scores, batch, size), -1).astype(jnp.uint8)[0]

  results, errors = [], {}
  for path in metric_writer.progress(paths, "segmenting images"):
    with reporting_failures(path, errors):
      encoded = files.path(path).read_bytes()
      with Image.open(io.BytesIO(encoded)) as image:
        width, height = image.size
      config.data.eval_canvas = tuple(config.data.eval_image_size or (height, width))
      example = recipe.build(config.data)[1]({"image": tf.constant(encoded)})
    if path in errors:
      continue
    size = tuple(int(v) for v in example["original_size"].numpy())
    batch = {"image": example["image"].numpy()[None], "image_size": example["image_size"].numpy()[None],
             "label_size": example["original_size"].numpy()[None]}
    labels = np.asarray(label_map(variables, batch, size))
    stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
    written = {"labels": f"{stem}_labels.png", "color": f"{stem}_color.png", "overlay": f"{stem}_overlay.png"}
    files.save_image(Image.fromarray(labels, "L"), written["labels"])
    files.save_image(colorize(labels, label_set.palette), written["color"])
    with Image.open(io.BytesIO(encoded)) as image:
      files.save_image(overlay(image, labels, label_set.palette), written["overlay"])
    if label_set.train_to_label_id is not None:
      written["label_ids"] = f"{stem}_labelIds.png"
      files.save_image(Image.fromarray(label_set.train_to_label_id[labels], "L"), written["label_ids"])
    counts = np.bincount(labels.reshape(-1), minlength=label_set.num_classes)
    results.append({"file": path, "outputs": written, "classes": {
        label_set.class_names[k]: round(float(counts[k]) / labels.size, 4) for k in np.flatnonzero(counts)}})
  return results, errors


def predict_label_maps(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
                       options: PredictOptions) -> Prediction:
  results, errors = label_maps(config, checkpoint, paths, options.output_dir)
  lines = [f"{result['file']}: " + ", ".join(f"{name} {100 * share:.1f}%" for name, share in
                                             sorted(result["classes"].items(), key=lambda item: -item[1]))
           for result in results]
  lines.append(f"wrote the label maps of {len(results)} image(s) into {options.output_dir}")
  return Prediction(results, lines, errors)
