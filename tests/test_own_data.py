"""Your own data (issue #21): a COCO-format keypoint file of a non-human category with 5 keypoints, made here,
trains the tiny pose model by the command line, is scored by OKS AP with the config's sigmas and drawn with its
skeleton by ``predict``."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

from helpers import REPO, run_module
from hrnet_jax.data import prepare
from hrnet_jax.engine import metric_writer
from hrnet_jax.heatmaps.draw import _colours
from hrnet_jax.tasks.pose import keypoint_sets

PENTAGON = ("apex", "right_upper", "right_lower", "left_lower", "left_upper")  # clockwise from the top
SIZE = 80


def pentagon_image(rng):
  """A pentagon (apex up, turned by at most 15 degrees) on a noisy background; its vertices (x, y) and box."""
  background = rng.integers(0, 80, (SIZE, SIZE, 3), dtype=np.uint8)
  image = Image.fromarray(background)
  center, radius = rng.uniform(28, 52, 2), rng.uniform(12, 24)
  turn = rng.uniform(-15, 15)
  vertices = [(center[0] + radius * math.sin(math.radians(turn + 72 * k)),
               center[1] - radius * math.cos(math.radians(turn + 72 * k))) for k in range(5)]
  ImageDraw.Draw(image).polygon(vertices, fill=tuple(int(c) for c in rng.integers(120, 256, 3)))
  points = np.asarray(vertices)
  low, high = points.min(0), points.max(0)
  return image, points, [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]


def write_keypoint_dataset(root, counts, seed=0):
  """COCO's layout (annotations/person_keypoints_<split>2017.json, <split>2017/*.jpg) with category 7, 'pentagon'."""
  rng = np.random.default_rng(seed)
  os.makedirs(root / "annotations")
  for folder, count in counts.items():
    os.makedirs(root / folder)
    images, annotations = [], []
    for i in range(1, count + 1):
      image, points, box = pentagon_image(rng)
      image.save(root / folder / f"{i:06d}.jpg", quality=95)
      images.append({"id": i, "file_name": f"{i:06d}.jpg", "width": SIZE, "height": SIZE})
      keypoints = np.concatenate([points, np.full((5, 1), 2.0)], 1).round(2).reshape(-1).tolist()
      annotations.append({"id": 100 + i, "image_id": i, "category_id": 7, "iscrowd": 0, "bbox": box,
                          "area": box[2] * box[3], "keypoints": keypoints, "num_keypoints": 5})
    category = {"id": 7, "name": "pentagon", "keypoints": list(PENTAGON),
                "skeleton": [[1, 2], [2, 3], [3, 4], [4, 5], [5, 1]]}
    with open(root / "annotations" / f"person_keypoints_{folder}.json", "w") as f:
      json.dump({"images": images, "annotations": annotations, "categories": [category]}, f)


def test_flip_pairs_come_from_the_names():
  assert keypoint_sets.flip_pairs_by_name(PENTAGON) == ((1, 4), (2, 3))
  assert keypoint_sets.flip_pairs_by_name(keypoint_sets.COCO.names) == keypoint_sets.COCO.flip_pairs
  assert keypoint_sets.flip_pairs_by_name(("L-ear", "R-ear", "Left Wing", "Right Wing", "tail")) == ((0, 1), (2, 3))


@pytest.fixture(scope="module")
def pentagons(tmp_path_factory):
  root = tmp_path_factory.mktemp("pentagons")
  write_keypoint_dataset(root, {"train2017": 160, "val2017": 24})
  data_dir = str(tmp_path_factory.mktemp("pentagons_tfds"))
  prepare.prepare("coco_keypoints", data_dir, str(root))
  return root, data_dir


def pose_flags(root, data_dir, sigma):
  return [f"--config={REPO}/configs/coco_pose.py:tiny", "--config.data.name=coco_keypoints",
          f"--config.data.data_dir={data_dir}", "--config.data.keypoints=custom",
          "--config.data.keypoint_set.sigmas=" + ",".join([str(sigma)] * 5), "--config.model.overrides.num_keypoints=5",
          f"--config.data.annotation_file={root}/annotations/person_keypoints_val2017.json"]


