"""Opening datasets as random-access sources (tfds ArrayRecord data sources), with clear errors."""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax import files, tasks
from hrnet_jax.data import image_folder, synthetic_builder

# A folder of class sub-directories, read directly (no build step).
IMAGE_FOLDER = "image_folder"
# Our own builders, built on first use when they need no manual download. The builders that need the official
# files belong to their tasks (``TaskSpec.builders``); looking one up registers it with tfds.
LOCAL_BUILDERS = {"synthetic_shapes": synthetic_builder.SyntheticShapes}


class DatasetNotFoundError(FileNotFoundError):
  """A dataset is not where the config says; the message says how to prepare it."""


def default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def builder(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The prepared tfds builder for ``name`` (ArrayRecord files, for random access)."""
  data_dir = data_dir or default_data_dir()
  builder_class = LOCAL_BUILDERS.get(name) or tasks.builder_class(name)  # registers a task's builder with tfds
  if getattr(builder_class, "BUILT_LOCALLY", False):  # synthetic data: made here on first use
    dataset = builder_class(data_dir=data_dir, file_format="array_record")
    if not dataset.is_prepared():
      files.path(data_dir).mkdir(parents=True, exist_ok=True)
      dataset.download_and_prepare()
    return dataset
  if not files.path(data_dir).is_dir():
    raise DatasetNotFoundError(
        f"dataset directory {data_dir} does not exist; prepare {name} there first (see README, 'Real data')")
  try:
    dataset = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DatasetNotFoundError(f"unknown dataset {name!r}: {e}") from None
  if not dataset.is_prepared():
    hint = f" --manual_dir={manual_dir}" if manual_dir else " --manual_dir=<where the official files are>"
    raise DatasetNotFoundError(
        f"dataset {name} is not prepared in {data_dir}; build it once with: python -m hrnet_jax.data.prepare "
        f"{name} --data_dir={data_dir}{hint}")
  return dataset


@functools.lru_cache(maxsize=None)
def recorded_metadata(name: str, data_dir: str | None, manual_dir: str | None) -> dict[str, Any]:
  """What the prepared dataset's builder recorded from its files (class or keypoint names, ...); {} when nothing.
  Cached: the tasks read it at every lookup of their class or keypoint set."""
  return dict(builder(name, data_dir, manual_dir).info.metadata or {})


def open_source(name: str, split: str, data_dir: str | None = None, manual_dir: str | None = None,
                labelled_only: bool = False) -> tuple[Sequence[dict[str, Any]], list[str] | None]:
  """A random-access source of raw examples (images left encoded, decoded later in tf.data) and the class names
  (of the class label, else the metadata's ``class_names``; None when the dataset has neither). ``labelled_only``:
  only the examples with labelled keypoints (a dataset that stores them first and counts them in its metadata, as
  ``coco_keypoints``)."""
  if name == IMAGE_FOLDER:
    return _open_image_folder(split, data_dir)
  dataset = builder(name, data_dir, manual_dir)
  base_split = split.split("[")[0]  # tfds slicing, e.g. "validation[:256]", is allowed
  if base_split not in dataset.info.splits:
    raise ValueError(f"dataset {name} has no split {base_split!r}; it has {sorted(dataset.info.splits)}")
  skip_images = {key: tfds.decode.SkipDecoding() for key, feature in dataset.info.features.items()
                 if isinstance(feature, tfds.features.Image)}
  label = dataset.info.features["label"] if "label" in dataset.info.features else None
  names = list(label.names) if isinstance(label, tfds.features.ClassLabel) else None
  if names is None and dataset.info.metadata:  # datasets whose classes are not one label per example (detection)
    names = dataset.info.metadata.get("class_names")
  if labelled_only:
    counts = dataset.info.metadata.get("labelled", {}) if dataset.info.metadata else {}
    if split not in counts:
      raise ValueError(f"dataset {name} does not record which {split} examples have labelled keypoints (a "
                       f"sliced split cannot be combined with labelled_only)")
    split = f"{split}[:{counts[split]}]"
  return dataset.as_data_source(split, decoders=skip_images), names


def _open_image_folder(split: str, data_dir: str | None) -> tuple[image_folder.ImageFolderSource, list[str]]:
  layout = "DATA_DIR/<split>/<class name>/<image files>"
  if not data_dir or not files.path(data_dir).is_dir():
    raise DatasetNotFoundError(f"image_folder needs data.data_dir, a folder laid out as {layout}; got {data_dir}")
  if not (files.path(data_dir) / split).is_dir():
    splits = image_folder.subdirectories(data_dir)
    raise DatasetNotFoundError(f"{data_dir} has no split folder {split!r} (it has {splits}); expected {layout}")
  source = image_folder.ImageFolderSource(data_dir, split)
  return source, source.class_names


PORTRAIT = 1  # the group of an image that is not wider than high (MMDetection's ``flag``: 1 when w / h > 1)


def orientation_group(width: int, height: int) -> int:
  """0 for an image wider than high, else ``PORTRAIT``."""
  return 0 if width > height else PORTRAIT


def orientation_groups(name: str, split: str, data_dir: str | None = None,
                       manual_dir: str | None = None) -> np.ndarray:
  """Each example's orientation group (``orientation_group``) in ``split`` (tfds slicing included), from what the
  builder recorded when it prepared the dataset (``orientation_groups``: a string of one digit per example of each
  split), so that no image is read to learn it."""
  dataset = builder(name, data_dir, manual_dir)
  recorded = (dataset.info.metadata or {}).get("orientation_groups")
  if not recorded:
    raise ValueError(f"dataset {name} records no image orientations, which data.orientation_buckets needs; prepare "
                     "it again with this version (python -m hrnet_jax.data.prepare), or set "
                     "data.orientation_buckets=False")
  parts = tfds.core.ReadInstruction.from_spec(split).to_absolute(dataset.info.splits)
  flags = "".join(recorded[part.splitname][part.from_:part.to] for part in parts)
  return (np.frombuffer(flags.encode(), np.uint8) - ord("0")).astype(np.int32)
