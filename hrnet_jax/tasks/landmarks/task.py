"""Facial landmarks: heatmap MSE, the official landmark decoding, NME with each dataset's official
normalisation, failure rate and AUC."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.heatmaps import codec
from hrnet_jax.heatmaps.keypoint_set import PIXEL_STD, KeypointSpec
from hrnet_jax.heatmaps.task import HeatmapTask
from hrnet_jax.tasks.base import Batch
from hrnet_jax.tasks.landmarks.landmark_sets import LANDMARK_SETS, landmark_spec

FAILURE_THRESHOLD = 0.10


class LandmarkTask(HeatmapTask):
  name = "landmarks"
  noun = "landmark"
  keypoint_sets = LANDMARK_SETS
  keypoint_spec = staticmethod(landmark_spec)
  loss_factor = 1.0
  points_meaning = "[landmarks, 2] x, y in image pixels (the official 1-based integer decoding)"
  eval_reads = ("image", "mask", "center", "scale", "gt_landmarks", "box_size", "target", "target_weight")

  def image_points(self, heatmaps: jax.Array, center: jax.Array, scale: jax.Array) -> jax.Array:
    return landmarks_to_image(heatmaps, center, scale)

  def eval_examples(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    predicted = landmarks_to_image(outputs, batch["center"], batch["scale"])
    return {"landmarks": predicted,
            "nme": normalised_error(predicted, batch["gt_landmarks"], batch["target_weight"], batch["box_size"],
                                    self.spec)}

  def box_example(self, encoded: bytes, box: list[float], image_id: int) -> dict[str, Any]:
    """A raw example for a face box (center and scale by the official COFW rule: the box's center, its longer
    side / 200); what ``predict`` runs the eval preprocessing on."""
    del image_id
    x, y, w, h = (float(v) for v in box)
    scale = max(w, h) / PIXEL_STD
    return {"image": encoded, "landmarks": np.zeros((self.spec.count, 2), np.float32),
            "center": np.asarray([x + w / 2, y + h / 2], np.float32), "scale": np.float32(scale),
            "box_size": np.float32(max(w, h))}

  def instances(self, examples: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks [N, K, 3] (x, y, 1) and a score of 1 per face (the heatmaps carry no calibrated score)."""
    points = examples["landmarks"].astype(np.float64)
    return np.concatenate([points, np.ones(points.shape[:2] + (1,))], -1), np.ones(len(points))

  def finalize(self, sums: dict[str, Any], examples: dict[str, np.ndarray]) -> dict[str, float]:
    count = float(sums["count"])
    return {**nme_metrics(examples["nme"]), "loss": float(sums["loss"]) / max(count, 1.0), "count": count,
            "flip_test": float(self.flip_test)}


def nme_metrics(nme: np.ndarray, threshold: float = FAILURE_THRESHOLD) -> dict[str, float]:
  """Mean NME, failure rates (faces with NME above 0.08 and ``threshold``) and the area under the cumulative
  error curve up to ``threshold``, all in percent. The official code reports NME and failure rates; AUC is the
  usual definition (the fraction of faces below each error, integrated over [0, threshold], / threshold)."""
  nme = np.asarray(nme, np.float64)
  errors = np.sort(nme)
  grid = np.linspace(0.0, threshold, 1001)
  cumulative = np.searchsorted(errors, grid, side="right") / max(len(errors), 1)
  return {"nme": 100 * float(nme.mean()), "failure_008": 100 * float(np.mean(nme > 0.08)),
          "failure_010": 100 * float(np.mean(nme > threshold)),
          "auc_010": 100 * float(np.trapezoid(cumulative, grid) / threshold)}


def landmarks_to_image(heatmaps: jax.Array, center: jax.Array, scale: jax.Array) -> jax.Array:
  """Landmarks [B, K, 2] in image pixels, as HRNet-Facial-Landmark-Detection's ``decode_preds``: argmax and
  quarter step (margin 1), +0.5, mapped back through the box, truncated to an integer and +1 (its 1-based
  ``transform_pixel``); a landmark whose peak is not positive decodes from heatmap position -1."""
  coords, maxvals = codec.heatmap_maxima(heatmaps, margin=1)
  coords = jnp.where((maxvals > 0)[..., None], coords, -1.0)
  return jnp.trunc(codec.heatmap_to_image(coords + 0.5, center, scale, heatmaps.shape[1:3])) + 1


def normalised_error(predicted: jax.Array, truth: jax.Array, labelled: jax.Array, box_size: jax.Array,
                     spec: KeypointSpec) -> jax.Array:
  """Per face: the mean distance over labelled landmarks divided by the spec's normaliser (the official
  ``compute_nme``: inter-ocular distance of two ground-truth landmarks, or the box size)."""
  if spec.nme_pair is not None:
    first, second = spec.nme_pair
    norm = jnp.linalg.norm(truth[:, first] - truth[:, second], axis=-1)
  else:
    norm = box_size
  distance = jnp.sum(jnp.linalg.norm(predicted - truth, axis=-1) * labelled, -1)
  return distance / (norm * jnp.maximum(jnp.sum(labelled, -1), 1.0))
