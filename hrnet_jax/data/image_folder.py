"""A folder of class sub-directories (ImageNet style, any class count) as a random-access dataset.

    DATA_DIR/train/<class name>/*.jpg|png|...
    DATA_DIR/val/<class name>/*.jpg|png|...

Splits are the sub-directories of ``DATA_DIR``. Class indices follow the sorted names of the class folders of
all splits together (torchvision's ``ImageFolder`` order), so a class missing from one split keeps its index;
folders without images (e.g. a run's workdir) are not classes. Files are
read when an example is requested; decoding happens later, in tf.data. ``DATA_DIR`` may be local or remote
(``gs://...``: everything goes through ``hrnet_jax.files``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hrnet_jax import files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def subdirectories(path: str) -> list[str]:
  return sorted(entry.name for entry in files.path(path).iterdir()
                if not entry.name.startswith(".") and entry.is_dir())


def _image_files(folder: str) -> list[str]:
  return sorted(entry.name for entry in files.path(folder).iterdir() if entry.name.lower().endswith(IMAGE_EXTENSIONS))


def _join(*parts: str) -> str:
  return str(files.path(parts[0]).joinpath(*parts[1:]))


def class_names(data_dir: str) -> list[str]:
  """Sorted names of the class folders (those holding images) over every split of ``data_dir``."""
  names = set()
  for split in subdirectories(data_dir):
    root = _join(data_dir, split)
    names.update(name for name in subdirectories(root) if _image_files(_join(root, name)))
  return sorted(names)


class ImageFolderSource(Sequence[dict[str, Any]]):
  """``{'image': encoded bytes, 'label': int64}`` for every image file of one split (``files`` has the paths)."""

  def __init__(self, data_dir: str, split: str):
    self.class_names = class_names(data_dir)
    index = {name: i for i, name in enumerate(self.class_names)}
    root = _join(data_dir, split)
    self.files: list[tuple[str, int]] = []
    for name in subdirectories(root):
      folder = _join(root, name)
      self.files += [(_join(folder, f), index[name]) for f in _image_files(folder)]
    if not self.files:
      raise ValueError(f"{root} holds no images in class sub-directories ({', '.join(IMAGE_EXTENSIONS)})")

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path, label = self.files[index]
    return {"image": files.path(path).read_bytes(), "label": np.int64(label)}
