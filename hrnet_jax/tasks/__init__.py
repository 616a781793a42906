"""Tasks: what a model is trained to output, its loss and its evaluation metrics (JAX only, no TensorFlow)."""

from __future__ import annotations

from hrnet_jax.tasks.base import Task
from hrnet_jax.tasks.classification import ClassificationTask
from hrnet_jax.tasks.landmarks import LandmarkTask
from hrnet_jax.tasks.pose import PoseTask
from hrnet_jax.tasks.segmentation import SegmentationTask

TASKS: dict[str, type[Task]] = {"classification": ClassificationTask, "landmarks": LandmarkTask, "pose": PoseTask,
                                 "segmentation": SegmentationTask}


def get_task(name: str) -> type[Task]:
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
  return TASKS[name]
