"""What the heatmap tasks (pose keypoints, facial landmarks) share: the keypoint set, the output-count check, the
heatmap MSE, the (optionally flip-tested) evaluated heatmaps and the benchmark's synthetic batch."""

from __future__ import annotations

import abc
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from hrnet_jax.heatmaps import codec, draw
from hrnet_jax.heatmaps.keypoint_set import KeypointSpec
from hrnet_jax.registry import Registry
from hrnet_jax.tasks.base import Batch, Task, enlarged
from hrnet_jax.tasks.spec import Serving


def heatmap_mse(outputs: jax.Array, batch: dict[str, jax.Array], factor: float) -> jax.Array:
  """``factor`` x the mean over keypoints and pixels of (weight x (prediction - target))^2 per example, averaged
  over the examples whose ``mask`` is 1. Pose (JointsMSELoss with target weights): factor 0.5; facial landmarks
  (MSELoss): factor 1, weights 1 for every labelled landmark."""
  weight = batch["target_weight"][:, None, None, :]
  squared = (weight * (outputs.astype(jnp.float32) - batch["target"])) ** 2
  per_example = factor * jnp.mean(squared, axis=(1, 2, 3))
  mask = batch["mask"].astype(jnp.float32)
  return jnp.sum(mask * per_example) / jnp.maximum(jnp.sum(mask), 1.0)


class HeatmapTask(Task):
  """A task predicting one heatmap per keypoint of ``config.data.keypoints``, a set of ``keypoint_sets``."""

  noun: str  # "keypoint" or "landmark", for messages
  keypoint_sets: Registry  # the built-in sets this task knows, by name
  # ``config.data`` -> its keypoint set: a built-in one by name, or your own ("custom")
  keypoint_spec: Callable[[ml_collections.ConfigDict], KeypointSpec]
  loss_factor: float  # the official loss: JointsMSELoss's 0.5 (pose) or MSELoss's 1 (landmarks)
  points_meaning: str  # what ``image_points`` gives per example, for the export's sidecar
  category_id: int = 1  # the COCO category of ``predict``'s results (COCO's person)
  train_reads = ("image", "target", "target_weight", "mask")

  @functools.cached_property
  def spec(self) -> KeypointSpec:
    return self.keypoint_spec(self.config.data)

  @property
  def flip_test(self) -> bool:
    return bool(self.config.flip_test)

  def check_dataset(self, class_names: list[str] | None) -> None:
    del class_names
    count = self.output_count()
    if count != self.spec.count:
      raise ValueError(f"the {self.noun} set {self.config.data.keypoints!r} has {self.spec.count} {self.noun}s but "
                       f"the model predicts {count}; set --config.model.overrides.{self.count_name}={self.spec.count}")

  def loss(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    return heatmap_mse(outputs, batch, self.loss_factor), {}

  def predict(self, apply: Callable[[jax.Array], Any], batch: Batch) -> jax.Array:
    return codec.predict_heatmaps(apply, batch["image"], self.spec, self.flip_test)

  def eval_sums(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    count = jnp.sum(batch["mask"])
    return {"count": count, "loss": heatmap_mse(outputs, batch, self.loss_factor) * count}

  def preview(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    """The predicted points in input pixels (heatmap maxima scaled by the input/heatmap size ratio)."""
    coords, _ = codec.heatmap_maxima(outputs)
    stride = jnp.asarray([batch["image"].shape[2] / outputs.shape[2], batch["image"].shape[1] / outputs.shape[1]])
    return {"points": coords * stride}

  def draw_preview(self, image: Image.Image, preview: dict[str, np.ndarray]) -> Image.Image:
    shown = enlarged(image)
    scale = shown.width / image.width
    points = np.concatenate([preview["points"] * scale, np.ones_like(preview["points"][:, :1])], -1)
    return draw.draw_keypoints(shown, [points], self.spec)

  @abc.abstractmethod
  def image_points(self, heatmaps: jax.Array, center: jax.Array, scale: jax.Array) -> jax.Array:
    """The points [B, K, ...] in image pixels that heatmaps of boxes (``center``, ``scale`` [B, 2]) decode to."""

  def serving(self) -> Serving:
    def run(apply, image, center, scale):
      return {self.noun + "s": self.image_points(self.predict(apply, {"image": image}), center, scale)}
    box = "the box the image was cropped from (its affine crop, as the eval preprocessing): "
    return Serving(run, inputs={"center": ((2,), box + "its center (x, y) in image pixels"),
                                "scale": ((2,), box + "its (width, height) / 200")},
                   outputs={self.noun + "s": self.points_meaning}, names=self.spec.names)

  @abc.abstractmethod
  def box_example(self, encoded: bytes, box: list[float], image_id: int) -> dict[str, Any]:
    """A raw example (as the dataset's) for a box [x, y, w, h] of an encoded image, for ``predict``."""

  @abc.abstractmethod
  def instances(self, examples: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Points [N, K, 3] in image pixels and a score per box, from the gathered ``eval_examples``."""

  def synthetic_batch(self, batch: int, size: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Heatmap targets at 1/4 resolution, every keypoint weighted."""
    count = self.output_count()
    images = rng.standard_normal((batch, *size, 3), dtype=np.float32)
    heatmaps = rng.uniform(0, 1, (batch, size[0] // 4, size[1] // 4, count)).astype(np.float32)
    return {"image": images, "mask": np.ones((batch,), np.float32), "target": heatmaps,
            "target_weight": np.ones((batch, count), np.float32)}
