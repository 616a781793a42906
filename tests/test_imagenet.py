"""ImageNet classification end to end: tfds imagenet2012 (mocked), class folders, evaluate and predict."""

import io
import json
import os
from unittest import mock

import chex
import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from hrnet_jax import model as models
from hrnet_jax import tasks
from hrnet_jax.engine import checkpointing, config_lib, metric_writer, trainer
from hrnet_jax.engine.weights import init_from
from hrnet_jax.model import convert
from hrnet_jax.model.normalization import IMAGENET_MEAN, IMAGENET_STD
from hrnet_jax.tasks.classification import recipes

IMAGENET_RECIPE = tasks.recipes()["imagenet"]
from helpers import REPO, run_module

IMAGENET = os.path.join(REPO, "configs", "imagenet.py")
EXPECTED_SOLID = (np.array([200, 100, 50]) / 255 - IMAGENET_MEAN) / IMAGENET_STD


def encode(array: np.ndarray, image_format: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, image_format)
  return buffer.getvalue()


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_imagenet_preprocessing_shapes_and_normalisation(image_format):
  solid = np.empty((90, 120, 3), np.uint8)
  solid[:] = (200, 100, 50)
  example = {"image": tf.constant(encode(solid, image_format)), "label": tf.constant(7, tf.int64)}
  train_fn, eval_fn = recipes.imagenet(IMAGENET_RECIPE.data_config(image_size=32))
  for output in (eval_fn(example), train_fn(example, tf.constant([0, 3], tf.int64))):
    chex.assert_shape(output["image"], (32, 32, 3))
    assert output["image"].dtype == tf.float32 and int(output["label"]) == 7
    # Any crop of a solid image is that colour: (c / 255 - mean) / std, the official normalisation.
    np.testing.assert_allclose(output["image"].numpy(), np.broadcast_to(EXPECTED_SOLID, (32, 32, 3)), atol=2e-5)


def test_eval_resize_keeps_the_center():
  """Shorter side to 256 then the central 224 (torchvision Resize(256) + CenterCrop(224)), here at 1/8 scale."""
  image = np.zeros((64, 128, 3), np.uint8)
  image[:, 48:80] = 255  # a white band in the middle third of a 2:1 image
  _, eval_fn = recipes.imagenet(IMAGENET_RECIPE.data_config(image_size=28))
  output = eval_fn({"image": tf.constant(encode(image, "PNG")), "label": tf.constant(0, tf.int64)})["image"]
  # 64x128 -> 32x64 -> center 28x28 spans columns 18..46 of the band's 24..40.
  white = np.isclose(output[0, :, 0].numpy(), (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
                     atol=1e-3)
  assert white[7:21].all() and not white[:5].any() and not white[-5:].any()


@pytest.fixture
def mock_imagenet():
  """tfds imagenet2012 with fake examples (random JPEGs, random labels), no download or manual files."""
  splits = {"train": None, "validation": None}
  with tfds.testing.mock_data(num_examples=37, policy=tfds.testing.MockPolicy.USE_CODE), \
      mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True), \
      mock.patch.object(tfds.core.DatasetInfo, "splits", new_callable=mock.PropertyMock, return_value=splits):
    yield