def test_a_five_keypoint_coco_file_trains_evaluates_with_its_sigmas_and_predict_draws_its_skeleton(pentagons,
                                                                                                 tmp_path):
  root, data_dir = pentagons
  workdir = tmp_path / "run"
  result = run_module("train", *pose_flags(root, data_dir, 0.025), f"--workdir={workdir}", "--config.total_steps=100",
                      "--config.global_batch_size=16", "--config.eval_at_start=true")
  assert result.returncode == 0, result.stderr[-3000:]
  evals = [row for row in metric_writer.read_metrics(str(workdir)) if "eval/AP" in row]
  assert [row["step"] for row in evals] == [0, 100] and evals[0]["eval/count"] == 24
  assert evals[0]["eval/AP"] < 0.05 and evals[-1]["eval/AP"] > 0.2, [row["eval/AP"] for row in evals]

  # The same checkpoint scored with sigmas 4x wider: OKS is more lenient, AP higher (the config's sigmas count).
  wider = run_module("evaluate", *pose_flags(root, data_dir, 0.1), f"--checkpoint={workdir}",
                     f"--output={tmp_path / 'wider.json'}")
  assert wider.returncode == 0, wider.stderr[-3000:]
  assert json.loads((tmp_path / "wider.json").read_text())["AP"] > evals[-1]["eval/AP"] + 0.1

  image = root / "val2017" / "000001.jpg"
  annotation = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())["annotations"][0]
  boxes = tmp_path / "boxes.json"
  boxes.write_text(json.dumps({"000001.jpg": [annotation["bbox"]]}))
  drawn = run_module("predict", *pose_flags(root, data_dir, 0.025), f"--checkpoint={workdir}", str(image),
                     f"--boxes={boxes}", f"--output_dir={tmp_path / 'drawn'}")
  assert drawn.returncode == 0, drawn.stderr[-3000:]
  result = json.loads((tmp_path / "drawn" / "predictions.json").read_text())[0]
  assert result["category_id"] == 7  # the file's category, not COCO's person
  predicted = np.reshape(result["keypoints"], (5, 3))
  truth = np.reshape(annotation["keypoints"], (5, 3))[:, :2]
  assert np.median(np.linalg.norm(predicted[:, :2] - truth, axis=-1)) < 4.0  # pixels, in an 80-pixel image
  picture = np.asarray(Image.open(tmp_path / "drawn" / "000001.png"))
  limbs = [(a, b, colour) for (a, b), colour in zip(((0, 1), (1, 2), (2, 3), (3, 4), (4, 0)), _colours(5))
           if predicted[a, 2] > 0.2 and predicted[b, 2] > 0.2]
  assert limbs, "no limb confident enough to be drawn"
  for a, b, colour in limbs:  # the file's skeleton: each limb in its colour at its middle (a 2-pixel line)
    x, y = np.round((predicted[a, :2] + predicted[b, :2]) / 2).astype(int)
    around = picture[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3)
    assert (around == colour).all(-1).any(), (a, b, colour, around)


# ---- segmentation: a folder of images and label PNGs --------------------------------------------------------------

CLASSES = {"names": ["ground", "disk", "square"], "colours": [[0, 0, 0], [255, 0, 0], [0, 0, 255]], "ignore": 9}


def write_segmentation_folder(root, counts, seed=0):
  """images/<split>/*.jpg with label PNGs: a disk (1) ringed by unlabelled pixels (9) and a square (2) on ground (0)."""
  rng = np.random.default_rng(seed)
  for split, count in counts.items():
    os.makedirs(root / "images" / split)
    os.makedirs(root / "labels" / split)
    for i in range(count):
      image = Image.fromarray(rng.integers(0, 60, (64, 64, 3), dtype=np.uint8))
      label = Image.new("L", (64, 64), 0)
      x, y, r = (*rng.uniform(14, 50, 2), rng.uniform(6, 11))
      sx, sy, side = (*rng.uniform(4, 40, 2), rng.uniform(10, 20))
      for picture, fills in ((image, ((200, 60, 60), None, (60, 60, 220))), (label, (1, 9, 2))):
        draw = ImageDraw.Draw(picture)
        draw.rectangle([sx, sy, sx + side, sy + side], fill=fills[2])
        if fills[1] is not None:
          draw.ellipse([x - r - 2, y - r - 2, x + r + 2, y + r + 2], fill=fills[1])
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fills[0])
      image.save(root / "images" / split / f"{i:04d}.jpg", quality=95)
      label.save(root / "labels" / split / f"{i:04d}.png")
  (root / "classes.json").write_text(json.dumps(CLASSES))


def segmentation_flags(root, data_dir, classes=3):
  return [f"--config={REPO}/configs/cityscapes.py:tiny", "--config.data.name=semantic_segmentation/folder",
          f"--config.data.data_dir={data_dir}", f"--config.data.manual_dir={root}", "--config.data.labels=dataset",
          f"--config.model.overrides.num_classes={classes}"]


