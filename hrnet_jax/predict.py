"""Predictions on image files with a trained model.

Classification, the top-k classes:

    python -m hrnet_jax.predict --config configs/imagenet.py:variant=w18 --checkpoint PATH IMAGE... \\
        [--top 5] [--output predictions.json]

Pose (people) and facial landmarks (faces) in given boxes, or in the whole image when no box is given, drawn on
the image:

    python -m hrnet_jax.predict --config configs/coco_pose.py:w32_256x192 --checkpoint PATH IMAGE... \\
        [--boxes boxes.json] [--output predictions.json] [--output_dir overlays/]
    python -m hrnet_jax.predict --config configs/face_landmarks.py:wflw --checkpoint PATH IMAGE... --boxes faces.json

Segmentation, a label map per image at its original size:

    python -m hrnet_jax.predict --config configs/cityscapes.py:w48 --checkpoint PATH IMAGE... [--output_dir masks/]

writes ``<name>_labels.png`` (train ids), ``<name>_color.png`` (the dataset's palette), ``<name>_overlay.png`` (the
colours over the image) and, for Cityscapes, ``<name>_labelIds.png`` (the official ids, for the test server), with
the config's test protocol (``--config.test.scales``, ``--config.test.flip``).

``--boxes`` maps an image path (or its file name) to a list of [x, y, w, h] boxes. Both write a COCO results list
(``image_id`` from a numeric file name, else the image's position; plus ``file``) and one PNG per image with the
keypoints (and the skeleton, for people).

Images get the config's eval preprocessing (ImageNet: shorter side 256, center 224; pose: the box's crop). Class
names come from the config's dataset when it is available (folder names for ``image_folder``, synset ids for
``imagenet2012``), indices otherwise. An image that cannot be read or decoded is reported and skipped; the others
are still predicted and written, and the exit status is 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from hrnet_jax import checkpointing, cli, draw, tasks

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/imagenet.py:variant=w18.",
                                          lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Orbax checkpoint dir or PyTorch-layout weights file.")
_TOP = flags.DEFINE_integer("top", 5, "How many classes to list per image.")
_OUTPUT = flags.DEFINE_string("output", "predictions.json", "Where to write the predictions as JSON.")
_BOXES = flags.DEFINE_string("boxes", None, "Pose: JSON mapping image path or file name to [[x, y, w, h], ...].")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "predictions", "Pose, landmarks, segmentation: where to write the "
                                  "PNGs.")
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
    raise ValueError(f"top-k classes need a classification config; this one is {config.task!r}")
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


def _image_id(path: str, position: int) -> int:
  stem = os.path.splitext(os.path.basename(path))[0]
  return int(stem) if stem.isdigit() else position


def predict_keypoints(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
                      boxes: dict[str, list[list[float]]] | None = None,
                      output_dir: str | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
  """Pose or landmarks: COCO-format keypoint results for every box of every image (the whole image where no box
  is given), a drawn PNG per image in ``output_dir``, and the paths that could not be read."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from hrnet_jax.data import preprocess  # pylint: disable=import-outside-toplevel
  task = tasks.get_task(config.task)(config)
  model = task.create_model()
  variables = checkpointing.load_variables(model, checkpoint, use_ema=bool(config.ema_decay))
  _, eval_fn = preprocess.get(config.data.preprocess, config.data)
  boxes = boxes or {}
  crops, owners, image_ids, image_boxes, errors = [], [], [], [], {}
  for position, path in enumerate(paths):
    try:
      with open(path, "rb") as f:
        encoded = f.read()
      height, width = tf.io.decode_image(encoded, channels=3, expand_animations=False).shape[:2]
      for box in boxes.get(path, boxes.get(os.path.basename(path), [[0, 0, width, height]])):
        crops.append(eval_fn(task.box_example(encoded, box, _image_id(path, position))))
        owners.append(path)
        image_ids.append(_image_id(path, position))
        image_boxes.append(box)
    except (OSError, tf.errors.OpError) as error:
      errors[path] = cli.one_line(error)[:200]
  for path, message in errors.items():
    logging.error("cannot read or decode %s: %s", path, message)
  if not crops:
    return [], errors
  batch = {key: jnp.asarray(np.stack([crop[key].numpy() for crop in crops])) for key in crops[0]}
  batch["index"] = jnp.arange(len(crops))

  @jax.jit
  def run(variables, batch):
    outputs = task.predict(lambda images: model.apply(variables, images, train=False), batch)
    return task.eval_examples(outputs, batch)

  points, scores = task.instances({key: np.asarray(value) for key, value in run(variables, batch).items()})
  results = [{"image_id": image_ids[i], "category_id": 1, "file": owners[i],
              "keypoints": points[i].reshape(-1).round(2).tolist(), "score": float(scores[i])}
             for i in range(len(owners))]
  if output_dir:
    os.makedirs(output_dir, exist_ok=True)
    for path in dict.fromkeys(owners):
      mine = [i for i, owner in enumerate(owners) if owner == path]
      with Image.open(path) as image:
        drawn = draw.draw_keypoints(image, points[mine], task.spec, min_confidence=0.2,
                                    boxes=[image_boxes[i] for i in mine])
      drawn.save(os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + ".png"))
  return results, errors


