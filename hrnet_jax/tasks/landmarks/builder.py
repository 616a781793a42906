"""Facial landmarks (WFLW, 300W, COFW, AFLW): one tfds builder, a config per dataset, from the annotation files.

Manual directory (``--manual_dir``), per dataset::

    MANUAL_DIR/images/...                                   # paths as the annotations name them
    MANUAL_DIR/annotations/face_landmarks_<dataset>_<split>.json   # MMPose's COCO-style files (cofw: cofw_<split>.json)
    MANUAL_DIR/face_landmarks_<dataset>_<split>.csv         # or the official HRNet CSVs (wflw, 300w, aflw)
    MANUAL_DIR/COFW_{train,test}_color.mat                  # or COFW's official MATLAB files (images inside)

custom (your own landmarks, any count): ``annotations/face_landmarks_custom_<split>.json`` in the same COCO-style
layout (``center``/``scale``/``box_size`` optional), or ``face_landmarks_custom_<split>.csv`` in the official one;
every face must have the same count, which is recorded with the dataset (``data.keypoints=custom`` reads it).

Every annotation file present becomes a split named after its ``<split>`` part: train, test, and the subsets
(WFLW test_largepose, test_expression, ...; 300W valid, valid_common, valid_challenge, test). One example per
face: the image, its landmarks [K, 2], the official center and scale (units of 200 px, before the official
x1.25) and, for AFLW, the box size that normalises its NME. Files without center/scale (MMPose's COFW) get them
from the landmarks as the official COFW loader computes them.
"""

from __future__ import annotations

import csv
import glob
import os
import re
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax import files

# Landmark count of each dataset, and the name its annotation files start with.
# (None: any count, the same for every face.)
DATASETS = {"wflw": (98, "face_landmarks_wflw"), "300w": (68, "face_landmarks_300w"), "cofw": (29, "cofw"),
            "aflw": (19, "face_landmarks_aflw"), "custom": (None, "face_landmarks_custom")}


