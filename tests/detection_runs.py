"""The tiny detectors' training runs that the detection tests start, and what they must show."""

import json
import os

from helpers import REPO
from hrnet_jax.engine import config_lib, metric_writer, trainer
from hrnet_jax.tasks.detection import synthetic


def tiny_detection_run(variant, workdir, data_dir, run):
  """The tiny config trained, evaluated against the synthetic objects' annotation file (as COCO's)."""
  annotation_file = os.path.join(os.path.dirname(workdir), "instances_validation.json")
  with open(annotation_file, "w") as f:
    json.dump(synthetic.coco_annotations("validation"), f)
  config = config_lib.load(os.path.join(REPO, "configs", f"coco_detection.py:{variant},tiny"), {
      "data.data_dir": data_dir, "data.annotation_file": annotation_file, "eval_at_start": True, "log_every": 50,
      "checkpoint_every": run["total_steps"], "num_devices": 1, **run})
  return config, workdir, trainer.train_and_evaluate(config, workdir)


def assert_ap50_rose_from_zero(workdir, final, least):
  start = next(m for m in metric_writer.read_metrics(workdir) if "eval/bbox_AP50" in m)
  assert start["step"] == 0 and start["eval/bbox_AP50"] < 0.01, start
  assert final["bbox_AP50"] > least, final
