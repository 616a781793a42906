"""Top-down keypoint estimation (COCO pose): heatmap MSE with target weights, OKS AP through ``COCOeval``.

Evaluation follows the official protocol: heatmaps (flip-test averaged when ``flip_test``) are decoded on the
devices to image coordinates; the host gathers every box's keypoints, rescores, applies OKS-NMS per image and
runs ``COCOeval``. Ground truth comes from ``data.annotation_file`` when set (COCO's
``person_keypoints_val2017.json``), else from the eval examples themselves (datasets without one, e.g. synthetic).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from pycocotools.coco import COCO

from hrnet_jax import coco_api
from hrnet_jax.heatmaps import codec
from hrnet_jax.heatmaps.task import HeatmapTask
from hrnet_jax.tasks.base import Batch
from hrnet_jax.tasks.pose import coco_eval
from hrnet_jax.tasks.pose.detections import DetectionSource
from hrnet_jax.tasks.pose.keypoint_sets import CUSTOM, KEYPOINT_SETS, keypoint_spec


class PoseTask(HeatmapTask):
  name = "pose"
  noun = "keypoint"
  keypoint_sets = KEYPOINT_SETS
  keypoint_spec = staticmethod(keypoint_spec)
  loss_factor = 0.5
  points_meaning = "[keypoints, 3] x, y in image pixels and the heatmap peak (confidence)"
  eval_reads = ("image", "mask", "index", "center", "scale", "score", "box_area", "image_id", "gt_keypoints",
                "gt_bbox", "gt_area", "target", "target_weight")

  @property
  def category_id(self) -> int:
    """The category of ``predict``'s results: your own file's (recorded with a custom set's dataset), else 1."""
    if self.config.data.keypoints != CUSTOM:
      return 1
    from hrnet_jax.data import sources  # pylint: disable=import-outside-toplevel  (TensorFlow, only for this)
    data = self.config.data
    return int(sources.recorded_metadata(data.name, data.data_dir, data.manual_dir).get("category_id", 1))

  @property
  def uses_detector_boxes(self) -> bool:
    return bool(self.config.data.detections)

  def eval_source(self) -> DetectionSource | None:
    """A detector's person boxes (``data.detections``, images in ``data.image_dir``) instead of the dataset's own
    boxes, as the official evaluation."""
    if not self.uses_detector_boxes:
      return None
    return DetectionSource(self.config.data.detections, self.config.data.image_dir)

  def image_points(self, heatmaps: jax.Array, center: jax.Array, scale: jax.Array) -> jax.Array:
    coords, maxvals = codec.heatmap_maxima(heatmaps)
    points = codec.heatmap_to_image(coords, center, scale, heatmaps.shape[1:3])
    return jnp.concatenate([points, maxvals[..., None]], -1)

  def eval_examples(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    return {"keypoints": self.image_points(outputs, batch["center"], batch["scale"]),
            "score": batch["score"], "box_area": batch["box_area"],
            # Datasets without image ids (synthetic: one instance per image) use the example's index.
            "image_id": jnp.where(batch["image_id"] >= 0, batch["image_id"], batch["index"]),
            "gt_keypoints": batch["gt_keypoints"], "gt_bbox": batch["gt_bbox"], "gt_area": batch["gt_area"]}

  def box_example(self, encoded: bytes, box: list[float], image_id: int) -> dict[str, Any]:
    """A raw example for a person box of an image (what ``predict`` runs the eval preprocessing on)."""
    return {"image": encoded, "bbox": np.asarray(box, np.float32), "image_id": np.int64(image_id),
            "keypoints": np.zeros((self.spec.count, 3), np.float32)}

  def instances(self, examples: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [N, K, 3] (x, y, confidence) and each person's score (rescored as in evaluation)."""
    points = examples["keypoints"].astype(np.float64)
    return points, coco_eval.rescore(points, examples["score"])

  def ground_truth(self, examples: dict[str, np.ndarray]) -> COCO:
    annotation_file = self.config.data.annotation_file
    if annotation_file:
      return coco_api.read(annotation_file, "data.annotation_file")
    if self.uses_detector_boxes:
      raise ValueError("evaluating detector boxes needs the ground truth: set data.annotation_file")
    return coco_eval.ground_truth(examples["image_id"], examples["gt_keypoints"], examples["gt_bbox"],
                                  examples["gt_area"], self.spec.names)

  def finalize(self, sums: dict[str, Any], examples: dict[str, np.ndarray]) -> dict[str, float]:
    gt = self.ground_truth(examples)
    results = coco_eval.coco_results(examples["keypoints"].astype(np.float64), examples["score"],
                                     examples["box_area"], examples["image_id"], self.spec.sigmas,
                                     category_id=coco_api.keypoint_category(gt.dataset, "the ground truth")["id"])
    stats = coco_eval.evaluate(gt, results, self.spec.sigmas)
    protocol = (f"{'detector' if self.uses_detector_boxes else 'ground-truth'} boxes, "
                f"flip test {'on' if self.flip_test else 'off'}")
    logging.info("keypoint AP %.4f (%s) over %d boxes", stats["AP"], protocol, int(sums["count"]))
    count = float(sums["count"])
    return {**stats, "loss": float(sums["loss"]) / max(count, 1.0), "count": count,
            "detector_boxes": float(self.uses_detector_boxes), "flip_test": float(self.flip_test)}