def center_scale_from_landmarks(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
  """The official COFW rule: the landmarks' integer-rounded box, its center, its longer side / 200."""
  low, high = np.floor(landmarks.min(0)), np.ceil(landmarks.max(0))
  return (low + high) / 2.0, float((high - low).max()) / 200.0


def _face(image: str | np.ndarray, image_id: int, face_id: int, landmarks: np.ndarray, center: Any, scale: Any,
          box_size: Any) -> dict[str, Any]:
  if center is None or scale is None:
    center, scale = center_scale_from_landmarks(landmarks)
  return {"image": image, "image_id": image_id, "face_id": face_id, "landmarks": landmarks.astype(np.float32),
          "center": np.asarray(center, np.float32), "scale": np.float32(scale),
          "box_size": np.float32(box_size if box_size is not None else 200.0 * float(scale))}


def read_json(path: str, count: int | None) -> list[dict[str, Any]]:
  """Faces of an MMPose COCO-style file (image path relative to the images folder)."""
  content = files.read_json(path, "annotation file")
  file_names = {image["id"]: image["file_name"] for image in content["images"]}
  faces = []
  for annotation in content["annotations"]:
    landmarks = np.reshape(annotation["keypoints"], (-1, 3))[:, :2]
    count = count or len(landmarks)  # a custom file: its first face's count
    if len(landmarks) != count:
      raise ValueError(f"{path}: annotation {annotation['id']} has {len(landmarks)} landmarks, expected {count}")
    faces.append(_face(file_names[annotation["image_id"]], annotation["image_id"], annotation["id"], landmarks,
                       annotation.get("center"), annotation.get("scale"), annotation.get("box_size")))
  return faces


def read_csv(path: str, count: int | None) -> list[dict[str, Any]]:
  """Faces of an official HRNet CSV: image, scale, [box_size (AFLW)], center_w, center_h, x0, y0, x1, ..."""
  faces = []
  with open(path) as f:
    rows = list(csv.reader(f))[1:]  # the header names vary; the columns are positional, as the official loader
  if count is None and rows:  # a custom file: 4 or 5 columns, then x, y per landmark
    count = (len(rows[0]) - 4) // 2
  for face_id, row in enumerate(rows):
    has_box_size = len(row) == 5 + 2 * count
    values = [float(v) for v in row[1:]]
    scale, box_size = values[0], (values[1] if has_box_size else None)
    center = values[2:4] if has_box_size else values[1:3]
    landmarks = np.reshape(values[4:] if has_box_size else values[3:], (-1, 2))
    if len(landmarks) != count:
      raise ValueError(f"{path}: row {face_id + 2} has {len(landmarks)} landmarks, expected {count}")
    faces.append(_face(row[0], face_id, face_id, landmarks, center, scale, box_size))
  return faces


# COFW's official files: split -> (file, the cell of images, the matrix of landmark rows).
COFW_MAT = {"train": ("COFW_train_color.mat", "IsTr", "phisTr"), "test": ("COFW_test_color.mat", "IsT", "phisT")}


def read_cofw_mat(path: str, count: int) -> list[dict[str, Any]]:
  """Faces of an official COFW file (MATLAB v7.3, i.e. HDF5), as the official loader reads it: a cell of images
  (grayscale ones repeated to 3 channels) and rows of 29 x, 29 y and 29 occlusion flags. MATLAB stores arrays
  column-major, so HDF5 shows every array transposed."""
  import h5py  # pylint: disable=import-outside-toplevel  (installed with TensorFlow)
  _, images_key, points_key = COFW_MAT["train" if os.path.basename(path) == COFW_MAT["train"][0] else "test"]
  faces = []
  with h5py.File(path, "r") as f:
    points = np.asarray(f[points_key]).T
    for index, reference in enumerate(np.asarray(f[images_key]).reshape(-1)):
      image = np.asarray(f[reference], np.uint8).T
      image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
      landmarks = points[index, :2 * count].reshape(2, count).T
      faces.append(_face(np.ascontiguousarray(image), index, index, landmarks, None, None, None))
  return faces


def annotation_files(manual_dir: str, dataset: str) -> dict[str, str]:
  """Split name -> annotation file, for every JSON (preferred), CSV or (COFW) .mat of ``dataset`` in
  ``manual_dir``."""
  prefix = DATASETS[dataset][1]
  files = {}
  if dataset == "cofw":
    files.update({split: os.path.join(manual_dir, name) for split, (name, _, _) in COFW_MAT.items()
                  if os.path.exists(os.path.join(manual_dir, name))})
  patterns = (os.path.join(manual_dir, f"{prefix}_*.csv"), os.path.join(manual_dir, "annotations", f"{prefix}_*.json"))
  for pattern in patterns:
    for path in sorted(glob.glob(pattern)):
      split = re.sub(r"\.(json|csv)$", "", os.path.basename(path))[len(prefix) + 1:]
      files[split] = path
  return files


class FaceLandmarks(tfds.core.GeneratorBasedBuilder):
  """Faces with their landmarks, center and scale; a config per dataset (``face_landmarks/wflw`` ...)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name, description=f"{name}: {count} landmarks")
                     for name, (count, _) in DATASETS.items()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  @property
  def landmark_count(self) -> int | None:
    return DATASETS[self.builder_config.name][0]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "image_id": np.int64,
            "face_id": np.int64,
            "landmarks": tfds.features.Tensor(shape=(self.landmark_count, 2), dtype=np.float32),  # None: custom
            "center": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "scale": np.float32,
            "box_size": np.float32,
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # test sets keep the order of their files
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    files = annotation_files(manual_dir, self.builder_config.name)
    if not files:
      raise FileNotFoundError(f"no {self.builder_config.name} annotation files in {manual_dir}; expected\n{__doc__}")
    faces = {split: self._read(path) for split, path in files.items()}
    counts = {split: len(found[0]["landmarks"]) for split, found in faces.items() if found}
    if len(set(counts.values())) > 1:
      raise ValueError(f"the {self.builder_config.name} splits have different landmark counts: {counts}")
    self.info.metadata["landmark_count"] = next(iter(counts.values()), self.landmark_count)
    image_dir = os.path.join(manual_dir, "images")
    return {split: self._generate_examples(files[split], found, image_dir) for split, found in faces.items()}

  def _read(self, path: str) -> list[dict[str, Any]]:
    reader = {".json": read_json, ".csv": read_csv, ".mat": read_cofw_mat}[os.path.splitext(path)[1]]
    return reader(path, self.landmark_count)

  def _generate_examples(self, path: str, faces: list[dict[str, Any]],
                         image_dir: str) -> Iterator[tuple[int, dict]]:
    for key, face in enumerate(faces):
      if isinstance(face["image"], str):  # a path (JSON, CSV); .mat files hold the pixels
        image = os.path.join(image_dir, face["image"])
        if not os.path.exists(image):
          raise FileNotFoundError(f"{path} names {face['image']}, which is not in {image_dir}")
        face = {**face, "image": image}
      yield key, face