def predict_segmentation(config: ml_collections.ConfigDict, checkpoint: str, paths: list[str],
                         output_dir: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
  """Per image: the label map at the image's size written as PNGs (raw train ids, colours, overlay; Cityscapes
  label ids too) and the share of pixels per predicted class; and the paths that could not be read."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from hrnet_jax.data import preprocess  # pylint: disable=import-outside-toplevel
  # One image at a time, each in a canvas of its own size (compiled once per size), so any size can be predicted.
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.variable_size = False
  task = tasks.get_task(config.task)(config)
  model = task.create_model()
  variables = checkpointing.load_variables(model, checkpoint, use_ema=bool(config.ema_decay))
  label_set = task.label_set
  logging.info("segmenting with %s", task.inference_options().describe())

  @functools.partial(jax.jit, static_argnums=2)
  def label_map(variables, batch, size):
    scores = task.predict(lambda images: model.apply(variables, images, train=False), batch)
    return jnp.argmax(task.label_scores(scores, batch, size), -1).astype(jnp.uint8)[0]

  os.makedirs(output_dir, exist_ok=True)
  results, errors = [], {}
  for path in paths:
    try:
      with open(path, "rb") as f:
        encoded = f.read()
      with Image.open(path) as image:
        width, height = image.size
      config.data.eval_canvas = tuple(config.data.get("eval_image_size") or (height, width))
      example = preprocess.get(config.data.preprocess, config.data)[1]({"image": tf.constant(encoded)})
    except (OSError, tf.errors.OpError) as error:
      errors[path] = cli.one_line(error)[:200]
      logging.error("cannot read or decode %s: %s", path, errors[path])
      continue
    size = tuple(int(v) for v in example["original_size"].numpy())
    batch = {"image": example["image"].numpy()[None], "image_size": example["image_size"].numpy()[None],
             "label_size": example["original_size"].numpy()[None]}
    labels = np.asarray(label_map(variables, batch, size))
    stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
    written = {"labels": f"{stem}_labels.png", "color": f"{stem}_color.png", "overlay": f"{stem}_overlay.png"}
    Image.fromarray(labels, "L").save(written["labels"])
    draw.colorize(labels, label_set.palette).save(written["color"])
    with Image.open(path) as image:
      draw.overlay(image, labels, label_set.palette).save(written["overlay"])
    if label_set.train_to_label_id is not None:
      written["label_ids"] = f"{stem}_labelIds.png"
      Image.fromarray(label_set.train_to_label_id[labels], "L").save(written["label_ids"])
    counts = np.bincount(labels.reshape(-1), minlength=label_set.num_classes)
    results.append({"file": path, "outputs": written, "classes": {
        label_set.class_names[k]: round(float(counts[k]) / labels.size, 4) for k in np.flatnonzero(counts)}})
  return results, errors


def main(argv):
  paths = argv[1:]
  if not paths:
    raise ValueError("give one or more image paths after the flags")
  config = _CONFIG.value
  if config.task == "segmentation":
    results, errors = predict_segmentation(config, _CHECKPOINT.value, paths, _OUTPUT_DIR.value)
    for result in results:
      print(f"{result['file']}: " + ", ".join(f"{name} {100 * share:.1f}%" for name, share in
                                             sorted(result["classes"].items(), key=lambda item: -item[1])))
    print(f"wrote the label maps of {len(results)} image(s) into {_OUTPUT_DIR.value}")
    payload: Any = results
  elif config.task in ("pose", "landmarks"):
    boxes = None
    if _BOXES.value:
      with open(_BOXES.value) as f:
        boxes = json.load(f)
    results, errors = predict_keypoints(config, _CHECKPOINT.value, paths, boxes, _OUTPUT_DIR.value)
    for result in results:
      print(f"{result['file']}: score {result['score']:.3f}")
    print(f"drew {len(set(r['file'] for r in results))} image(s) into {_OUTPUT_DIR.value}")
    payload = results
  else:
    results, errors = predict(config, _CHECKPOINT.value, paths, _TOP.value)
    for result in results:
      print(result["image"])
      for rank, entry in enumerate(result["top"], 1):
        print(f"  {rank}. {entry['name']:<24} {100 * entry['probability']:6.2f}%")
    payload = {"checkpoint": _CHECKPOINT.value, "predictions": results, "errors": errors}
  with open(_OUTPUT.value, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {_OUTPUT.value}")
  if errors:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
