"""Build a dataset once from its official files (what ``tfds build`` does, without needing Apache Beam):

    python -m hrnet_jax.data.prepare coco_keypoints --manual_dir /data/coco --data_dir $TFDS_DATA_DIR
    python -m hrnet_jax.data.prepare imagenet2012 --manual_dir /data/imagenet_tars --data_dir $TFDS_DATA_DIR

Writes ArrayRecord files (the random-access format the pipelines read) into ``data_dir``. The README shows each
dataset's manual-directory layout.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds
from absl import app, flags, logging

from hrnet_jax import cli, tasks
from hrnet_jax.data import sources

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where prepared datasets live (default $TFDS_DATA_DIR or "
                                "~/tensorflow_datasets).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "The folder holding the official files.")


def prepare(name: str, data_dir: str, manual_dir: str | None) -> tfds.core.DatasetBuilder:
  """Builds ``name`` into ``data_dir`` (a no-op when it is already there) and returns the builder."""
  if manual_dir is not None and not os.path.isdir(manual_dir):
    raise FileNotFoundError(f"manual directory {manual_dir} does not exist")
  tasks.builder_class(name)  # registers a task's own builder with tfds
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"unknown dataset {name!r} (this package's builders: {', '.join(tasks.dataset_names())}, "
                     f"any tfds dataset): {cli.one_line(e)}") from None
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  builder.download_and_prepare(download_config=download_config)
  for split, info in builder.info.splits.items():
    logging.info("%s %s: %d examples", name, split, info.num_examples)
  return builder


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("give one dataset name, e.g. coco_keypoints")
  data_dir = _DATA_DIR.value or sources.default_data_dir()
  builder = prepare(argv[1], data_dir, _MANUAL_DIR.value)
  print(f"prepared {argv[1]} in {builder.data_dir}")


if __name__ == "__main__":
  cli.run(main)
