"""Predictions on image files with a trained model, by the config's task:

    python -m hrnet_jax.predict --config configs/imagenet.py:variant=w18 --checkpoint PATH IMAGE... \\
        [--top 5] [--output predictions.json]
    python -m hrnet_jax.predict --config configs/coco_pose.py:w32_256x192 --checkpoint PATH IMAGE... \\
        [--boxes boxes.json] [--output predictions.json] [--output_dir overlays/]
    python -m hrnet_jax.predict --config configs/face_landmarks.py:wflw --checkpoint PATH IMAGE... --boxes faces.json
    python -m hrnet_jax.predict --config configs/cityscapes.py:w48 --checkpoint PATH IMAGE... [--output_dir masks/]

Classification prints and writes the top-k classes; pose (people) and facial landmarks (faces) write a COCO results
list and one PNG per image with the keypoints drawn, in the given boxes or the whole image (``--boxes`` maps an image
path or file name to [[x, y, w, h], ...]); segmentation writes label, colour and overlay PNGs per image (each task's
``predict`` module says more). Images get the config's eval preprocessing. An image that cannot be read or decoded
is reported and skipped; the others are still predicted and written, and the exit status is 1.
"""

from __future__ import annotations

import json
import sys

from absl import flags
from ml_collections import config_flags

from hrnet_jax import cli, tasks
from hrnet_jax.tasks.spec import PredictOptions, resolve

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/imagenet.py:variant=w18.",
                                          lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Orbax checkpoint dir or PyTorch-layout weights file.")
_TOP = flags.DEFINE_integer("top", 5, "How many classes to list per image.")
_OUTPUT = flags.DEFINE_string("output", "predictions.json", "Where to write the predictions as JSON.")
_BOXES = flags.DEFINE_string("boxes", None, "Pose: JSON mapping image path or file name to [[x, y, w, h], ...].")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "predictions", "Pose, landmarks, segmentation: where to write the "
                                  "PNGs.")
flags.mark_flags_as_required(["config", "checkpoint"])


def main(argv):
  paths = argv[1:]
  if not paths:
    raise ValueError("give one or more image paths after the flags")
  config = _CONFIG.value
  spec = tasks.TASKS[config.task]
  if spec.predict is None:
    raise ValueError(f"task {config.task!r} has no predict")
  boxes = None
  if _BOXES.value:
    with open(_BOXES.value) as f:
      boxes = json.load(f)
  options = PredictOptions(top=_TOP.value, boxes=boxes, output_dir=_OUTPUT_DIR.value)
  prediction = resolve(spec.predict)(config, _CHECKPOINT.value, paths, options)
  print("\n".join(prediction.lines))
  with open(_OUTPUT.value, "w") as f:
    json.dump(prediction.payload, f, indent=2)
  print(f"wrote {_OUTPUT.value}")
  if prediction.errors:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
