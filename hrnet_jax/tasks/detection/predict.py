"""``python -m hrnet_jax.predict`` for detection: each image's boxes, class names and scores (Mask R-CNN: and masks),
drawn over the image (``<name>_boxes.png``: the detections scoring at least ``detection_test.draw_threshold``) and
written as COCO results (``coco_results.json`` in the output folder: every detection, with the dataset's
``category_id``, masks as compressed RLE; a file named by a number, as COCO's, gets that number as its
``image_id``, others their position in the list)."""

from __future__ import annotations

import io
import os

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from PIL import Image

from hrnet_jax import files, tasks
from hrnet_jax.data import sources
from hrnet_jax.data.image_ops import reporting_failures
from hrnet_jax.engine import metric_writer, weights
from hrnet_jax.tasks.detection import draw
from hrnet_jax.tasks.detection.coco_eval import encode_masks, xyxy_to_xywh
from hrnet_jax.tasks.detection.masks import paste_masks
from hrnet_jax.tasks.detection.two_stage import MaskDetections
from hrnet_jax.tasks.spec import Prediction, PredictOptions


def _image_id(path: str, index: int) -> int:
  stem = os.path.splitext(os.path.basename(path))[0]
  return int(stem) if stem.isdigit() else index + 1


def predict_boxes(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
                  options: PredictOptions) -> Prediction:
  task, model, variables = weights.load_for_inference(config, checkpoint)
  recipe = tasks.recipes()[config.data.preprocess]
  # One preprocessing per orientation bucket: a portrait image goes into the portrait canvas.
  evaluates = [recipe.build(data)[1] for data in recipe.buckets(config.data)]
  count = config.data.max_objects
  no_objects = {"num_objects": np.int32(0), "boxes": np.zeros((count, 4), np.float32),
                "labels": np.zeros(count, np.int64), "is_crowd": np.zeros(count, bool),
                "areas": np.zeros(count, np.float32), "object_ids": np.zeros(count, np.int64)}

  @jax.jit
  def detect(variables, batch):
    outputs = task.predict(task.inference(model, variables, batch), batch)
    return task.detections(outputs, batch), outputs.masks if isinstance(outputs, MaskDetections) else None

  names, category_ids = task.class_set.names, task.class_set.category_ids
  results, coco_results, errors = [], [], {}
  for index, path in enumerate(metric_writer.progress(paths, "detecting objects")):
    with reporting_failures(path, errors):
      encoded = files.path(path).read_bytes()
      group = sources.orientation_group(*Image.open(io.BytesIO(encoded)).size) if len(evaluates) > 1 else 0
      example = evaluates[group]({"image": tf.constant(encoded), "image_id": np.int64(0), **no_objects})
    if path in errors:
      continue
    batch = {key: example[key].numpy()[None] for key in ("image", "image_size")}
    found, masks = jax.tree.map(lambda x: np.asarray(x[0]), detect(variables, batch))
    boxes = found.boxes / np.tile(example["scale"].numpy(), 2)
    if masks is not None:  # the valid detections' masks in the image's own pixels
      masks = paste_masks(masks[found.valid], boxes[found.valid], *example["original_size"].numpy())
    detections = [{"class": names[label], "score": round(float(score), 4),
                   "box": [round(float(v), 2) for v in box]}
                  for box, score, label in zip(boxes[found.valid], found.scores[found.valid],
                                               found.labels[found.valid])]
    image_id = _image_id(path, index)
    entries = [{"image_id": image_id, "category_id": int(category_ids[label]),
                "bbox": [float(v) for v in xywh], "score": float(score)}
               for xywh, score, label in zip(xyxy_to_xywh(boxes[found.valid].astype(np.float64)),
                                             found.scores[found.valid], found.labels[found.valid])]
    if masks is not None and len(masks):
      for entry, rle in zip(entries, encode_masks(masks)):
        entry["segmentation"] = rle
    coco_results += entries
    drawn = os.path.join(options.output_dir, f"{os.path.splitext(os.path.basename(path))[0]}_boxes.png")
    threshold = config.detection_test.draw_threshold
    with Image.open(io.BytesIO(encoded)) as image:
      if masks is not None:
        image = draw.draw_masks(image, masks[found.scores[found.valid] >= threshold])
      files.save_image(draw.draw_boxes(image, [d["box"] for d in detections], [d["score"] for d in detections],
                                       [d["class"] for d in detections], threshold), drawn)
    results.append({"file": path, "image_id": image_id, "drawn": drawn, "detections": detections})
  coco_path = os.path.join(options.output_dir, "coco_results.json")
  files.write_json(coco_path, coco_results)
  lines = [f"{r['file']}: " + (", ".join(f"{d['class']} {d['score']:.2f}" for d in r["detections"][:5]) or "nothing")
           for r in results]
  lines.append(f"drew the boxes of {len(results)} image(s) into {options.output_dir}; COCO results: {coco_path}")
  return Prediction(results, lines, errors)
