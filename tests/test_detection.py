"""Object detection (issue #19): COCO box and mask evaluation on the real instances fixture."""

import collections
import json

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from conftest import shared_path
from hrnet_jax import coco_api
from hrnet_jax.tasks.detection import coco_eval


@pytest.fixture(scope="module")
def coco_fixture():
  return coco_api.read(str(shared_path("data", "coco", "test_coco.json")), "the COCO fixture")


def xywh_to_xyxy(boxes):
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)


def add_per_image(evaluator, entries, masks=None):
  """``entries`` (COCO-style dicts with ``bbox``, ``score``) given to ``evaluator`` as a detector's padded
  outputs, one image per batch, padded to 10 detections with invalid rows."""
  by_image = collections.defaultdict(list)
  for entry in entries:
    by_image[entry["image_id"]].append(entry)
  for image_id, mine in by_image.items():
    pad = 10 - len(mine)
    boxes = np.concatenate([xywh_to_xyxy([e["bbox"] for e in mine]), np.zeros((pad, 4))])
    scores = np.array([e["score"] for e in mine] + [0.0] * pad)
    valid = np.arange(10) < len(mine)
    image_masks = None
    if masks is not None:
      image_masks = [np.concatenate([np.stack([masks[e["id"]] for e in mine]),
                                     np.zeros((pad,) + masks[mine[0]["id"]].shape, np.uint8)])]
    evaluator.add(np.array([image_id]), boxes[None], scores[None], np.zeros((1, 10), int), valid[None],
                  image_masks)


def test_ground_truth_given_as_predictions_scores_box_and_mask_ap_1(coco_fixture):
  annotations = [dict(a, score=1.0) for a in coco_fixture.dataset["annotations"]]
  masks = {a["id"]: coco_fixture.annToMask(a) for a in annotations}  # the polygons, decoded
  evaluator = coco_eval.DetectionEvaluator(coco_fixture, category_ids=[1])
  add_per_image(evaluator, annotations, masks)
  assert len(evaluator.results) == 14 and all(isinstance(r["segmentation"]["counts"], str)
                                               for r in evaluator.results)
  json.dumps(evaluator.results)  # results are JSON as they are
  stats = evaluator.evaluate(("bbox", "segm"))
  assert stats["bbox/AP"] == pytest.approx(1.0) and stats["segm/AP"] == pytest.approx(1.0)
  assert stats["bbox/AP50"] == pytest.approx(1.0) and stats["segm/AR100"] == pytest.approx(1.0)


def test_a_real_detections_file_scores_what_pycocotools_gives_directly(coco_fixture):
  path = shared_path("data", "coco", "test_coco_det_AP_H_56.json")
  detections = json.loads(path.read_text())
  direct = COCOeval(coco_fixture, coco_fixture.loadRes(str(path)), "bbox")
  direct.evaluate()
  direct.accumulate()
  direct.summarize()
  assert 0.2 < direct.stats[0] < 0.9  # a real, imperfect detector
  evaluator = coco_eval.DetectionEvaluator(coco_fixture, category_ids=[1])
  by_image = collections.defaultdict(list)
  for detection in detections:
    by_image[detection["image_id"]].append(detection)
  assert max(map(len, by_image.values())) > 10  # some images' detections come in more than one batch
  for mine in by_image.values():
    for start in range(0, len(mine), 10):
      add_per_image(evaluator, mine[start:start + 10])
  assert len(evaluator.results) == len(detections)
  stats = evaluator.evaluate()
  assert [stats[f"bbox/{name}"] for name in coco_eval.STAT_NAMES] == list(direct.stats)


def test_an_empty_set_of_detections_scores_0(coco_fixture):
  evaluator = coco_eval.DetectionEvaluator(coco_fixture, category_ids=[1])
  evaluator.add(np.array([785]), np.zeros((1, 5, 4)), np.zeros((1, 5)), np.zeros((1, 5), int),
                np.zeros((1, 5), bool))
  assert evaluator.evaluate()["bbox/AP"] == 0.0
