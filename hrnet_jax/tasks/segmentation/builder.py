"""Semantic-segmentation datasets: a tfds builder from the official downloads, labels stored as train ids.

``semantic_segmentation/<config>``; manual directory (``--manual_dir``) per config:

cityscapes (leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com, unzipped)::

    MANUAL_DIR/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
    MANUAL_DIR/gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png

  Label ids become the 19 train ids (cityscapesscripts' table), every other id 255.

pascal_context (VOC2010 trainval tar and PASCAL-Context's trainval.tar.gz, unpacked side by side)::

    MANUAL_DIR/VOCdevkit/VOC2010/JPEGImages/<id>.jpg
    MANUAL_DIR/VOCdevkit/VOC2010/ImageSets/Main/{train,val}.txt        (4,998 / 5,105 images)
    MANUAL_DIR/trainval/<id>.mat                                        (459-class ``LabelMap``)

  or, converted by MMSegmentation's ``pascal_context.py``, ``VOCdevkit/VOC2010/SegmentationClassContext/<id>.png``
  with ``ImageSets/SegmentationContext/{train,val}.txt``. Labels are stored as the 60-class index (0 background);
  the 59-class benchmark ignores background at training and evaluation time.

lip (TrainVal_images.zip and TrainVal_parsing_annotations.zip from the LIP site, unzipped)::

    MANUAL_DIR/TrainVal_images/{train,val}_images/<id>.jpg
    MANUAL_DIR/TrainVal_images/{train,val}_id.txt
    MANUAL_DIR/TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png      (labels 0..19)

folder (your own data: images and one-channel label PNGs of the same name and size, class index per pixel)::

    MANUAL_DIR/images/{train,val}/<name>.jpg (or .png)
    MANUAL_DIR/labels/{train,val}/<name>.png
    MANUAL_DIR/classes.json     (optional) {"names": [...], "colours": [[r, g, b], ...], "ignore": 255}

  Without classes.json the classes are 0 .. the largest label value found, named by number, and 255 is ignored.
  The class names and colours are stored with the dataset (``data.labels=dataset`` reads them).

Splits are ``train`` and ``validation``; a split whose files are missing is not built.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from hrnet_jax.tasks.segmentation import label_sets

SPLITS = {"train": "train", "validation": "val"}
LabelReader = Callable[[str], np.ndarray]
Pairs = list[tuple[str, str, LabelReader]]  # (image path, label path, how to read the label as train ids)


def read_png(path: str) -> np.ndarray:
  with Image.open(path) as image:
    if image.mode not in ("L", "P", "I", "I;16"):
      raise ValueError(f"{path}: a label image must have one channel (mode L or P), got mode {image.mode}")
    return np.asarray(image)


def cityscapes_label(path: str) -> np.ndarray:
  return label_sets.cityscapes_id_to_train_id()[read_png(path)]


def pascal_context_mat_label(path: str) -> np.ndarray:
  import scipy.io  # pylint: disable=import-outside-toplevel
  return label_sets.pascal_context_index(scipy.io.loadmat(path)["LabelMap"])


def unchanged_label(path: str) -> np.ndarray:
  return read_png(path).astype(np.uint8)


def _read_ids(path: str) -> list[str]:
  with open(path) as f:
    return [line.split()[0] for line in f if line.strip()]


def _checked(pairs: Pairs) -> Pairs:
  for image, label, _ in pairs:
    for path in (image, label):
      if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing (its pair is listed); see the expected layout:\n{__doc__}")
  return pairs


def cityscapes_pairs(manual_dir: str, split: str) -> Pairs:
  images = sorted(glob.glob(os.path.join(manual_dir, "leftImg8bit", split, "*", "*_leftImg8bit.png")))
  labels = [path.replace(os.path.join(manual_dir, "leftImg8bit"), os.path.join(manual_dir, "gtFine"), 1)
            .replace("_leftImg8bit.png", "_gtFine_labelIds.png") for path in images]
  return _checked([(image, label, cityscapes_label) for image, label in zip(images, labels)])


def pascal_context_pairs(manual_dir: str, split: str) -> Pairs:
  voc = os.path.join(manual_dir, "VOCdevkit", "VOC2010")
  converted = os.path.join(voc, "ImageSets", "SegmentationContext", f"{split}.txt")
  if os.path.exists(converted):
    return _checked([(os.path.join(voc, "JPEGImages", f"{i}.jpg"),
                      os.path.join(voc, "SegmentationClassContext", f"{i}.png"), unchanged_label)
                     for i in _read_ids(converted)])
  listing = os.path.join(voc, "ImageSets", "Main", f"{split}.txt")
  if not os.path.exists(listing):
    return []
  return _checked([(os.path.join(voc, "JPEGImages", f"{i}.jpg"), os.path.join(manual_dir, "trainval", f"{i}.mat"),
                    pascal_context_mat_label) for i in _read_ids(listing)])


def lip_pairs(manual_dir: str, split: str) -> Pairs:
  listing = os.path.join(manual_dir, "TrainVal_images", f"{split}_id.txt")
  if not os.path.exists(listing):
    return []
  return _checked([(os.path.join(manual_dir, "TrainVal_images", f"{split}_images", f"{i}.jpg"),
                    os.path.join(manual_dir, "TrainVal_parsing_annotations", f"{split}_segmentations", f"{i}.png"),
                    unchanged_label) for i in _read_ids(listing)])


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def folder_classes(manual_dir: str) -> dict:
  """``classes.json`` of a folder dataset, checked ({} when there is none)."""
  path = os.path.join(manual_dir, "classes.json")
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      classes = json.load(f)
  except json.JSONDecodeError as error:
    raise ValueError(f"{path} is not JSON ({error})") from None
  unknown = set(classes) - {"names", "colours", "ignore"}
  names, colours = classes.get("names"), classes.get("colours")
  if unknown or not isinstance(names, list) or not names:
    raise ValueError(f"{path} must hold \"names\" (a list) and optionally \"colours\" and \"ignore\""
                     f"{'; unknown keys ' + str(sorted(unknown)) if unknown else ''}")
  if colours is not None and (len(colours) != len(names) or any(len(colour) != 3 for colour in colours)):
    raise ValueError(f"{path}: \"colours\" needs one [r, g, b] per name ({len(names)} names)")
  return classes


def folder_label(classes: dict) -> LabelReader:
  """Labels as stored: class indices, the ignore value made 255; a value that is no class is an error."""
  ignore, count = int(classes.get("ignore", label_sets.IGNORE_LABEL)), len(classes.get("names", ()))

  def read(path: str) -> np.ndarray:
    label = read_png(path).astype(np.int64)
    ignored = label == ignore
    if count:
      wrong = np.unique(label[~ignored & (label >= count)])
      if wrong.size:
        raise ValueError(f"{path} has label value(s) {wrong.tolist()[:5]}, but classes.json names {count} classes "
                         f"(0..{count - 1}) and ignores {ignore}")
    return np.where(ignored, label_sets.IGNORE_LABEL, label).astype(np.uint8)
  return read


def folder_pairs(manual_dir: str, split: str) -> Pairs:
  images = sorted(path for path in glob.glob(os.path.join(manual_dir, "images", split, "*"))
                  if path.lower().endswith(IMAGE_SUFFIXES))
  read = folder_label(folder_classes(manual_dir))
  return _checked([(image, os.path.join(manual_dir, "labels", split,
                                        os.path.splitext(os.path.basename(image))[0] + ".png"), read)
                   for image in images])


def folder_metadata(manual_dir: str, pairs: Pairs) -> dict:
  """The class names and colours to store: classes.json's, or one class per label value found."""
  classes = folder_classes(manual_dir)
  names = classes.get("names")
  if names is None:
    largest = max(int(np.max(values[values != label_sets.IGNORE_LABEL], initial=0))
                  for values in (read(label) for _, label, read in pairs))
    names = [str(i) for i in range(largest + 1)]
  colours = classes.get("colours") or label_sets.voc_palette(len(names)).tolist()
  return {"class_names": list(names), "palette": [list(map(int, colour)) for colour in colours]}


