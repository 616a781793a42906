"""The class sets of detection datasets: names in contiguous label order and each label's ``category_id`` in the
dataset's annotation files (COCO's 80 classes have ids 1..90 with gaps; MMDetection's labels are their sorted
order)."""

from __future__ import annotations

import dataclasses

import ml_collections

from hrnet_jax.data.synthetic import CLASS_NAMES as SHAPE_NAMES
from hrnet_jax.registry import unknown_name


@dataclasses.dataclass(frozen=True)
class ClassSet:
  names: tuple[str, ...]
  category_ids: tuple[int, ...]

  @property
  def count(self) -> int:
    return len(self.names)


COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33,
            34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
            62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)

CLASS_SETS = {"coco": ClassSet(COCO_NAMES, COCO_IDS),
              "synthetic_objects": ClassSet(tuple(SHAPE_NAMES), (1, 2, 3, 4))}
# ``data.classes`` naming no set but the dataset's own classes, as its builder recorded them from the annotation
# file's ``categories`` (your own COCO-format data).
DATASET_CLASSES = "dataset"


def recorded_classes(data: ml_collections.ConfigDict) -> ClassSet | None:
  """The classes the prepared dataset ``data.name`` records in its metadata (names and ``category_id``s, as its
  builder read them from the annotation file), or None when it records none."""
  from hrnet_jax.data import sources  # pylint: disable=import-outside-toplevel  (TensorFlow, only for this)
  metadata = sources.recorded_metadata(data.name, data.data_dir, data.manual_dir)
  if "class_names" not in metadata or "category_ids" not in metadata:
    return None
  return ClassSet(tuple(metadata["class_names"]), tuple(metadata["category_ids"]))


def class_set(data: ml_collections.ConfigDict) -> ClassSet:
  """The class set ``data.classes`` names; ``"dataset"`` reads the prepared dataset's metadata."""
  if data.classes == DATASET_CLASSES:
    recorded = recorded_classes(data)
    if recorded is None:
      raise ValueError(f"dataset {data.name} records no class names and category ids; set data.classes to one of "
                       f"{', '.join(CLASS_SETS)}")
    return recorded
  if data.classes not in CLASS_SETS:
    raise unknown_name("class set (data.classes)", data.classes, [*CLASS_SETS, DATASET_CLASSES])
  return CLASS_SETS[data.classes]
