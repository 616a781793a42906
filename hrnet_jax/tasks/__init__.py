"""The task registry: every task that the programs, the engine and the data code know, each declared once.

A built-in task is a folder ``hrnet_jax/tasks/<name>/`` whose ``__init__`` defines ``TASK``, its ``TaskSpec``;
adding one is adding its folder and its name to ``BUILTIN``. A task defined anywhere else (your own project, a
test) is one ``register(spec)`` call. ``docs/adding_a_task.md`` walks through it.
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections

from hrnet_jax.model.factory import ModelDefaults
from hrnet_jax.registry import Registry
from hrnet_jax.tasks.spec import TaskSpec, check_pairing, resolve

BUILTIN = ("classification", "pose", "landmarks", "segmentation", "detection")

TASKS = Registry("task")


def register(spec: TaskSpec) -> TaskSpec:
  """Adds a task; its recipe and dataset names must not be taken by another task's."""
  for kind, names, taken in (("recipe", [r.name for r in spec.recipes], recipes()),
                             ("dataset", list(spec.builders), _builders())):
    for name in names:
      if name in taken and taken[name] is not _by_name(spec, kind, name):
        raise ValueError(f"task {spec.name!r} declares the {kind} {name!r}, which another task declares")
  return TASKS.register(spec.name, spec)


def _by_name(spec: TaskSpec, kind: str, name: str) -> Any:
  return {r.name: r for r in spec.recipes}[name] if kind == "recipe" else spec.builders[name]


def recipes() -> Registry:
  """Every registered task's recipes, by name (``config.data.preprocess``)."""
  return Registry("recipe (data.preprocess)", {r.name: r for spec in TASKS.values() for r in spec.recipes})


def _builders() -> Registry:
  return Registry("dataset", {name: ref for spec in TASKS.values() for name, ref in spec.builders.items()})


def builder_class(dataset: str) -> type | None:
  """The tfds builder a task declares for ``dataset`` (``coco_keypoints``, ``face_landmarks/wflw``: the part
  before the ``/``), imported, which registers it with tfds; None for a dataset no task declares."""
  ref = _builders().get(dataset.split("/")[0])
  return None if ref is None else resolve(ref)


def dataset_names() -> list[str]:
  return list(_builders())


def create(config: ml_collections.ConfigDict) -> Any:
  """The ``Task`` of ``config.task``, after checking that its recipe (``config.data.preprocess``) produces every
  batch key it reads: a mismatch fails here, at start-up, naming the recipe, the task and the key. A config built
  for another recipe gets this recipe's defaults for the ``config.data`` keys it lacks."""
  task_class = TASKS[config.task].task_class()
  recipe = recipes()[config.data.preprocess]
  missing = {key: value for key, value in recipe.defaults.items() if key not in config.data}
  if missing:
    with config.unlocked():
      config.data.update(missing)
  check_pairing(config.task, task_class, recipe, config.data)
  return task_class(config)


for _name in BUILTIN:
  register(importlib.import_module(f"hrnet_jax.tasks.{_name}").TASK)

# Networks without a training task yet: they can be built, summarised and loaded, not trained.
register(TaskSpec("features", ModelDefaults(head=None)))  # the four branch outputs