DATASETS: dict[str, Callable[[str, str], Pairs]] = {
    "cityscapes": cityscapes_pairs, "pascal_context": pascal_context_pairs, "lip": lip_pairs,
    "folder": folder_pairs}


class SemanticSegmentation(tfds.core.GeneratorBasedBuilder):
  """Images with per-pixel train-id labels (255: no label); a config per dataset."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in DATASETS]
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
            "file_name": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # splits keep the official order
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    pairs = {split: DATASETS[self.builder_config.name](manual_dir, folder) for split, folder in SPLITS.items()}
    pairs = {split: found for split, found in pairs.items() if found}
    if not pairs:
      raise FileNotFoundError(f"no {self.builder_config.name} images and labels in {manual_dir}; expected\n{__doc__}")
    if self.builder_config.name == "folder":
      self.info.metadata.update(folder_metadata(manual_dir, [pair for found in pairs.values() for pair in found]))
    return {split: self._generate_examples(found) for split, found in pairs.items()}

  def _generate_examples(self, pairs: Pairs) -> Iterator[tuple[int, dict]]:
    for key, (image, label, read_label) in enumerate(pairs):
      train_ids = read_label(label)
      with Image.open(image) as decoded:
        if decoded.size != train_ids.shape[::-1]:
          raise ValueError(f"{label} is {train_ids.shape[1]}x{train_ids.shape[0]} but {image} is "
                           f"{decoded.size[0]}x{decoded.size[1]}")
      yield key, {"image": image, "label": train_ids[..., None], "file_name": os.path.basename(image)}
