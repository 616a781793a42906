"""``python -m hrnet_jax.predict`` for the heatmap tasks (pose, landmarks): keypoints in given boxes, or in the
whole image where no box is given; COCO-format results, and each image drawn with its keypoints.

``boxes`` maps an image path (or its file name) to a list of [x, y, w, h] boxes. ``image_id`` comes from a
numeric file name, else the image's position among the paths.
"""

from __future__ import annotations

import io
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
from PIL import Image

from hrnet_jax import files, tasks
from hrnet_jax.data.image_ops import reporting_failures
from hrnet_jax.engine import metric_writer, weights
from hrnet_jax.heatmaps.draw import draw_keypoints
from hrnet_jax.tasks.spec import Prediction, PredictOptions


def _image_id(path: str, position: int) -> int:
  stem = os.path.splitext(os.path.basename(path))[0]
  return int(stem) if stem.isdigit() else position


def keypoints_in_boxes(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
                       boxes: dict[str, list[list[float]]] | None = None,
                       output_dir: str | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
  """COCO-format keypoint results for every box of every image, a drawn PNG per image in ``output_dir``, and the
  paths that could not be read."""
  task, model, variables = weights.load_for_inference(config, checkpoint)
  _, eval_fn = tasks.recipes()[config.data.preprocess].build(config.data)
  boxes = boxes or {}
  crops, owners, image_ids, image_boxes, errors, encoded_images = [], [], [], [], {}, {}
  for position, path in enumerate(metric_writer.progress(paths, "reading images")):
    with reporting_failures(path, errors):
      encoded = encoded_images[path] = files.path(path).read_bytes()
      height, width = tf.io.decode_image(encoded, channels=3, expand_animations=False).shape[:2]
      for box in boxes.get(path, boxes.get(os.path.basename(path), [[0, 0, width, height]])):
        crops.append(eval_fn(task.box_example(encoded, box, _image_id(path, position))))
        owners.append(path)
        image_ids.append(_image_id(path, position))
        image_boxes.append(box)
  if not crops:
    return [], errors
  batch = {key: jnp.asarray(np.stack([crop[key].numpy() for crop in crops])) for key in crops[0]}
  batch["index"] = jnp.arange(len(crops))

  @jax.jit
  def run(variables, batch):
    outputs = task.predict(task.inference(model, variables, batch), batch)
    return task.eval_examples(outputs, batch)

  points, scores = task.instances({key: np.asarray(value) for key, value in run(variables, batch).items()})
  results = [{"image_id": image_ids[i], "category_id": task.category_id, "file": owners[i],
              "keypoints": points[i].reshape(-1).round(2).tolist(), "score": float(scores[i])}
             for i in range(len(owners))]
  if output_dir:
    for path in dict.fromkeys(owners):
      mine = [i for i, owner in enumerate(owners) if owner == path]
      with Image.open(io.BytesIO(encoded_images[path])) as image:
        drawn = draw_keypoints(image, points[mine], task.spec, min_confidence=0.2,
                               boxes=[image_boxes[i] for i in mine])
      files.save_image(drawn, os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + ".png"))
  return results, errors


def predict_keypoints(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
                      options: PredictOptions) -> Prediction:
  results, errors = keypoints_in_boxes(config, checkpoint, paths, options.boxes, options.output_dir)
  lines = [f"{result['file']}: score {result['score']:.3f}" for result in results]
  lines.append(f"drew {len(set(r['file'] for r in results))} image(s) into {options.output_dir}")
  return Prediction(results, lines, errors)