def test_a_three_class_image_and_mask_folder_trains_evaluates_and_predict_colours_its_classes(tmp_path):
  root = tmp_path / "shapes"
  write_segmentation_folder(root, {"train": 96, "val": 16})
  data_dir = str(tmp_path / "tfds")
  builder = prepare.prepare("semantic_segmentation/folder", data_dir, str(root))
  assert builder.info.metadata["class_names"] == CLASSES["names"]
  label = next(iter(builder.as_data_source("validation")))["label"][..., 0]
  assert set(np.unique(label).tolist()) == {0, 1, 2, 255}  # the file's ignore value 9 is stored as 255

  wrong = run_module("train", *segmentation_flags(root, data_dir, classes=4), f"--workdir={tmp_path / 'wrong'}")
  assert wrong.returncode == 2 and wrong.stderr.strip().splitlines()[-1] == (
      "error: the model predicts 4 classes but label set 'dataset' has 3; set model.overrides.num_classes to match")

  workdir = tmp_path / "run"
  result = run_module("train", *segmentation_flags(root, data_dir), f"--workdir={workdir}", "--config.total_steps=60",
                      "--config.global_batch_size=16", "--config.eval_at_start=true")
  assert result.returncode == 0, result.stderr[-3000:]
  evals = [row for row in metric_writer.read_metrics(str(workdir)) if "eval/miou" in row]
  assert [row["step"] for row in evals] == [0, 60] and set(evals[-1]) >= {f"eval/iou/{n}" for n in CLASSES["names"]}
  # Measured: 2.2 at step 0, 27.3 at step 60 (ground 49, disk 26, square 7).
  assert evals[0]["eval/miou"] < 10 and evals[-1]["eval/miou"] > 20, [row["eval/miou"] for row in evals]

  image = root / "images" / "val" / "0000.jpg"
  drawn = run_module("predict", *segmentation_flags(root, data_dir), f"--checkpoint={workdir}", str(image),
                     f"--output_dir={tmp_path / 'drawn'}")
  assert drawn.returncode == 0, drawn.stderr[-3000:]
  predicted = np.asarray(Image.open(tmp_path / "drawn" / "0000_labels.png"))
  coloured = np.asarray(Image.open(tmp_path / "drawn" / "0000_color.png").convert("RGB"))
  np.testing.assert_array_equal(coloured, np.asarray(CLASSES["colours"])[predicted])  # classes.json's colours


# ---- landmarks: your own COCO-style landmark file ------------------------------------------------------------------


def write_landmark_file(root, counts, seed=1):
  """images/*.jpg and annotations/face_landmarks_custom_<split>.json (MMPose's COCO-style layout, no center/scale:
  they come from the landmarks), the pentagons' 5 vertices as landmarks."""
  rng = np.random.default_rng(seed)
  os.makedirs(root / "images")
  os.makedirs(root / "annotations")
  for split, count in counts.items():
    images, annotations = [], []
    for i in range(count):
      image, points, _ = pentagon_image(rng)
      name = f"{split}_{i:04d}.jpg"
      image.save(root / "images" / name, quality=95)
      images.append({"id": i, "file_name": name})
      annotations.append({"id": i, "image_id": i,
                          "keypoints": np.concatenate([points, np.ones((5, 1))], 1).reshape(-1).tolist()})
    (root / "annotations" / f"face_landmarks_custom_{split}.json").write_text(
        json.dumps({"images": images, "annotations": annotations}))


def landmark_flags(root, data_dir):
  return [f"--config={REPO}/configs/face_landmarks.py:tiny", "--config.data.name=face_landmarks/custom",
          f"--config.data.data_dir={data_dir}", f"--config.data.manual_dir={root}", "--config.data.eval_split=test",
          "--config.data.keypoints=custom", "--config.data.landmark_set.flip_pairs=((1, 4), (2, 3))",
          "--config.data.landmark_set.nme_pair=1,4", "--config.model.overrides.num_landmarks=5"]


def test_a_custom_landmark_file_trains_with_its_flip_pairs_and_nme_pair_and_predict_draws_it(tmp_path):
  root = tmp_path / "faces"
  write_landmark_file(root, {"train": 160, "test": 24})
  data_dir = str(tmp_path / "tfds")
  assert prepare.prepare("face_landmarks/custom", data_dir, str(root)).info.metadata["landmark_count"] == 5
  workdir = tmp_path / "run"
  result = run_module("train", *landmark_flags(root, data_dir), f"--workdir={workdir}", "--config.total_steps=100",
                      "--config.global_batch_size=16", "--config.eval_at_start=true")
  assert result.returncode == 0, result.stderr[-3000:]
  evals = [row for row in metric_writer.read_metrics(str(workdir)) if "eval/nme" in row]
  assert [row["step"] for row in evals] == [0, 100] and evals[0]["eval/count"] == 24
  assert evals[-1]["eval/nme"] < evals[0]["eval/nme"] / 2, [row["eval/nme"] for row in evals]

  faces = tmp_path / "faces.json"
  faces.write_text(json.dumps({"test_0000.jpg": [[10, 10, 60, 60]]}))
  drawn = run_module("predict", *landmark_flags(root, data_dir), f"--checkpoint={workdir}",
                     str(root / "images" / "test_0000.jpg"), f"--boxes={faces}", f"--output_dir={tmp_path / 'drawn'}")
  assert drawn.returncode == 0, drawn.stderr[-3000:]
  predictions = json.loads((tmp_path / "drawn" / "predictions.json").read_text())
  assert len(predictions) == 1 and len(predictions[0]["keypoints"]) == 5 * 3
  assert Image.open(tmp_path / "drawn" / "test_0000.png").size == (SIZE, SIZE)
