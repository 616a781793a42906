"""Facial landmarks (issue #7): the builders on the four real fixtures, crops and targets, flips, NME against
hand-computed values and the official decoding, and training end to end."""

import csv
import io
import json
import math
import os

import chex
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from conftest import shared_path
from hrnet_jax import tasks
from hrnet_jax.data import prepare, sources
from hrnet_jax.engine import config_lib, metric_writer, trainer
from hrnet_jax.heatmaps import geometry
from hrnet_jax.tasks.landmarks import builder as face_landmarks
from hrnet_jax.tasks.landmarks import recipes
from hrnet_jax.tasks.landmarks.landmark_sets import LANDMARK_SETS
from hrnet_jax.tasks.landmarks.task import landmarks_to_image, nme_metrics, normalised_error

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "face_landmarks.py")
FIXTURES = {"wflw": (98, 4), "300w": (68, 2), "cofw": (29, 2), "aflw": (19, 2)}  # landmarks, faces
SPLIT = {"wflw": "test", "300w": "valid", "cofw": "test", "aflw": "test"}


def _fixture(dataset):
  folder = shared_path("data", dataset)
  with open(folder / f"test_{dataset}.json") as f:
    return folder, json.load(f)


@pytest.fixture(scope="module")
def face_data_dir(tmp_path_factory):
  """Each fixture laid out as MMPose's download (annotations/<prefix>_<split>.json, images/), then prepared."""
  data_dir = str(tmp_path_factory.mktemp("faces_tfds"))
  for dataset in FIXTURES:
    folder, _ = _fixture(dataset)
    manual = tmp_path_factory.mktemp(f"{dataset}_manual")
    (manual / "annotations").mkdir()
    (manual / "images").mkdir()
    prefix = face_landmarks.DATASETS[dataset][1]
    (manual / "annotations" / f"{prefix}_{SPLIT[dataset]}.json").symlink_to(folder / f"test_{dataset}.json")
    for image in folder.iterdir():
      if image.suffix in (".jpg", ".png"):
        (manual / "images" / image.name).symlink_to(image)
    prepare.prepare(f"face_landmarks/{dataset}", data_dir, str(manual))
  return data_dir


@pytest.mark.parametrize("dataset", list(FIXTURES))
def test_builder_yields_every_fixture_face_with_its_landmarks(face_data_dir, dataset):
  count, faces = FIXTURES[dataset]
  source, _ = sources.open_source(f"face_landmarks/{dataset}", SPLIT[dataset], face_data_dir)
  _, annotations = _fixture(dataset)
  assert len(source) == faces == len(annotations["annotations"])
  for record, annotation in zip(source, annotations["annotations"]):
    chex.assert_shape(record["landmarks"], (count, 2))
    np.testing.assert_allclose(record["landmarks"], np.reshape(annotation["keypoints"], (-1, 3))[:, :2], rtol=1e-6)
    if "center" in annotation:
      np.testing.assert_allclose(record["center"], annotation["center"])
      np.testing.assert_allclose(record["scale"], annotation["scale"], rtol=1e-6)
    else:  # COFW: the official loader's box from the landmarks
      points = np.reshape(annotation["keypoints"], (-1, 3))[:, :2]
      xmin, ymin = points.min(0)
      xmax, ymax = points.max(0)
      np.testing.assert_allclose(record["center"], [(math.floor(xmin) + math.ceil(xmax)) / 2,
                                                    (math.floor(ymin) + math.ceil(ymax)) / 2])
      np.testing.assert_allclose(record["scale"], max(math.ceil(xmax) - math.floor(xmin),
                                                      math.ceil(ymax) - math.floor(ymin)) / 200, rtol=1e-6)
    expected_box = annotation.get("box_size", 200 * record["scale"])
    np.testing.assert_allclose(record["box_size"], expected_box, rtol=1e-6)


