"""Drawing keypoints and skeletons on images, for predictions and for looking at ground truth:

    python -m hrnet_jax.draw --annotations person_keypoints_val2017.json --images val2017 --output_dir /tmp/gt \\
        [--image_ids 785,40083] [--max_width 640] [--keypoints coco|wflw|300w|cofw|aflw]

``--annotations`` is a COCO annotation file (its ground truth is drawn) or a COCO results list (predictions, e.g.
``predict``'s JSON; then ``--min_confidence`` hides weak keypoints). One PNG per image.
"""

from __future__ import annotations

from absl import app, flags

from hrnet_jax import cli, tasks
from hrnet_jax.heatmaps.draw import draw_coco_file
from hrnet_jax.heatmaps.keypoint_set import KeypointSpec
from hrnet_jax.registry import Registry


def keypoint_sets() -> Registry:
  """The keypoint sets of every registered heatmap task (pose's and the landmarks'), by name."""
  sets = Registry("keypoint set")
  for spec in tasks.TASKS.values():
    if spec.trainable:
      sets.update(getattr(spec.task_class(), "keypoint_sets", {}))
  return sets


def main(argv):
  """The CLI (its flags are defined only when run, so importing this module adds none to another program)."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  values = flags.FLAGS
  for name in ("annotations", "images", "output_dir"):
    if not values[name].value:
      raise ValueError(f"--{name} is required")
  spec: KeypointSpec = keypoint_sets()[values.keypoints]
  paths = draw_coco_file(values.annotations, values.images, values.output_dir, spec,
                         [int(i) for i in values.image_ids], values.min_confidence, values.max_width)
  print("\n".join(paths))


if __name__ == "__main__":
  flags.DEFINE_string("annotations", None, "COCO annotation file or results list.")
  flags.DEFINE_string("images", None, "Folder of the images.")
  flags.DEFINE_string("output_dir", None, "Where to write the PNGs.")
  flags.DEFINE_list("image_ids", [], "Only these image ids (default: every image with keypoints).")
  flags.DEFINE_float("min_confidence", 0.0, "Hide keypoints whose score is not above this.")
  flags.DEFINE_integer("max_width", 0, "Shrink wider images to this width (0: keep).")
  flags.DEFINE_string("keypoints", "coco", "The keypoint set (for the skeleton): coco, wflw, 300w, cofw, aflw.")
  cli.run(main)
