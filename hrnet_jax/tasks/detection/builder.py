"""The detection datasets as tfds builders (ArrayRecord, for random access): the synthetic objects, built locally
on first use. Every example carries its objects padded to a fixed count, so batches need no ragged tensors."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax.data.synthetic import CLASS_NAMES
from hrnet_jax.tasks.detection import synthetic


def object_features(max_objects: int) -> dict[str, tfds.features.FeatureConnector]:
  """Per image: its id, the number of objects, and per object (padded to ``max_objects``) its box (absolute
  xyxy), contiguous label, crowd flag, area, annotation id and mask (COCO's compressed RLE ``counts``)."""
  return {"image_id": tfds.features.Scalar(np.int64), "num_objects": tfds.features.Scalar(np.int32),
          "boxes": tfds.features.Tensor(shape=(max_objects, 4), dtype=np.float32),
          "labels": tfds.features.Tensor(shape=(max_objects,), dtype=np.int64),
          "is_crowd": tfds.features.Tensor(shape=(max_objects,), dtype=np.bool_),
          "areas": tfds.features.Tensor(shape=(max_objects,), dtype=np.float32),
          "object_ids": tfds.features.Tensor(shape=(max_objects,), dtype=np.int64),
          "rles": tfds.features.Tensor(shape=(max_objects,), dtype=np.object_)}


class SyntheticObjects(tfds.core.GeneratorBasedBuilder):
  """Polygons of 4 classes, several per image, with visible-part boxes and masks (see ``synthetic``)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  BUILT_LOCALLY = True  # nothing to download: ``sources.builder`` prepares it on first use

  def _info(self) -> tfds.core.DatasetInfo:
    size = synthetic.IMAGE_SIZE
    return tfds.core.DatasetInfo(
        builder=self, description=synthetic.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
            **object_features(synthetic.MAX_OBJECTS)}),
        metadata=tfds.core.MetadataDict(class_names=list(CLASS_NAMES), category_ids=list(range(1, 5))))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager
    return {split: self._generate_examples(split) for split in synthetic.SPLIT_SIZES}

  def _generate_examples(self, split: str):
    for index in range(synthetic.SPLIT_SIZES[split]):
      yield index, synthetic.render_example(np.random.default_rng([synthetic.SPLIT_SEEDS[split], index]), index + 1)