def test_official_csv_rows_read_as_the_json(tmp_path):
  """The official HRNet CSV layout (image, scale, [box_size], center_w, center_h, x0, y0, ...) gives the same faces."""
  for dataset in ("300w", "aflw"):
    folder, annotations = _fixture(dataset)
    path = tmp_path / f"{dataset}.csv"
    files = {image["id"]: image["file_name"] for image in annotations["images"]}
    with open(path, "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["image_name", "scale", "center_w", "center_h", "..."])
      for a in annotations["annotations"]:
        box = [a["box_size"]] if dataset == "aflw" else []
        writer.writerow([files[a["image_id"]], a["scale"], *box, *a["center"],
                         *np.reshape(a["keypoints"], (-1, 3))[:, :2].reshape(-1)])
    count = FIXTURES[dataset][0]
    from_csv = face_landmarks.read_csv(str(path), count)
    from_json = face_landmarks.read_json(str(folder / f"test_{dataset}.json"), count)
    for a, b in zip(from_csv, from_json):
      assert a["image"] == b["image"]
      for key in ("landmarks", "center", "scale", "box_size"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5)


def _peak(heatmap):
  y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
  return np.array([x, y], np.float64)


@pytest.mark.parametrize("dataset", list(FIXTURES))
def test_heatmap_peaks_and_pixels_follow_the_landmarks_and_flips_swap_pairs(face_data_dir, dataset):
  spec = LANDMARK_SETS[dataset]
  config = tasks.recipes()["face_landmarks"].data_config(input_size=256, sigma=1.5, rotation_prob=1.0)
  crop = recipes.FaceCrop(config, spec)
  source, _ = sources.open_source(f"face_landmarks/{dataset}", SPLIT[dataset], face_data_dir)
  mark, partner = spec.flip_pairs[0]
  flips, checked = set(), 0
  for index, record in enumerate(source):
    example = {key: tf.constant(value) for key, value in record.items()}
    width, height = Image.open(io.BytesIO(record["image"])).size
    dot = Image.new("RGB", (width, height))  # one white dot on landmark ``mark``
    x, y = record["landmarks"][mark]
    radius = max(2.0, record["scale"] * 200 / 64)  # ~4 input pixels whatever the face size
    ImageDraw.Draw(dot).ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 255, 255))
    encoded = io.BytesIO()
    dot.save(encoded, format="PNG")
    dotted = {**example, "image": tf.constant(encoded.getvalue())}
    for draw in range(4):
      seed = tf.constant([index, draw], tf.int64)
      _, image, points, labelled, center, scale = crop.read(example)
      matrix, points, labelled, flipped = crop.train_transform(tf.shape(image)[1], points, labelled, center, scale,
                                                               seed)
      out = crop.train(dotted, seed)
      chex.assert_shape(out["target"], (64, 64, spec.count))
      moved = geometry.transform_points(points, matrix).numpy() / 4
      inside = np.all((moved >= 0) & (moved <= 63), axis=-1)
      for k in np.flatnonzero(inside):
        assert np.abs(_peak(out["target"][..., k].numpy()) - moved[k]).max() <= 1.0, (dataset, index, k)
      flips.add(bool(flipped))
      channel = partner if bool(flipped) else mark
      bright = np.argwhere(out["image"].numpy().mean(-1) > 100)
      if inside[channel] and len(bright):
        # The official targets truncate the position (up to 1 heatmap pixel); the drawn dot's own centroid is
        # within a quarter of one.
        assert np.abs(_peak(out["target"][..., channel].numpy()) - bright.mean(0)[::-1] / 4).max() <= 1.25
        checked += 1
  assert checked >= 4 and (flips == {False, True} or len(source) * 4 < 8)


def _official_decode(heatmaps, center, scale):
  """HRNet-Facial-Landmark-Detection's decode_preds + transform_preds (rotation 0), written out in NumPy."""
  batch, count, height, width = heatmaps.shape
  flat = heatmaps.reshape(batch, count, -1)
  index = flat.argmax(-1) + 1
  maxval = flat.max(-1)
  coords = np.stack([(index - 1) % width + 1, np.floor((index - 1) / width) + 1], -1).astype(np.float64)
  coords *= (maxval > 0)[..., None]
  for n in range(batch):
    for p in range(count):
      hm = heatmaps[n, p]
      px, py = int(math.floor(coords[n, p, 0])), int(math.floor(coords[n, p, 1]))
      if 1 < px < width and 1 < py < height:
        diff = np.array([hm[py - 1][px] - hm[py - 1][px - 2], hm[py][px - 1] - hm[py - 2][px - 1]])
        coords[n, p] += np.sign(diff) * 0.25
  coords += 0.5
  preds = np.zeros_like(coords)
  for n in range(batch):
    h = 200 * scale[n]
    t = np.array([[width / h, 0, width * (-center[n, 0] / h + 0.5)],
                  [0, height / h, height * (-center[n, 1] / h + 0.5)], [0, 0, 1]])
    inverse = np.linalg.inv(t)
    for p in range(count):
      point = inverse @ np.array([coords[n, p, 0] - 1, coords[n, p, 1] - 1, 1.0])
      preds[n, p] = point[:2].astype(int) + 1
  return preds


def test_decoding_equals_the_official_decode_preds():
  rng = np.random.default_rng(0)
  heatmaps = rng.normal(size=(3, 5, 64, 64)).astype(np.float32)
  heatmaps[0, 0, 0, 5] = 50.0  # a peak on the top edge: no quarter step in y
  heatmaps[1, 1] = -1.0  # no positive peak
  center = np.array([[120.5, 88.0], [400.0, 310.5], [60.0, 70.0]])
  scale = np.array([0.9, 2.3, 0.4]) * 1.25
  ours = landmarks_to_image(jnp.asarray(heatmaps.transpose(0, 2, 3, 1)), jnp.asarray(center),
                            jnp.asarray(np.stack([scale, scale], -1)))
  np.testing.assert_array_equal(np.asarray(ours), _official_decode(heatmaps, center, scale))


