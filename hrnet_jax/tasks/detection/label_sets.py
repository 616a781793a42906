"""The class sets of detection datasets: names in contiguous label order and each label's ``category_id`` in the
dataset's annotation files (COCO's 80 classes have ids 1..90 with gaps; MMDetection's labels are their sorted
order)."""

from __future__ import annotations

import dataclasses

from hrnet_jax.data.synthetic import CLASS_NAMES as SHAPE_NAMES


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
