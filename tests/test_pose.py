"""COCO pose (issue #5): the builder on the real fixture, the top-down warp and targets, the official evaluation,
training end to end, predict and the drawing code."""

import io
import json
import os

import chex
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import shared_path
from helpers import tensorboard_contents
from hrnet_jax import tasks
from hrnet_jax.data import prepare, sources
from hrnet_jax.engine import config_lib, trainer
from hrnet_jax.heatmaps import codec, geometry
from hrnet_jax.heatmaps.draw import draw_keypoints
from hrnet_jax.heatmaps.predict import keypoints_in_boxes
from hrnet_jax.tasks.pose import coco_eval, keypoint_sets, recipes
from hrnet_jax.tasks.pose.detections import DetectionSource

POSE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "coco_pose.py")


@pytest.fixture(scope="module")
def fixture_json():
  with open(shared_path("data", "coco", "test_coco.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def coco_data_dir(tmp_path_factory):
  """The fixture laid out as the official download, built with our prepare command."""
  fixture = shared_path("data", "coco")
  manual = tmp_path_factory.mktemp("coco_manual")
  (manual / "annotations").mkdir()
  (manual / "val2017").mkdir()
  (manual / "annotations" / "person_keypoints_val2017.json").symlink_to(fixture / "test_coco.json")
  for image in fixture.glob("*.jpg"):
    (manual / "val2017" / image.name).symlink_to(image)
  data_dir = str(tmp_path_factory.mktemp("coco_tfds"))
  prepare.prepare("coco_keypoints", data_dir, str(manual))
  return data_dir, manual


def _tf_example(record):
  return {key: tf.constant(value) for key, value in record.items()}


# ---- must show 1: the builder ------------------------------------------------------------------------------


def test_builder_yields_every_fixture_instance_with_its_box_and_keypoints(coco_data_dir, fixture_json):
  source, _ = sources.open_source("coco_keypoints", "validation", coco_data_dir[0])
  assert len(source) == 14 == len(fixture_json["annotations"])
  images = {image["id"]: image for image in fixture_json["images"]}
  by_id = {record["instance_id"]: record for record in source}
  for annotation in fixture_json["annotations"]:
    record = by_id[annotation["id"]]
    image = images[annotation["image_id"]]
    x, y, w, h = annotation["bbox"]
    x1, y1 = max(0, x), max(0, y)  # the official clean box, written out
    expected_box = [x1, y1, min(image["width"] - 1, x1 + max(0, w - 1)) - x1,
                    min(image["height"] - 1, y1 + max(0, h - 1)) - y1]
    np.testing.assert_allclose(record["bbox"], expected_box, rtol=1e-6)
    np.testing.assert_array_equal(record["keypoints"], np.reshape(annotation["keypoints"], (17, 3)))
    assert record["image_id"] == annotation["image_id"]
    assert record["num_keypoints"] == annotation["num_keypoints"]
    np.testing.assert_allclose(record["area"], annotation["area"], rtol=1e-6)
    assert Image.open(io.BytesIO(record["image"])).size == (image["width"], image["height"])
  # The official sets leave out the two instances without labelled keypoints.
  labelled, _ = sources.open_source("coco_keypoints", "validation", coco_data_dir[0], labelled_only=True)
  assert len(labelled) == 12 and all(record["keypoints"].any() for record in labelled)


def test_detection_source_reads_the_official_box_file(coco_data_dir):
  fixture = shared_path("data", "coco")
  source = DetectionSource(str(fixture / "test_coco_det_AP_H_56.json"), str(coco_data_dir[1] / "val2017"))
  with open(fixture / "test_coco_det_AP_H_56.json") as f:
    assert len(source) == len(json.load(f)) == 118
  record = source[0]
  assert record["image_id"] == 785 and 0 < record["score"] <= 1 and record["bbox"].shape == (4,)
  with pytest.raises(FileNotFoundError, match="detections file"):
    DetectionSource(str(fixture / "missing.json"), str(fixture))


# ---- must show 2: warp, targets, flip ----------------------------------------------------------------------


def _official_affine(center, scale, rotation, output_size):
  """deep-high-resolution-net.pytorch's get_affine_transform (shift 0), solved from its three point pairs."""
  src_w, (dst_w, dst_h) = scale[0] * 200, output_size
  angle = np.pi * rotation / 180
  src_dir = np.array([0.5 * src_w * np.sin(angle), -0.5 * src_w * np.cos(angle)])  # get_dir([0, -src_w / 2])
  dst_dir = np.array([0, -0.5 * dst_w])
  src = np.array([center, center + src_dir, [0, 0]], np.float64)
  dst = np.array([[dst_w * 0.5, dst_h * 0.5], [dst_w * 0.5, dst_h * 0.5] + dst_dir, [0, 0]], np.float64)
  for points in (src, dst):  # the third point: the second rotated by 90 degrees about the first
    direction = points[0] - points[1]
    points[2] = points[1] + np.array([-direction[1], direction[0]])
  solution = np.linalg.solve(np.hstack([src, np.ones((3, 1))]), dst)  # [x y 1] @ solution = dst
  return solution.T


@pytest.mark.parametrize("rotation", [0.0, 30.0, -75.0])
def test_affine_matrix_is_the_official_three_point_transform(rotation):
  center, scale = np.array([312.5, 201.25]), np.array([1.4, 1.8666])
  ours = geometry.affine_matrix(tf.constant(center, tf.float32), tf.constant(scale, tf.float32), rotation, (192, 256))
  np.testing.assert_allclose(ours.numpy(), _official_affine(center, scale, rotation, (192, 256)), atol=1e-3)


def _peak(heatmap):
  y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
  return np.array([x, y], np.float64)


def test_heatmap_peaks_and_image_content_follow_the_keypoints_under_rotation_scale_and_flip(coco_data_dir):
  """On the real fixture with rotation always on: each labelled keypoint's target peak is within one heatmap pixel
  of the keypoint moved by the sampled transform, and the warped image shows that keypoint's content there (a
  dot painted at one wrist), so flips swap left and right consistently in targets and pixels."""
  config = tasks.recipes()["topdown_pose"].data_config(input_size=(256, 192), sigma=2.0, rotation_prob=1.0,
                                                       half_body_prob=0.3)
  pipeline = recipes.TopDown(config, keypoint_sets.COCO)
  source, _ = sources.open_source("coco_keypoints", "validation", coco_data_dir[0], labelled_only=True)
  flips, checked = set(), 0
  for index in range(len(source)):
    record = source[index]
    example = _tf_example(record)
    wrist = 9 if record["keypoints"][9, 2] > 0 else 10
    if record["keypoints"][wrist, 2] == 0:
      continue
    # The same instance on a black image with one white dot on the wrist.
    width, height = Image.open(io.BytesIO(record["image"])).size
    dot = Image.new("RGB", (width, height))
    x, y = record["keypoints"][wrist, :2]
    ImageDraw.Draw(dot).ellipse([x - 6, y - 6, x + 6, y + 6], fill=(255, 255, 255))
    encoded = io.BytesIO()
    dot.save(encoded, format="PNG")
    dotted = {**example, "image": tf.constant(encoded.getvalue())}
    for seed in range(3):
      seed = tf.constant([index, seed], tf.int64)
      _, image, joints, visible = pipeline.read(example)
      matrix, joints, visible, flipped = pipeline.train_transform(tf.shape(image)[1], example["bbox"], joints,
                                                                  visible, seed)
      out = pipeline.train(dotted, seed)
      chex.assert_shape(out["target"], (64, 48, 17))
      moved = geometry.transform_points(joints, matrix).numpy() / 4  # input pixels -> heatmap pixels
      weight = out["target_weight"].numpy()
      inside = np.all((moved >= 0) & (moved <= [47, 63]), axis=-1)  # a window cut by the border peaks at the border
      for k in np.flatnonzero(weight * inside):
        assert np.abs(_peak(out["target"][..., k].numpy()) - moved[k]).max() <= 1.0, (index, k)
      flips.add(bool(flipped))
      # The dot's pixels, and the target of the wrist it became (the other wrist when flipped).
      channel = keypoint_sets.COCO.flip_permutation()[wrist] if bool(flipped) else wrist
      bright = np.argwhere(out["image"].numpy().mean(-1) > 128)
      if weight[channel] and inside[channel] and len(bright):
        dot_center = bright.mean(0)[::-1] / 4
        assert np.abs(_peak(out["target"][..., channel].numpy()) - dot_center).max() <= 1.0
        checked += 1
  assert flips == {False, True} and checked >= 20


def test_flip_heatmaps_mirrors_swaps_and_shifts():
  heatmaps = np.random.default_rng(0).normal(size=(2, 8, 6, 17)).astype(np.float32)
  flipped = np.asarray(codec.flip_heatmaps(jnp.asarray(heatmaps), keypoint_sets.COCO, shift=False))
  np.testing.assert_array_equal(flipped[..., 5], heatmaps[:, :, ::-1, 6])  # left shoulder <- right shoulder
  np.testing.assert_array_equal(flipped[..., 0], heatmaps[:, :, ::-1, 0])  # the nose stays
  shifted = np.asarray(codec.flip_heatmaps(jnp.asarray(heatmaps), keypoint_sets.COCO))
  np.testing.assert_array_equal(shifted[:, :, 1:], flipped[:, :, :-1])


def test_heatmap_maxima_take_the_official_quarter_pixel_step():
  heatmaps = np.zeros((1, 8, 8, 2), np.float32)
  heatmaps[0, 4, 3, 0], heatmaps[0, 4, 4, 0], heatmaps[0, 5, 3, 0] = 1.0, 0.5, 0.25  # peak (3, 4), right and down
  heatmaps[0, 0, 7, 1] = 1.0  # on the border: no step
  coords, maxvals = codec.heatmap_maxima(jnp.asarray(heatmaps))
  np.testing.assert_allclose(np.asarray(coords[0]), [[3.25, 4.25], [7.0, 0.0]])
  np.testing.assert_allclose(np.asarray(maxvals[0]), [1.0, 1.0])


# ---- must show 3: the evaluation -----------------------------------------------------------------------------


def _fixture_predictions(fixture_json, noise=0.0, seed=0):
  people = [a for a in fixture_json["annotations"] if a["num_keypoints"] > 0]
  points = np.array([np.reshape(a["keypoints"], (17, 3)) for a in people], np.float64)
  rng = np.random.default_rng(seed)
  points[..., :2] += noise * rng.normal(size=points[..., :2].shape) * np.sqrt([[a["area"]] for a in people])[..., None]
  points[..., 2] = rng.uniform(0.3, 1.0, size=points.shape[:2]) if noise else 1.0
  boxes = np.array([a["bbox"] for a in people])
  return (points, np.ones(len(people)), boxes[:, 2] * boxes[:, 3], np.array([a["image_id"] for a in people]))


def test_ground_truth_keypoints_score_ap_one_on_the_fixture(fixture_json):
  gt = COCO(str(shared_path("data", "coco", "test_coco.json")))
  results = coco_eval.coco_results(*_fixture_predictions(fixture_json), keypoint_sets.COCO.sigmas)
  stats = coco_eval.evaluate(gt, results, keypoint_sets.COCO.sigmas)
  assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def test_perturbed_predictions_score_as_pycocotools_directly(fixture_json, tmp_path):
  annotation_file = str(shared_path("data", "coco", "test_coco.json"))
  results = coco_eval.coco_results(*_fixture_predictions(fixture_json, noise=0.05), keypoint_sets.COCO.sigmas)
  ours = coco_eval.evaluate(COCO(annotation_file), results, keypoint_sets.COCO.sigmas)
  assert 0.05 < ours["AP"] < 0.95
  path = tmp_path / "results.json"
  path.write_text(json.dumps(results))
  gt = COCO(annotation_file)
  direct = COCOeval(gt, gt.loadRes(str(path)), "keypoints")
  direct.params.useSegm = None
  direct.evaluate()
  direct.accumulate()
  direct.summarize()
  np.testing.assert_allclose([ours[name] for name in coco_eval.STAT_NAMES], direct.stats, rtol=0, atol=1e-12)


def test_oks_nms_removes_a_lower_scored_duplicate_and_keeps_the_ap(fixture_json):
  points, scores, areas, image_ids = _fixture_predictions(fixture_json)
  duplicated = (np.concatenate([points, points[:1] + 0.5]), np.concatenate([scores, [0.5]]),
                np.concatenate([areas, areas[:1]]), np.concatenate([image_ids, image_ids[:1]]))
  results = coco_eval.coco_results(*duplicated, keypoint_sets.COCO.sigmas)
  assert len(results) == len(points)
  gt = COCO(str(shared_path("data", "coco", "test_coco.json")))
  assert coco_eval.evaluate(gt, results, keypoint_sets.COCO.sigmas)["AP"] == pytest.approx(1.0)


def test_the_pose_task_evaluates_the_fixture_through_the_pipeline(coco_data_dir):
  """Targets made by the eval pipeline, decoded by the task as if predicted: every keypoint comes back to its
  image position (to the heatmap's 4-pixel grid), and the task's COCOeval on the official file scores it high."""
  annotation_file = str(shared_path("data", "coco", "test_coco.json"))
  config = config_lib.load(POSE + ":w32_256x192,boxes=gt", {"data.data_dir": coco_data_dir[0],
                                                            "data.annotation_file": annotation_file})
  from hrnet_jax.data import inputs as data_inputs
  task = tasks.create(config)
  inputs = data_inputs.create_eval_input(config, process_index=0, process_count=1, eval_source=task.eval_source())
  batch = next(inputs.make_eval())
  batch = {key: jnp.asarray(value) for key, value in batch.items()}
  examples = {k: np.asarray(v) for k, v in task.eval_examples(batch["target"], batch).items()}
  valid = np.asarray(batch["mask"]) > 0
  examples = {k: v[valid] for k, v in examples.items()}
  assert valid.sum() == inputs.num_eval_examples == 12
  labelled = examples["gt_keypoints"][..., 2] > 0
  error = np.abs(examples["keypoints"][..., :2] - examples["gt_keypoints"][..., :2])[labelled]
  assert error.max() < 0.05 * np.sqrt(examples["gt_area"]).max()
  metrics = task.finalize({"count": valid.sum(), "loss": 0.0}, examples)
  assert metrics["AP"] > 0.9 and metrics["detector_boxes"] == 0.0 and metrics["flip_test"] == 1.0


# ---- must show 4: training end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_pose_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pose_tiny"))
  config = config_lib.load(POSE + ":tiny", {"data.data_dir": data_dir, "data.eval_split": "validation[:256]",
                                            "total_steps": 150, "eval_at_start": True,
                                            "eval_batch_size": 256, "log_every": 50, "checkpoint_every": 200,
                                            "num_devices": 1})
  final = trainer.train_and_evaluate(config, workdir)
  return config, workdir, final


def test_tiny_pose_ap_rises_far_above_its_initial_value(trained_pose_run):
  _, workdir, final = trained_pose_run
  from hrnet_jax.engine import metric_writer
  evals = [m for m in metric_writer.read_metrics(workdir) if "eval/AP" in m]
  assert evals[0]["step"] == 0 and evals[-1]["step"] == 150
  initial = evals[0]["eval/AP"]
  assert initial < 0.05 and final["AP"] > 0.3, (initial, final["AP"])
  assert evals[-1]["eval/flip_test"] == 1.0 and evals[-1]["eval/detector_boxes"] == 0.0


def test_each_evaluation_draws_predictions_and_the_settings_into_tensorboard(trained_pose_run):
  config, workdir, _ = trained_pose_run
  values, hparams = tensorboard_contents(workdir)
  pictures = [values[f"eval/prediction_{i}"] for i in range(config.preview_images)]
  assert all(len(p) == 2 for p in pictures)  # at step 0 and at the end
  assert pictures[0][-1].size == (256, 256)  # the 64x64 input enlarged, the skeleton drawn over it
  assert {"model.name", "optimizer.learning_rate", "data.keypoints"} <= hparams


def test_predict_writes_coco_results_and_drawn_images(trained_pose_run, tmp_path):
  config, workdir, _ = trained_pose_run
  image = str(shared_path("data", "coco", "000000000785.jpg"))
  boxes = {"000000000785.jpg": [[280.79, 44.73, 218.7, 346.68], [0, 0, 50, 50]]}
  results, errors = keypoints_in_boxes(config, workdir, [image, str(tmp_path / "missing.jpg")], boxes=boxes,
                                       output_dir=str(tmp_path / "drawn"))
  assert list(errors) == [str(tmp_path / "missing.jpg")]
  assert [r["image_id"] for r in results] == [785, 785] and len(results[0]["keypoints"]) == 6 * 3
  assert Image.open(tmp_path / "drawn" / "000000000785.png").size == (640, 425)


# ---- must show 5: the drawing code ---------------------------------------------------------------------------


def test_drawing_marks_each_labelled_keypoint_and_the_readme_picture_exists(fixture_json):
  annotation = next(a for a in fixture_json["annotations"] if a["image_id"] == 197388 and a["num_keypoints"] >= 15)
  person = np.reshape(annotation["keypoints"], (17, 3)).astype(np.float64)
  drawn = np.asarray(draw_keypoints(Image.new("RGB", (640, 392)), [person], keypoint_sets.COCO))
  for x, y, v in person:
    assert (v > 0) == bool(drawn[int(round(y)), int(round(x))].any())
  readme_picture = os.path.join(os.path.dirname(POSE), "..", "docs", "000000197388.png")
  assert Image.open(readme_picture).size[0] == 480


def test_detector_boxes_are_evaluated_against_the_annotation_file_and_say_so(coco_data_dir):
  fixture = shared_path("data", "coco")
  config = config_lib.load(POSE + ":w32_256x192", {
      "data.data_dir": coco_data_dir[0], "data.annotation_file": str(fixture / "test_coco.json"),
      "data.detections": str(fixture / "test_coco_det_AP_H_56.json"), "data.image_dir": str(fixture),
      "eval_batch_size": 128})
  from hrnet_jax.data import inputs as data_inputs
  task = tasks.create(config)
  inputs = data_inputs.create_eval_input(config, process_index=0, process_count=1, eval_source=task.eval_source())
  assert inputs.num_eval_examples == 118
  batch = {key: jnp.asarray(value) for key, value in next(inputs.make_eval()).items()}
  # A prediction that puts every keypoint at its box's center: scored by COCOeval, near zero.
  heatmaps = jnp.zeros((128, 64, 48, 17)).at[:, 32, 24, :].set(1.0)
  valid = np.asarray(batch["mask"]) > 0
  examples = {k: np.asarray(v)[valid] for k, v in task.eval_examples(heatmaps, batch).items()}
  assert sorted(set(examples["image_id"].tolist())) == [785, 40083, 196141, 197388]
  metrics = task.finalize({"count": valid.sum(), "loss": 0.0}, examples)
  assert metrics["detector_boxes"] == 1.0 and metrics["count"] == 118 and metrics["AP"] < 0.2
