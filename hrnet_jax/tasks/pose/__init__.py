"""Top-down human pose (HRNetV1; deep-high-resolution-net.pytorch): COCO keypoints, heatmap MSE, OKS AP through
the official evaluation (flip test, rescoring, OKS-NMS, ``COCOeval``), on ground-truth or detector boxes."""

from hrnet_jax.model.factory import ModelDefaults
from hrnet_jax.tasks.pose.keypoint_sets import CUSTOM_DEFAULTS, keypoint_spec
from hrnet_jax.tasks.spec import BatchKey, Recipe, TaskSpec


def _keys(data):
  height, width = data.input_size
  count = keypoint_spec(data).count
  train = {"image": BatchKey("float32", (height, width, 3)),
           "target": BatchKey("float32", (height // 4, width // 4, count)),
           "target_weight": BatchKey("float32", (count,))}
  evaluation = {**train, "center": BatchKey("float32", (2,)), "scale": BatchKey("float32", (2,)),
                "score": BatchKey("float32"), "image_id": BatchKey("int64"), "box_area": BatchKey("float32"),
                "gt_keypoints": BatchKey("float32", (count, 3)), "gt_bbox": BatchKey("float32", (4,)),
                "gt_area": BatchKey("float32")}
  return train, evaluation


# The official recipe (experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml; recipes.TopDown).
TOPDOWN = Recipe(
    "topdown_pose", make="hrnet_jax.tasks.pose.recipes:topdown_pose", keys=_keys,
    defaults={"keypoints": "coco",  # the keypoint set (keypoint_sets.KEYPOINT_SETS), or "custom":
              # your own set, named here or recorded in the prepared dataset (keypoint_sets.keypoint_spec)
              "keypoint_set": CUSTOM_DEFAULTS,
              "input_size": (256, 192),  # (h, w); heatmaps are 1/4 of it
              "sigma": 2.0,  # of the Gaussian targets, in heatmap pixels
              "scale_factor": 0.35, "rotation_factor": 45.0, "rotation_prob": 0.6, "half_body_prob": 0.3,
              "flip": True, "box_padding": 1.25})

TASK = TaskSpec(
    name="pose",
    # deep-high-resolution-net.pytorch: stage 1 hard-wired, last module outputs only the 1x branch.
    model=ModelDefaults(head="v1", count_name="num_keypoints", count=17, fixed_stage1=True, prune_last_module=True),
    task="hrnet_jax.tasks.pose.task:PoseTask",
    config={"flip_test": True,  # the official TEST.FLIP_TEST, with the heatmap shift
            "data": {"annotation_file": "",  # COCO's ground truth; "" takes it from the eval examples
                     "detections": "",  # a detector's person boxes to evaluate on; "" uses the dataset's boxes
                     "image_dir": ""}},  # the images of the detector's boxes
    recipes=(TOPDOWN,),
    builders={"coco_keypoints": "hrnet_jax.tasks.pose.coco_builder:CocoKeypoints"},
    predict="hrnet_jax.heatmaps.predict:predict_keypoints",
)
