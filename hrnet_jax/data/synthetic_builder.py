"""The synthetic shapes (``synthetic.render_example``) as a tfds dataset, built locally on first use."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax.data import synthetic
from hrnet_jax.data.synthetic import CLASS_NAMES, IMAGE_SIZE, MAX_VERTICES, SPLIT_SEEDS, SPLIT_SIZES, render_example


class SyntheticShapes(tfds.core.GeneratorBasedBuilder):
  """Polygons on textures, with class, mask, keypoint and box labels (see ``synthetic``)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}
  BUILT_LOCALLY = True  # nothing to download: ``sources.builder`` prepares it on first use

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=synthetic.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), encoding_format="png"),
            "mask": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), encoding_format="png"),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "keypoints": tfds.features.Tensor(shape=(MAX_VERTICES, 3), dtype=np.float32),
            "bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in SPLIT_SIZES}

  def _generate_examples(self, split: str):
    for index in range(SPLIT_SIZES[split]):
      yield index, render_example(np.random.default_rng([SPLIT_SEEDS[split], index]))

