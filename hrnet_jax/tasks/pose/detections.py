"""Person boxes from a detector as the pose evaluation's examples (the official protocol evaluates on them)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hrnet_jax import files
from hrnet_jax.tasks.pose.keypoint_sets import COCO


class DetectionSource:
  """Person boxes from a detector (a COCO results list such as ``COCO_val2017_detections_AP_H_56_person.json``)
  as a random-access source of examples shaped like the builder's, for top-down evaluation."""

  def __init__(self, detections_file: str, image_dir: str, min_score: float = 0.0):
    for path, what in ((detections_file, "detections file"), (image_dir, "image folder")):
      if not files.path(path).exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    detections = files.read_json(detections_file, "detections file")
    if not isinstance(detections, list) or (detections and not {"image_id", "bbox", "score"} <= set(detections[0])):
      raise ValueError(f"{detections_file} is not a COCO detection results list (image_id, bbox, score)")
    # As the official loader: person boxes scoring at least the threshold (0.0 keeps every one).
    self._detections = [d for d in detections if d.get("category_id", 1) == 1 and d["score"] >= min_score]
    self._image_dir = files.path(image_dir)

  def __len__(self) -> int:
    return len(self._detections)

  def image_path(self, image_id: int) -> files.epath.Path:
    return self._image_dir / f"{image_id:012d}.jpg"

  def __getitem__(self, index: int) -> dict[str, Any]:
    detection = self._detections[index]
    image = self.image_path(detection["image_id"]).read_bytes()
    box = np.asarray(detection["bbox"], np.float32)
    return {"image": image, "image_id": np.int64(detection["image_id"]), "instance_id": np.int64(-1),
            "bbox": box, "area": np.float32(box[2] * box[3]), "score": np.float32(detection["score"]),
            "keypoints": np.zeros((COCO.count, 3), np.float32), "num_keypoints": np.int32(0)}
