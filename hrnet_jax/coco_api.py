"""pycocotools, quietly, for every task scored by ``COCOeval`` (pose keypoints, detection boxes and masks): an
annotation file's index built from its content (read through ``files``, so from any file system) and one call that
runs the evaluation and logs its summary instead of printing it."""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import numpy as np
from absl import logging
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrnet_jax import files

# The official 2017 splits' image folders (MANUAL_DIR/<folder>/) and annotation-file suffixes, by tfds split.
SPLIT_FOLDERS = {"train": "train2017", "validation": "val2017"}


@contextlib.contextmanager
def quiet():
  """Keeps pycocotools' prints (index building, timings) out of stdout."""
  with contextlib.redirect_stdout(io.StringIO()):
    yield


def coco_index(dataset: dict[str, Any]) -> COCO:
  """pycocotools' ``COCO`` of an annotation file's content."""
  gt = COCO()
  gt.dataset = dataset
  with quiet():
    gt.createIndex()
  return gt


def read(path: str, what: str) -> COCO:
  """The ``COCO`` index of the annotation file at ``path`` (``what`` names it in errors: a config key)."""
  return coco_index(files.read_json(path, what))


def official_files(manual_dir: str, kind: str, instructions: str) -> list[tuple[str, str, str]]:
  """(split, annotation file, image folder) of each 2017 split whose ``annotations/<kind>_<folder>.json`` is in
  ``manual_dir``, as downloaded from cocodataset.org (a split whose file is missing is not built); a
  ``FileNotFoundError`` with ``instructions`` when there is none."""
  found = [(split, os.path.join(manual_dir, "annotations", f"{kind}_{folder}.json"), os.path.join(manual_dir, folder))
           for split, folder in SPLIT_FOLDERS.items()]
  found = [entry for entry in found if os.path.exists(entry[1])]
  if not found:
    raise FileNotFoundError(f"no annotations/{kind}_*2017.json in {manual_dir}; {instructions}")
  return found


def keypoint_category(content: dict[str, Any], where: str) -> dict[str, Any]:
  """The one category with ``keypoints`` of a COCO-format keypoint file's ``content`` (COCO's: person, id 1)."""
  found = [category for category in content.get("categories", []) if category.get("keypoints")]
  if len(found) != 1:
    raise ValueError(f"{where}: a keypoint file needs exactly one category with \"keypoints\", found {len(found)} "
                     f"{[category.get('name') for category in found]}")
  return found[0]


def cocoeval_stats(gt: COCO, results: list[dict[str, Any]], iou_type: str, **params: Any) -> np.ndarray:
  """``COCOeval(gt, results, iou_type)`` evaluated, accumulated and summarised (the summary logged); its
  ``stats``. ``params`` set fields of ``COCOeval.params`` (``kpt_oks_sigmas``, ...)."""
  output = io.StringIO()
  with contextlib.redirect_stdout(output):
    evaluator = COCOeval(gt, gt.loadRes(results), iou_type)
    for name, value in params.items():
      setattr(evaluator.params, name, value)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  logging.info("COCOeval (%s):\n%s", iou_type, output.getvalue().rstrip())
  return evaluator.stats
