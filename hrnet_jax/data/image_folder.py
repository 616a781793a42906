"""A folder of class sub-directories (ImageNet style, any class count) as a random-access dataset.

    DATA_DIR/train/<class name>/*.jpg|png|...
    DATA_DIR/val/<class name>/*.jpg|png|...

Splits are the sub-directories of ``DATA_DIR``. Class indices follow the sorted names of the class folders of
all splits together (torchvision's ``ImageFolder`` order), so a class missing from one split keeps its index;
folders without images (e.g. a run's workdir) are not classes. Files are
read when an example is requested; decoding happens later, in tf.data.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def subdirectories(path: str) -> list[str]:
  return sorted(entry.name for entry in os.scandir(path) if entry.is_dir() and not entry.name.startswith("."))


def _image_files(folder: str) -> list[str]:
  return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def class_names(data_dir: str) -> list[str]:
  """Sorted names of the class folders (those holding images) over every split of ``data_dir``."""
  names = set()
  for split in subdirectories(data_dir):
    root = os.path.join(data_dir, split)
    names.update(name for name in subdirectories(root) if _image_files(os.path.join(root, name)))
  return sorted(names)


class ImageFolderSource(Sequence[dict[str, Any]]):
  """``{'image': encoded bytes, 'label': int64}`` for every image file of one split (``files`` has the paths)."""

  def __init__(self, data_dir: str, split: str):
    self.class_names = class_names(data_dir)
    index = {name: i for i, name in enumerate(self.class_names)}
    root = os.path.join(data_dir, split)
    self.files: list[tuple[str, int]] = []
    for name in subdirectories(root):
      folder = os.path.join(root, name)
      self.files += [(os.path.join(folder, f), index[name]) for f in _image_files(folder)]
    if not self.files:
      raise ValueError(f"{root} holds no images in class sub-directories ({', '.join(IMAGE_EXTENSIONS)})")

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path, label = self.files[index]
    with open(path, "rb") as f:
      return {"image": f.read(), "label": np.int64(label)}