def test_imagenet2012_trains_two_steps_and_evaluates_each_example_once_on_8_devices(mock_imagenet, tmp_path):
  config = config_lib.load(IMAGENET + ":tiny", {
      "data.name": "imagenet2012", "data.train_split": "train", "data.eval_split": "validation",
      "data.data_dir": str(tmp_path), "data.image_size": 32, "total_steps": 2, "global_batch_size": 16,
      "eval_batch_size": 16, "log_every": 1, "checkpoint_every": 2})
  config.model.overrides["num_classes"] = 1000
  assert jax.device_count() == 8

  from hrnet_jax.data import inputs as data_inputs
  inputs = data_inputs.create_input(config, start_step=0, process_index=0, process_count=1)
  assert len(inputs.class_names) == 1000 and inputs.num_train_examples == 37
  batch = next(inputs.train)
  inputs.train.close()
  chex.assert_shape(batch["image"], (16, 32, 32, 3))
  chex.assert_shape([batch["label"], batch["mask"]], [(16,), (16,)])
  bounds = [(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)], \
           [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
  assert np.all(batch["image"] >= np.array(bounds[0]) - 1e-5) and np.all(batch["image"] <= np.array(bounds[1]) + 1e-5)
  assert batch["image"].std() > 0.1 and np.all(batch["mask"] == 1)

  metrics = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert metrics["count"] == 37 and metrics["undecodable"] == 0  # 3 batches of 16 over 8 devices, 11 padding
  rows = metric_writer.read_metrics(str(tmp_path / "run"))
  assert [row["step"] for row in rows if "train/loss" in row] == [1, 2]


def write_color_folders(root, per_class, corrupt=False, seed=0):
  """Three classes told apart by their dominant colour, random sizes, JPEG and PNG; optionally a corrupt file."""
  rng = np.random.default_rng(seed)
  for label, name in enumerate(["blue", "green", "red"]):
    os.makedirs(os.path.join(root, name))
    for i in range(per_class):
      height, width = rng.integers(36, 72, size=2)
      image = rng.integers(0, 90, size=(height, width, 3))
      image[..., 2 - label] += 150
      image_format = "JPEG" if i % 2 else "PNG"
      with open(os.path.join(root, name, f"{i}.{image_format.lower()}"), "wb") as f:
        f.write(encode(image.astype(np.uint8), image_format))
  if corrupt:
    with open(os.path.join(root, "green", "broken.jpg"), "wb") as f:
      f.write(b"\xff\xd8\xff\xe0 not really a jpeg")


@pytest.fixture(scope="module")
def trained_folder_run(tmp_path_factory):
  """The README's own-data recipe: a tiny HRNet trained on class folders by the CLI."""
  root = tmp_path_factory.mktemp("folders")
  write_color_folders(str(root / "train"), per_class=32, corrupt=True, seed=0)
  write_color_folders(str(root / "val"), per_class=10, corrupt=True, seed=1)
  workdir = str(root / "run")
  result = run_module("train", f"--config={IMAGENET}:tiny,classes=3", f"--workdir={workdir}",
                      f"--config.data.data_dir={root}", "--config.data.image_size=32", "--config.total_steps=60",
                      "--config.global_batch_size=16", "--config.eval_batch_size=16")
  assert result.returncode == 0, result.stderr[-3000:]
  return root, workdir, result.stderr


def test_class_folders_train_far_above_chance_and_report_corrupt_images(trained_folder_run):
  _, workdir, log = trained_folder_run
  final = [row for row in metric_writer.read_metrics(workdir) if "eval/top1" in row][-1]
  assert final["eval/top1"] > 80.0  # chance is 33.3
  assert final["eval/count"] == 30 and final["eval/undecodable"] == 1  # the broken file: counted, not in metrics
  assert "1 eval images could not be decoded" in log
  assert "could not be decoded" in log.split("eval at step")[0]  # the training one too, as it went by


def test_wrong_class_count_is_one_clear_line(trained_folder_run, tmp_path):
  root, _, _ = trained_folder_run
  result = run_module("train", f"--config={IMAGENET}:tiny,classes=5", f"--workdir={tmp_path}",
                      f"--config.data.data_dir={root}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: the dataset has 3 classes but the model predicts 5")


def test_pytorch_weights_give_the_same_logits_through_evaluate_and_predict(trained_folder_run, tmp_path):
  root, workdir, _ = trained_folder_run
  config = config_lib.load(IMAGENET + ":tiny,classes=3", {"data.data_dir": str(root), "data.image_size": 32,
                                                          "eval_batch_size": 16})
  weights = str(tmp_path / "hrnet_tiny.npz")  # PyTorch names and layouts, as an official checkpoint
  state_dict = convert.to_state_dict(checkpointing.read_variables(workdir))
  # A trained model is so sure (loss ~1e-5) that float32 rounding would dominate a loss comparison: a smaller
  # classifier keeps the ranking and makes the loss depend on every logit.
  state_dict["classifier.weight"] = state_dict["classifier.weight"] * 1e-2
  np.savez(weights, **state_dict)

  # The reference: the model called directly on the eval-preprocessed images.
  model = tasks.create(config).create_model()
  variables = convert.load_pytorch_weights(model, weights)
  val_dir = root / "val"
  files = sorted(str(p) for p in val_dir.rglob("*") if p.suffix in (".png", ".jpeg"))
  _, eval_fn = recipes.imagenet(config.data)
  images = np.stack([eval_fn({"image": tf.constant(open(f, "rb").read()), "label": tf.constant(0, tf.int64)})["image"]
                     for f in files])
  logits = np.asarray(model.apply(variables, images))
  labels = np.array([["blue", "green", "red"].index(os.path.basename(os.path.dirname(f))) for f in files])
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  direct_loss = -np.mean(log_probs[np.arange(len(files)), labels])
  direct_top1 = 100 * np.mean(logits.argmax(-1) == labels)

  output = str(tmp_path / "metrics.json")
  common = [f"--config={IMAGENET}:tiny,classes=3", f"--config.data.data_dir={root}", "--config.data.image_size=32",
            f"--checkpoint={weights}"]
  result = run_module("evaluate", *common, "--config.eval_batch_size=16", f"--output={output}", devices=8)
  assert result.returncode == 0, result.stderr[-3000:]
  evaluated = json.load(open(output))
  assert evaluated["count"] == len(files) and evaluated["undecodable"] == 1
  assert evaluated["top1"] == pytest.approx(direct_top1)
  assert evaluated["loss"] == pytest.approx(direct_loss, rel=1e-5)

  predictions = str(tmp_path / "predictions.json")
  broken = str(val_dir / "green" / "broken.jpg")
  result = run_module("predict", *common, f"--output={predictions}", *files[:4], broken)
  assert result.returncode == 1  # one image failed; the others are still predicted and written
  written = json.load(open(predictions))
  assert list(written["errors"]) == [broken]
  for entry, row in zip(written["predictions"], logits[:4]):
    top = np.argsort(-row)[:3]
    assert [t["index"] for t in entry["top"]] == list(top)
    assert [t["name"] for t in entry["top"]] == [["blue", "green", "red"][i] for i in top]
    np.testing.assert_allclose([t["logit"] for t in entry["top"]], row[top], rtol=1e-5, atol=1e-5)
  assert f"1. {written['predictions'][0]['top'][0]['name']}" in result.stdout


def test_imagenet_backbone_initialises_another_task_and_reports_the_new_head(trained_folder_run, caplog):
  _, workdir, _ = trained_folder_run
  segmentation = models.create_model("hrnet_tiny", task="segmentation", num_classes=5)
  shapes = jax.eval_shape(segmentation.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32))
  fresh = jax.tree.map(lambda s: np.full(s.shape, 0.5, s.dtype), shapes)
  with caplog.at_level("INFO"):
    loaded = init_from(segmentation, workdir, fresh)
  classifier = checkpointing.read_variables(workdir)
  chex.assert_trees_all_equal(loaded["params"]["backbone"], classifier["params"]["backbone"])
  chex.assert_trees_all_equal(loaded["batch_stats"]["backbone"], classifier["batch_stats"]["backbone"])
  chex.assert_trees_all_equal(loaded["params"]["head"], fresh["params"]["head"])  # the new head: not loaded
  report = [r.getMessage() for r in caplog.records if "init_from" in r.getMessage()][-1]
  assert "re-initialised" in report and "last_layer." in report  # the new head, by its official names
