"""Predictions on image files with a trained model, by the config's task:

    python -m hrnet_jax.predict --config configs/imagenet.py:variant=w18 --checkpoint PATH IMAGE... \\
        [--top 5] [--output_dir predictions/]
    python -m hrnet_jax.predict --config configs/coco_pose.py:w32_256x192 --checkpoint PATH IMAGE... \\
        [--boxes boxes.json] [--output_dir overlays/]
    python -m hrnet_jax.predict --config configs/face_landmarks.py:wflw --checkpoint PATH IMAGE... --boxes faces.json
    python -m hrnet_jax.predict --config configs/cityscapes.py:w48 --checkpoint PATH IMAGE... [--output_dir masks/]

Classification prints and writes the top-k classes; pose (people) and facial landmarks (faces) write a COCO results
list and one PNG per image with the keypoints drawn, in the given boxes or the whole image (``--boxes`` maps an image
path or file name to [[x, y, w, h], ...]); segmentation writes label, colour and overlay PNGs per image (each task's
``predict`` module says more). Images get the config's eval preprocessing. An image that cannot be read or decoded
is reported and skipped; the others are still predicted and written, and the exit status is 1.

Everything goes into ``--output_dir`` (default ``predictions/`` in the current directory, made if missing):
``predictions.json`` (or ``--output``) and the pictures. Both are checked before any image is predicted.
"""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

from hrnet_jax import cli, files, tasks
from hrnet_jax.engine import config_lib
from hrnet_jax.tasks.spec import PredictOptions, resolve

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/imagenet.py:variant=w18.",
                                          lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Orbax checkpoint dir or PyTorch-layout weights file.")
_TOP = flags.DEFINE_integer("top", 5, "How many classes to list per image.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the predictions as JSON (default: "
                              "OUTPUT_DIR/predictions.json).")
_BOXES = flags.DEFINE_string("boxes", None, "Pose: JSON mapping image path or file name to [[x, y, w, h], ...].")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "predictions", "Where the pictures (pose, landmarks, segmentation) and "
                                  "the JSON go.")
flags.mark_flags_as_required(["config", "checkpoint"])


def main(argv):
  paths = argv[1:]
  if not paths:
    raise ValueError("give one or more image paths after the flags")
  config = _CONFIG.value
  config_lib.validate(config)
  spec = tasks.TASKS[config.task]
  if spec.predict is None:
    raise ValueError(f"task {config.task!r} has no predict")
  boxes = None
  if _BOXES.value:
    boxes = files.read_json(_BOXES.value, "--boxes")
  # Both outputs are checked before any image is predicted.
  cli.writable_dir(_OUTPUT_DIR.value, "into --output_dir")
  output = cli.writable_file(_OUTPUT.value or os.path.join(_OUTPUT_DIR.value, "predictions.json"), "--output")
  options = PredictOptions(top=_TOP.value, boxes=boxes, output_dir=_OUTPUT_DIR.value)
  prediction = resolve(spec.predict)(config, _CHECKPOINT.value, paths, options)
  if len(prediction.errors) == len(set(paths)):
    path, message = next(iter(prediction.errors.items()))
    raise ValueError(f"none of the {len(paths)} image(s) could be read or decoded ({path}: {message})")
  print("\n".join(prediction.lines))
  files.write_json(output, prediction.payload)
  print(f"wrote {output}")
  if prediction.errors:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
