"""COCO instances: a tfds builder from the official files, one example per image.

Manual directory (``--manual_dir``), as downloaded from cocodataset.org::

    MANUAL_DIR/annotations/instances_train2017.json
    MANUAL_DIR/annotations/instances_val2017.json
    MANUAL_DIR/train2017/000000000009.jpg ...
    MANUAL_DIR/val2017/000000000139.jpg ...

Objects are read as MMDetection v2's ``CocoDataset._parse_ann_info`` reads them: an annotation marked ``ignore``,
of a category the file does not list, or whose box does not overlap the image, has zero area or is under 1 pixel
wide or high is dropped; the others keep their absolute box
(``[x, y, x + w, y + h]``, no "+1"), the contiguous label (the file's categories in ``id`` order: COCO's 80 give
0..79), ``iscrowd`` (crowd regions are ignored in training and evaluation), the float area, the annotation id and
the instance mask (polygons and RLE, as pycocotools' ``annToRLE``, stored as compressed RLE ``counts``). The class
names and ``category_id``s are kept in the dataset's metadata, and each image's orientation group (from the file's
sizes) for the orientation buckets. ``validation`` keeps every image (the evaluation set
is the whole file); ``train`` keeps the images with at least one annotation, as MMDetection's ``filter_empty_gt``.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from pycocotools.coco import COCO

from hrnet_jax import coco_api
from hrnet_jax.data import sources
from hrnet_jax.tasks.detection.builder import object_features

MAX_OBJECTS = 100  # COCO 2017 has at most 93 annotations in an image
MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download from https://cocodataset.org/#download: 2017 Train images, 2017 Val images and 2017 Train/Val
annotations; unpack them so that MANUAL_DIR holds annotations/instances_{train,val}2017.json and the train2017/
and val2017/ image folders. A split whose annotation file is missing is not built."""


def usable(annotation: dict[str, Any], width: int, height: int, labels: dict[int, int]) -> bool:
  """MMDetection's test: not ignored, of a known category, and the box overlaps the image, has a positive area and
  is at least 1 x 1 pixel."""
  if annotation.get("ignore", False) or annotation["category_id"] not in labels:
    return False
  x, y, w, h = annotation["bbox"]
  overlap_w = max(0.0, min(x + w, width) - max(x, 0.0))
  overlap_h = max(0.0, min(y + h, height) - max(y, 0.0))
  return overlap_w * overlap_h > 0 and annotation["area"] > 0 and w >= 1 and h >= 1


def image_objects(coco: COCO, image: dict[str, Any], labels: dict[int, int]) -> tuple[dict[str, Any], bool]:
  """One image's usable objects padded to ``MAX_OBJECTS`` (``object_features``), and whether it had more."""
  kept = [a for a in coco.imgToAnns.get(image["id"], []) if usable(a, image["width"], image["height"], labels)]
  truncated = len(kept) > MAX_OBJECTS
  kept = kept[:MAX_OBJECTS]
  objects = {"boxes": np.zeros((MAX_OBJECTS, 4), np.float32), "labels": np.zeros(MAX_OBJECTS, np.int64),
             "is_crowd": np.zeros(MAX_OBJECTS, bool), "areas": np.zeros(MAX_OBJECTS, np.float32),
             "object_ids": np.zeros(MAX_OBJECTS, np.int64), "rles": np.full(MAX_OBJECTS, b"", object)}
  for k, annotation in enumerate(kept):
    x, y, w, h = annotation["bbox"]
    objects["boxes"][k] = [x, y, x + w, y + h]
    objects["labels"][k] = labels[annotation["category_id"]]
    objects["is_crowd"][k] = bool(annotation.get("iscrowd", 0))
    objects["areas"][k] = annotation["area"]
    objects["object_ids"][k] = annotation["id"]
    counts = coco.annToRLE(annotation)["counts"]  # polygons, uncompressed and compressed RLE alike
    objects["rles"][k] = counts.encode() if isinstance(counts, str) else counts
  return {"image_id": image["id"], "num_objects": len(kept), **objects}, truncated


class CocoInstances(tfds.core.GeneratorBasedBuilder):
  """COCO 2017 instances (boxes, classes, masks), one example per image."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            **object_features(MAX_OBJECTS)}),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True)  # stored in image-id order (training draws its own order)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator[tuple[int, dict]]]:
    manual_dir = os.fspath(dl_manager.manual_dir)
    splits = {}
    for split, path, image_dir in coco_api.official_files(manual_dir, "instances", MANUAL_DOWNLOAD_INSTRUCTIONS):
      coco = coco_api.read(path, "annotation file")
      categories = sorted(coco.dataset["categories"], key=lambda category: category["id"])
      names, ids = [c["name"] for c in categories], [c["id"] for c in categories]
      if self.info.metadata.setdefault("category_ids", ids) != ids:
        raise ValueError(f"{path} has other categories than the other split's: {names}")
      self.info.metadata["class_names"] = names
      image_ids = [i for i in sorted(coco.imgs) if split != "train" or coco.imgToAnns.get(i)]
      # Each stored example's orientation group, in storage order, for the buckets (sources.orientation_groups).
      self.info.metadata.setdefault("orientation_groups", {})[split] = "".join(
          str(sources.orientation_group(coco.imgs[i]["width"], coco.imgs[i]["height"])) for i in image_ids)
      splits[split] = self._generate_examples(coco, image_dir, image_ids,
                                              {category_id: label for label, category_id in enumerate(ids)})
    return splits

  def _generate_examples(self, coco: COCO, image_dir: str, image_ids: list[int],
                         labels: dict[int, int]) -> Iterator[tuple[int, dict]]:
    truncated = 0
    for image_id in image_ids:
      image = coco.imgs[image_id]
      objects, more = image_objects(coco, image, labels)
      truncated += more
      yield image_id, {**objects, "image": os.path.join(image_dir, image["file_name"])}
    if truncated:
      logging.warning("%d images in %s have more than %d usable objects; their first %d are kept", truncated,
                      image_dir, MAX_OBJECTS, MAX_OBJECTS)
