"""COCO keypoint evaluation as the official top-down protocol: rescoring, OKS-NMS per image, ``COCOeval``.

NumPy and pycocotools only. Every step follows deep-high-resolution-net.pytorch's ``COCODataset.evaluate``: a
person's score is its box score times the mean confidence of its keypoints above 0.2, persons of an image are
suppressed by OKS-NMS at 0.9 (with the padded box's area), and AP/AR come from ``COCOeval(..., 'keypoints')``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools.coco import COCO

from hrnet_jax import coco_api

STAT_NAMES = ("AP", "AP50", "AP75", "AP_medium", "AP_large", "AR", "AR50", "AR75", "AR_medium", "AR_large")


def rescore(keypoints: np.ndarray, box_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
  """Box score x the mean keypoint confidence over keypoints above ``threshold`` (x 0 when none is)."""
  confidence = keypoints[..., 2]
  above = confidence > threshold
  mean = np.where(above.any(-1), np.sum(confidence * above, -1) / np.maximum(above.sum(-1), 1), 0.0)
  return mean * box_scores


def oks(reference: np.ndarray, others: np.ndarray, reference_area: float, other_areas: np.ndarray,
        sigmas: Sequence[float]) -> np.ndarray:
  """Object keypoint similarity of ``others`` [N, K, 2+] to ``reference`` [K, 2+], every keypoint counted."""
  variances = (2 * np.asarray(sigmas)) ** 2
  squared = np.sum((others[..., :2] - reference[None, :, :2]) ** 2, -1)
  scale = (reference_area + other_areas[:, None]) / 2 + np.spacing(1)
  return np.mean(np.exp(-squared / variances / scale / 2), -1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float,
            sigmas: Sequence[float]) -> list[int]:
  """Indices kept by greedy non-maximum suppression on OKS (highest score first; drops OKS > ``threshold``)."""
  order = np.argsort(scores)[::-1]
  keep = []
  while order.size:
    best, rest = order[0], order[1:]
    keep.append(int(best))
    order = rest[oks(keypoints[best], keypoints[rest], areas[best], areas[rest], sigmas) <= threshold]
  return keep


def coco_results(keypoints: np.ndarray, box_scores: np.ndarray, box_areas: np.ndarray, image_ids: np.ndarray,
                 sigmas: Sequence[float], nms_threshold: float = 0.9, confidence_threshold: float = 0.2,
                 category_id: int = 1) -> list[dict[str, Any]]:
  """Per-person predictions ([N, K, 3]: x, y, confidence in image pixels) -> the COCO results list of
  ``category_id``, rescored and OKS-NMS'd per image."""
  scores = rescore(keypoints, box_scores, confidence_threshold)
  results = []
  for image_id in np.unique(image_ids):
    mine = np.flatnonzero(image_ids == image_id)
    kept = mine[oks_nms(keypoints[mine], scores[mine], box_areas[mine], nms_threshold, sigmas)]
    # In NMS order, as the official file.
    results += [{"image_id": int(image_id), "category_id": category_id,
                 "keypoints": keypoints[i].reshape(-1).tolist(), "score": float(scores[i])} for i in kept]
  return results


def ground_truth(image_ids: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray, areas: np.ndarray,
                 names: Sequence[str]) -> COCO:
  """A COCO ground-truth object from per-instance arrays (for datasets without an annotation file)."""
  annotations = [{"id": i + 1, "image_id": int(image_id), "category_id": 1, "iscrowd": 0,
                  "keypoints": keypoints[i].reshape(-1).tolist(), "num_keypoints": int((keypoints[i, :, 2] > 0).sum()),
                  "bbox": boxes[i].tolist(), "area": float(areas[i])} for i, image_id in enumerate(image_ids)]
  return coco_api.coco_index({"images": [{"id": int(i)} for i in np.unique(image_ids)],
                              "annotations": annotations,
                              "categories": [{"id": 1, "name": "person", "keypoints": list(names)}]})


def evaluate(gt: COCO, results: list[dict[str, Any]], sigmas: Sequence[float]) -> dict[str, float]:
  """``COCOeval(gt, results, 'keypoints')`` stats by name (AP ... AR_large), in [0, 1]; its summary is logged."""
  if not results:
    return {name: 0.0 for name in STAT_NAMES}
  stats = coco_api.cocoeval_stats(gt, results, "keypoints", useSegm=None, kpt_oks_sigmas=np.asarray(sigmas))
  return {name: float(value) for name, value in zip(STAT_NAMES, stats)}
