"""COCO keypoints: a tfds builder from the official files.

Manual directory (``--manual_dir``), as downloaded from cocodataset.org::

    MANUAL_DIR/annotations/person_keypoints_train2017.json
    MANUAL_DIR/annotations/person_keypoints_val2017.json
    MANUAL_DIR/train2017/000000000009.jpg ...
    MANUAL_DIR/val2017/000000000139.jpg ...

One example per non-crowd person instance, as deep-high-resolution-net.pytorch's ``COCODataset`` reads them: the
box is the official "clean" box (clipped to the image; instances with zero area or an empty box are dropped),
keypoints are [K, 3] (x, y, v). Your own COCO-format keypoint files, laid out and named as COCO's, build the same
way: the instances are those of the file's one category with ``keypoints`` (COCO's person, id 1, or yours), and
its keypoint names and skeleton are recorded in the metadata (``data.keypoints=custom`` reads them). Instances
with labelled keypoints come first in each split and the split's ``labelled`` count is stored in the dataset
metadata, so the official training set (and ground-truth-box evaluation set), which leaves out instances without
keypoints, is the split's first ``labelled`` examples.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax import coco_api
from hrnet_jax.files import read_json

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download from https://cocodataset.org/#download: 2017 Train images, 2017 Val images and 2017 Train/Val
annotations; unpack them so that MANUAL_DIR holds annotations/person_keypoints_{train,val}2017.json and the
train2017/ and val2017/ image folders. A split whose annotation file is missing is not built."""


def clean_box(box: list[float], width: int, height: int) -> list[float] | None:
  """The official box clean-up: clipped to the image, width/height minus one pixel; None when empty."""
  x, y, w, h = box
  x1, y1 = max(0.0, x), max(0.0, y)
  x2 = min(width - 1.0, x1 + max(0.0, w - 1))
  y2 = min(height - 1.0, y1 + max(0.0, h - 1))
  if x2 < x1 or y2 < y1:
    return None
  return [x1, y1, x2 - x1, y2 - y1]


def person_instances(annotations: dict[str, Any], category: dict[str, Any]) -> list[dict[str, Any]]:
  """Every usable non-crowd instance of ``category``, in image-id then annotation order, labelled ones first."""
  count = len(category["keypoints"])
  images = {image["id"]: image for image in annotations["images"]}
  by_image: dict[int, list[dict[str, Any]]] = {}
  for annotation in annotations["annotations"]:
    by_image.setdefault(annotation["image_id"], []).append(annotation)
  instances = []
  for image_id in sorted(images):
    image = images[image_id]
    for annotation in by_image.get(image_id, []):
      if annotation.get("iscrowd", 0) or annotation["category_id"] != category["id"] or annotation["area"] <= 0:
        continue
      box = clean_box(annotation["bbox"], image["width"], image["height"])
      if box is None:
        continue
      keypoints = np.asarray(annotation["keypoints"], np.float32)
      if keypoints.size != 3 * count:
        raise ValueError(f"annotation {annotation['id']} has {keypoints.size} keypoint values, not 3 x {count} "
                         f"({category['name']}'s keypoints)")
      keypoints = keypoints.reshape(count, 3)
      instances.append({"file_name": image["file_name"], "image_id": image_id, "instance_id": annotation["id"],
                        "bbox": np.asarray(box, np.float32), "area": np.float32(annotation["area"]),
                        "keypoints": keypoints, "num_keypoints": int(annotation.get("num_keypoints", 0))})
  # The official loader skips instances whose keypoints are all zero (max(keypoints) == 0); stable sort keeps order.
  return sorted(instances, key=lambda instance: not instance["keypoints"].any())


class CocoKeypoints(tfds.core.GeneratorBasedBuilder):
  """COCO 2017 person keypoints, one example per person instance."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "image_id": np.int64,
            "instance_id": np.int64,
            "bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "area": np.float32,
            # [None, 3]: any file's keypoint count (COCO's 17 are stored as before: older builds read the same).
            "keypoints": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
            "num_keypoints": np.int32,
        }),
        metadata=tfds.core.MetadataDict(),
        # Stored in generation order: the labelled-first order that the metadata counts refer to.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    splits = {}
    for split, path, image_dir in coco_api.official_files(manual_dir, "person_keypoints",
                                                          MANUAL_DOWNLOAD_INSTRUCTIONS):
      annotations = read_json(path, "annotation file")
      category = coco_api.keypoint_category(annotations, path)
      instances = person_instances(annotations, category)
      self.info.metadata.update({
          "category_id": category["id"], "category_name": category["name"],
          "keypoint_names": list(category["keypoints"]),
          # COCO's skeleton counts keypoints from 1.
          "skeleton": [[a - 1, b - 1] for a, b in category.get("skeleton", [])]})
      self.info.metadata.setdefault("labelled", {})[split] = sum(bool(i["keypoints"].any()) for i in instances)
      splits[split] = self._generate_examples(instances, image_dir)
    return splits

  def _generate_examples(self, instances: list[dict[str, Any]], image_dir: str) -> Iterator[tuple[int, dict]]:
    for key, instance in enumerate(instances):
      example = {k: v for k, v in instance.items() if k != "file_name"}
      yield key, {**example, "image": os.path.join(image_dir, instance["file_name"])}
