"""What the heatmap tasks (pose keypoints, facial landmarks) share: the keypoint set, the output-count check,
the heatmap MSE and the (optionally flip-tested) evaluated heatmaps."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from hrnet_jax import keypoints, models
from hrnet_jax.tasks.base import Batch, Task


class HeatmapTask(Task):
  """A task predicting one heatmap per keypoint of ``config.data.keypoints``."""

  noun: str  # "keypoint" or "landmark", for messages
  loss_factor: float  # the official loss: JointsMSELoss's 0.5 (pose) or MSELoss's 1 (landmarks)
  flip_test_default: bool  # the official evaluation's TEST.FLIP_TEST

  @property
  def spec(self) -> keypoints.KeypointSpec:
    return keypoints.get_spec(self.config.data.keypoints)

  @property
  def flip_test(self) -> bool:
    return bool(self.config.get("flip_test", self.flip_test_default))

  def check_dataset(self, class_names: list[str] | None) -> None:
    del class_names
    count = models.output_count(self.name, self.config.model.overrides)
    if count != self.spec.count:
      raise ValueError(f"the {self.noun} set {self.config.data.keypoints!r} has {self.spec.count} {self.noun}s but "
                       f"the model predicts {count}; set --config.model.overrides."
                       f"{models.TASKS[self.name].count_name}={self.spec.count}")

  def loss(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    return keypoints.heatmap_mse(outputs, batch, self.loss_factor), {}

  def predict(self, apply: Callable[[jax.Array], Any], batch: Batch) -> jax.Array:
    return keypoints.predict_keypoints(apply, batch["image"], self.spec, self.flip_test)

  def eval_sums(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    count = jnp.sum(batch["mask"])
    return {"count": count, "loss": keypoints.heatmap_mse(outputs, batch, self.loss_factor) * count}
