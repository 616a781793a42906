"""pycocotools, quietly, for every task scored by ``COCOeval`` (pose keypoints, detection boxes and masks): an
annotation file's index built from its content (read through ``files``, so from any file system) and one call that
runs the evaluation and logs its summary instead of printing it."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from absl import logging
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrnet_jax import files


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
