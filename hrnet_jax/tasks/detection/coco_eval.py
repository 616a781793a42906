"""COCO box and mask AP through pycocotools, fed one batch at a time.

A detector's batch (boxes in the original image's pixels, scores, contiguous labels, optional binary masks) becomes
COCO result entries on the host as it arrives, with the dataset's own ``category_id`` and ``[x, y, w, h]`` boxes;
masks are RLE-encoded at once. Only those entries are kept, so memory grows with the detections (at most
``max_detections`` per image), not with the images or the masks. ``COCOeval`` then scores them against the
official annotation file, as MMDetection's ``CocoMetric`` does.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from hrnet_jax import coco_api

# COCOeval's ``stats`` for "bbox" and "segm", in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
              "AR_medium", "AR_large")


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
  return np.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], -1)


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
  """Binary masks [N, H, W] -> COCO run-length encodings (``counts`` as text, so they go into JSON)."""
  encoded = mask_utils.encode(np.asfortranarray(np.moveaxis(masks.astype(np.uint8), 0, -1)))
  return [{"size": rle["size"], "counts": rle["counts"].decode("ascii")} for rle in encoded]


class DetectionEvaluator:
  """Collects a detector's predictions batch by batch as COCO result entries, then scores them with ``COCOeval``.

  ``category_ids[label]`` is the dataset's ``category_id`` of the contiguous label (COCO's 80 classes have ids
  1..90 with gaps).
  """

  def __init__(self, category_ids: Sequence[int]):
    self.category_ids = np.asarray(category_ids)
    self.results: list[dict[str, Any]] = []
    self.image_ids: set[int] = set()  # every image evaluated, with detections or not

  def add(self, image_ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
          valid: np.ndarray, masks: Sequence[np.ndarray] | None = None) -> None:
    """One batch: ``image_ids`` [B]; ``boxes`` [B, K, 4] (xyxy, original pixels), ``scores``, ``labels`` and
    ``valid`` [B, K] (the padded detector outputs); ``masks`` per image the binary masks of its valid detections
    only, in order ([V_i, H_i, W_i], the original image size)."""
    for b, image_id in enumerate(np.asarray(image_ids)):
      self.image_ids.add(int(image_id))
      keep = np.flatnonzero(np.asarray(valid[b]))
      xywh = xyxy_to_xywh(np.asarray(boxes[b], np.float64)[keep])
      entries = [{"image_id": int(image_id), "category_id": int(self.category_ids[labels[b][k]]),
                  "bbox": [float(v) for v in box], "score": float(scores[b][k])}
                 for k, box in zip(keep, xywh)]
      if masks is not None and len(keep):
        for entry, rle in zip(entries, encode_masks(np.asarray(masks[b]))):
          entry["segmentation"] = rle
      self.results += entries

  def evaluate(self, ground_truth: COCO, iou_types: Sequence[str] = ("bbox",)) -> dict[str, float]:
    """``{"bbox/AP": ..., "segm/AP50": ...}`` in [0, 1] for each of ``iou_types``, over the images given to
    ``add`` only (a sliced eval split is not scored against the whole annotation file); each summary is logged."""
    return {f"{iou_type}/{name}": value for iou_type in iou_types
            for name, value in evaluate(ground_truth, self.results, iou_type, sorted(self.image_ids)).items()}


def ground_truth(examples: dict[str, np.ndarray], names: Sequence[str], category_ids: Sequence[int]) -> COCO:
  """COCO's index of the ground truth stored with the eval examples (``gt_*`` [N, G, ...] in original pixels,
  ``gt_present`` marking the real objects), for datasets without an annotation file."""
  annotations = []
  for b, image_id in enumerate(examples["image_id"]):
    for k in np.flatnonzero(examples["gt_present"][b]):
      x1, y1, x2, y2 = (float(v) for v in examples["gt_boxes"][b, k])
      annotations.append({"id": int(examples["gt_ids"][b, k]), "image_id": int(image_id),
                          "category_id": int(category_ids[examples["gt_labels"][b, k]]),
                          "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(examples["gt_areas"][b, k]),
                          "iscrowd": int(examples["gt_crowd"][b, k])})
  return coco_api.coco_index({"images": [{"id": int(i)} for i in examples["image_id"]], "annotations": annotations,
                              "categories": [{"id": int(i), "name": n} for i, n in zip(category_ids, names)]})


def evaluate(ground_truth: COCO, results: list[dict[str, Any]], iou_type: str = "bbox",
             image_ids: Sequence[int] | None = None) -> dict[str, float]:
  """``COCOeval(ground_truth, results, iou_type)``'s stats by name, over ``image_ids`` (all of the ground truth's
  when None), as MMDetection sets ``params.imgIds``; 0 for every stat when nothing was detected."""
  if not results:
    return {name: 0.0 for name in STAT_NAMES}
  params = {} if image_ids is None else {"imgIds": list(image_ids)}
  return dict(zip(STAT_NAMES, map(float, coco_api.cocoeval_stats(ground_truth, results, iou_type, **params))))