@pytest.mark.parametrize("dataset", list(FIXTURES))
def test_nme_equals_the_hand_computed_value_for_each_normalisation(dataset):
  _, annotations = _fixture(dataset)
  spec = LANDMARK_SETS[dataset]
  truth = np.array([np.reshape(a["keypoints"], (-1, 3))[:, :2] for a in annotations["annotations"]])
  shift = np.array([3.0, 4.0])  # every landmark 5 pixels off
  if dataset == "aflw":  # normalised by the box size
    norm = np.array([a["box_size"] for a in annotations["annotations"]])
  else:  # by the outer eye corners: WFLW 60/72, 300W 36/45, COFW 8/9 (0-based)
    a, b = {"wflw": (60, 72), "300w": (36, 45), "cofw": (8, 9)}[dataset]
    norm = np.hypot(*(truth[:, a] - truth[:, b]).T)
  box_size = np.array([a.get("box_size", 0.0) for a in annotations["annotations"]])
  nme = normalised_error(jnp.asarray(truth + shift), jnp.asarray(truth), jnp.ones(truth.shape[:2]),
                         jnp.asarray(box_size), spec)
  np.testing.assert_allclose(np.asarray(nme), 5.0 / norm, rtol=1e-6)


def test_failure_rate_and_auc():
  metrics = nme_metrics(np.array([0.02, 0.05, 0.09, 0.2]))
  assert metrics["nme"] == pytest.approx(9.0)
  assert metrics["failure_010"] == 25.0 and metrics["failure_008"] == 50.0
  # AUC: integral over [0, 0.1] of the fraction below each error = (0.08 + 0.05 + 0.01) / 4 / 0.1
  assert metrics["auc_010"] == pytest.approx(35.0, abs=0.1)


@pytest.fixture(scope="module")
def trained_landmark_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("faces_tiny"))
  config = config_lib.load(CONFIG + ":tiny", {
      "data.data_dir": data_dir, "data.eval_split": "validation[:256]", "total_steps": 100, "eval_at_start": True,
      "eval_batch_size": 256, "log_every": 50, "checkpoint_every": 100, "num_devices": 1})
  return config, workdir, trainer.train_and_evaluate(config, workdir)


def test_tiny_landmark_config_trains_and_nme_falls_far(trained_landmark_run):
  _, workdir, final = trained_landmark_run
  evals = [m for m in metric_writer.read_metrics(workdir) if "eval/nme" in m]
  initial = evals[0]["eval/nme"]
  assert evals[0]["step"] == 0 and initial > 30
  assert final["nme"] < initial / 3, (initial, final["nme"])


def test_predict_draws_landmarks_on_a_face(trained_landmark_run, tmp_path):
  """The tiny run's model on a real face (the output's shape and files, not its accuracy)."""
  from hrnet_jax.heatmaps.predict import keypoints_in_boxes
  config, workdir, _ = trained_landmark_run
  folder, annotations = _fixture("300w")
  image = str(folder / annotations["images"][0]["file_name"])
  boxes = {os.path.basename(image): [[100, 100, 200, 220]]}
  results, errors = keypoints_in_boxes(config, workdir, [image], boxes, str(tmp_path / "drawn"))
  assert not errors and len(results) == 1 and len(results[0]["keypoints"]) == 6 * 3
  assert Image.open(tmp_path / "drawn" / (os.path.splitext(os.path.basename(image))[0] + ".png")).size == (
      annotations["images"][0]["width"], annotations["images"][0]["height"])


def test_official_cofw_mat_file_reads_as_the_json(tmp_path):
  """COFW's official file layout (MATLAB v7.3: HDF5, column-major, a cell of images, rows of 29 x, 29 y and 29
  occlusion flags), written from the fixture, builds the same faces and pixels as MMPose's JSON."""
  import h5py
  folder, annotations = _fixture("cofw")
  files = {image["id"]: image["file_name"] for image in annotations["images"]}
  images = [np.asarray(Image.open(folder / files[a["image_id"]]).convert("RGB")) for a in annotations["annotations"]]
  points = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in annotations["annotations"]])
  rows = np.concatenate([points[..., 0], points[..., 1], np.zeros(points.shape[:2])], axis=1)  # N x 87
  manual = tmp_path / "manual"
  manual.mkdir()
  with h5py.File(manual / "COFW_test_color.mat", "w") as f:
    references = [f.create_dataset(f"#refs#/{i}", data=image.T).ref for i, image in enumerate(images)]
    f.create_dataset("IsT", data=np.array(references, dtype=h5py.ref_dtype).reshape(1, -1))
    f.create_dataset("phisT", data=rows.T)
  data_dir = str(tmp_path / "tfds")
  prepare.prepare("face_landmarks/cofw", data_dir, str(manual))
  source, _ = sources.open_source("face_landmarks/cofw", "test", data_dir)
  from_json = face_landmarks.read_json(str(folder / "test_cofw.json"), 29)
  assert len(source) == len(from_json) == 2
  for record, face, image in zip(source, from_json, images):
    np.testing.assert_allclose(record["landmarks"], face["landmarks"], rtol=1e-6)
    np.testing.assert_allclose(record["center"], face["center"])
    np.testing.assert_allclose(record["scale"], face["scale"], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(record["image"]))), image)
