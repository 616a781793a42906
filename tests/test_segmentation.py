"""Semantic segmentation (issue #6): label definitions against the official ones, the builders on the official
layouts, the training crops, mIoU on 8 devices against brute force, sliding-window/multi-scale/flip inference
against a transcription of the official loop, OHEM, training end to end and predict's masks."""

import json
import os
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from helpers import run_module, tensorboard_contents
from hrnet_jax import tasks
from hrnet_jax.data import image_ops, prepare, sources
from hrnet_jax.engine import config_lib, metric_writer, sharding, trainer
from hrnet_jax.model import layers
from hrnet_jax.model.normalization import NORMALIZED_BLACK
from hrnet_jax.tasks.segmentation import inference as segmentation_inference
from hrnet_jax.tasks.segmentation import label_sets, ocr, recipes
from hrnet_jax.tasks.segmentation.task import iou_per_class, ohem_loss

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

# HRNet's pascal_ctx.py ``_mapping`` as written there (unsorted): the 459-class ids of background + the 59 classes.
OFFICIAL_PASCAL_CONTEXT_MAPPING = [
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420, 454, 295, 296,
    427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34, 207, 80, 355, 85, 347, 220, 349,
    360, 98, 187, 104, 105, 366, 189, 368, 113, 115]


# ---- label definitions ---------------------------------------------------------------------------------------------

def test_cityscapes_ids_names_colours_and_weights_match_cityscapesscripts():
  labels = pytest.importorskip("cityscapesscripts.helpers.labels")
  table = label_sets.cityscapes_id_to_train_id()
  for label in labels.labels:
    if label.id >= 0:
      expected = label.trainId if 0 <= label.trainId < 255 else label_sets.IGNORE_LABEL
      assert table[label.id] == expected, label.name
  cityscapes = label_sets.LABEL_SETS["cityscapes"]
  official = [labels.trainId2label[k] for k in range(19)]
  assert cityscapes.class_names == tuple(label.name for label in official)
  np.testing.assert_array_equal(cityscapes.palette, [label.color for label in official])
  np.testing.assert_array_equal(cityscapes.train_to_label_id, [label.id for label in official])
  assert len(cityscapes.class_weights) == 19
  assert (table[np.arange(34, 256)] == label_sets.IGNORE_LABEL).all()


def test_pascal_context_index_is_the_official_class_to_index():
  mapping = np.sort(OFFICIAL_PASCAL_CONTEXT_MAPPING)
  assert tuple(mapping[1:]) == label_sets.PASCAL_CONTEXT_IDS
  rng = np.random.default_rng(0)
  label_map = rng.choice(mapping, size=(37, 53))
  # The official transform: np.digitize(mask, _mapping, right=True) indexes _key = 0..59.
  official = np.digitize(label_map.ravel(), mapping, right=True).reshape(label_map.shape)
  np.testing.assert_array_equal(label_sets.pascal_context_index(label_map), official)
  # A class outside the 59 (the Detail API already folds them into 0) is background.
  np.testing.assert_array_equal(label_sets.pascal_context_index(np.array([[1, 3, 457, 459]])), [[0, 0, 0, 0]])
  assert label_sets.LABEL_SETS["pascal_context_60"].num_classes == 60
  context = label_sets.LABEL_SETS
  assert context["pascal_context_59"].class_names == context["pascal_context_60"].class_names[1:]


def test_lip_flip_pairs_are_exactly_the_left_right_classes():
  lip = label_sets.LABEL_SETS["lip"]
  assert lip.num_classes == 20 and lip.class_names[0] == "background"
  for left, right in lip.flip_pairs:
    assert lip.class_names[left].replace("left-", "right-") == lip.class_names[right]
  sided = {k for k, name in enumerate(lip.class_names) if name.startswith(("left-", "right-"))}
  assert sided == {k for pair in lip.flip_pairs for k in pair}
  permutation = lip.flip_permutation()
  np.testing.assert_array_equal(permutation[permutation], np.arange(20))


def test_voc_palette_starts_with_the_voc_colours():
  np.testing.assert_array_equal(label_sets.voc_palette(6), [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0],
                                                            [0, 0, 128], [128, 0, 128]])


# ---- builders on the official layouts --------------------------------------------------------------------------------

def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_builders_read_each_official_layout(tmp_path):
  import scipy.io
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (6, 8, 3))
  ids = rng.integers(0, 34, (6, 8))
  city = tmp_path / "cityscapes"
  for split in ("train", "val"):
    _save(city / "leftImg8bit" / split / "aachen" / f"aachen_{split}_leftImg8bit.png", image)
    _save(city / "gtFine" / split / "aachen" / f"aachen_{split}_gtFine_labelIds.png", ids)
  context = tmp_path / "pascal_context"
  label_map = rng.choice([0, 2, 9, 458, 100], size=(6, 8))  # 100 is outside the 59
  voc = context / "VOCdevkit" / "VOC2010"
  for split, name in (("train", "2008_000002"), ("val", "2008_000003")):
    _save(voc / "JPEGImages" / f"{name}.jpg", image)
    os.makedirs(voc / "ImageSets" / "Main", exist_ok=True)
    (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(name + "\n")
    os.makedirs(context / "trainval", exist_ok=True)
    scipy.io.savemat(context / "trainval" / f"{name}.mat", {"LabelMap": label_map.astype(np.uint16)})
  lip = tmp_path / "lip"
  parts = rng.integers(0, 20, (6, 8))
  for split in ("train", "val"):
    _save(lip / "TrainVal_images" / f"{split}_images" / f"{split}_1.jpg", image)
    (lip / "TrainVal_images" / f"{split}_id.txt").write_text(f"{split}_1\n")
    _save(lip / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{split}_1.png", parts)

  data_dir = str(tmp_path / "tfds")
  expected = {"cityscapes": label_sets.cityscapes_id_to_train_id()[ids],
              "pascal_context": np.select([label_map == 2, label_map == 9, label_map == 458], [1, 2, 59], 0),
              "lip": parts}
  for name, manual in (("cityscapes", city), ("pascal_context", context), ("lip", lip)):
    prepare.prepare(f"semantic_segmentation/{name}", data_dir, str(manual))
    for split in ("train", "validation"):
      source, _ = sources.open_source(f"semantic_segmentation/{name}", split, data_dir)
      assert len(source) == 1
      label = tf.io.decode_png(source[0]["label"]).numpy()[..., 0]
      np.testing.assert_array_equal(label, expected[name], err_msg=f"{name} {split}")


def test_a_missing_label_file_is_named(tmp_path):
  _save(tmp_path / "leftImg8bit" / "val" / "bonn" / "bonn_1_leftImg8bit.png", np.zeros((4, 4, 3)))
  with pytest.raises(FileNotFoundError, match="bonn_1_gtFine_labelIds.png"):
    prepare.prepare("semantic_segmentation/cityscapes", str(tmp_path / "tfds"), str(tmp_path))


# ---- preprocessing ---------------------------------------------------------------------------------------------------

def _png(array) -> tf.Tensor:
  return tf.io.encode_png(np.asarray(array, np.uint8))


def _scene_crop(**overrides):
  config = config_lib.load(os.path.join(CONFIGS, "lip.py")).data
  config.update({"crop_size": (8, 10), "base_size": 10, "scale_steps": 0, "resize_to_crop_first": False,
                 "eval_image_size": (), "eval_canvas": (12, 12), "label_canvas": (), "labels": "lip", **overrides})
  return recipes.SceneCrop(config)


def test_lip_training_flip_mirrors_the_image_and_swaps_left_and_right():
  crop = _scene_crop()
  image = np.zeros((8, 10, 3), np.uint8)
  image[:, :3] = 200  # the left three columns are bright
  label = np.zeros((8, 10, 1), np.uint8)
  label[:, :3] = 14  # left-arm
  label[:, 3:5] = 18  # left-shoe
  label[0, 9] = 2  # hair, no side
  example = {"image": _png(image), "label": _png(label)}
  outcomes = set()
  for seed in range(12):
    out = crop.train(example, tf.constant([seed, 0], tf.int64))
    got_image, got = out["image"].numpy(), out["label"].numpy()
    chex.assert_shape(got_image, (8, 10, 3))
    flipped = got_image[0, -1, 0] == 200
    outcomes.add(bool(flipped))
    want = label[..., 0].astype(np.int32)
    want = want[:, ::-1] if flipped else want
    if flipped:
      want = np.select([want == 14, want == 18], [15, 19], want)
    np.testing.assert_array_equal(got, want)
  assert outcomes == {True, False}


def test_random_scale_pads_with_ignore_and_eval_pads_into_the_canvas():
  crop = _scene_crop(scale_steps=16, flip=False)
  example = {"image": _png(np.full((4, 5, 3), 255)), "label": _png(np.full((4, 5, 1), 3))}
  for seed in range(6):
    out = crop.train(example, tf.constant([seed, 1], tf.int64))
    image, label = out["image"].numpy(), out["label"].numpy()
    assert set(np.unique(label)) <= {3, label_sets.IGNORE_LABEL}
    np.testing.assert_array_equal(image[..., 0] == 0, label == label_sets.IGNORE_LABEL)  # padding: black, ignored
  out = crop.evaluate(example)
  chex.assert_shape([out["image"], out["label"]], [(12, 12, 3), (12, 12)])
  np.testing.assert_array_equal(out["image_size"], [4, 5])
  np.testing.assert_array_equal(out["label_size"], [4, 5])
  assert (out["label"].numpy()[4:] == label_sets.IGNORE_LABEL).all()
  with pytest.raises(tf.errors.InvalidArgumentError, match="eval_canvas"):
    crop.evaluate({"image": _png(np.zeros((13, 5, 3))), "label": _png(np.zeros((13, 5, 1)))})


def test_pascal_context_59_ignores_background():
  crop = _scene_crop(ignore_background=True)
  out = crop.evaluate({"image": _png(np.zeros((2, 3, 3))), "label": _png([[[0], [1], [59]], [[2], [0], [0]]])})
  np.testing.assert_array_equal(out["label"].numpy()[:2, :3], [[255, 0, 58], [1, 255, 255]])


# ---- mIoU on 8 devices -----------------------------------------------------------------------------------------------

class _Batches:
  """Eval batches as ``make_eval`` returns them: an iterator with ``close``."""

  def __init__(self, batches):
    self._batches = iter(batches)

  def __iter__(self):
    return self._batches

  def close(self):
    self._batches = iter(())


class _LogitsAreTheInput(nn.Module):
  """A "model" whose logits are its input: the eval step's predictions are then known in advance."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return x


def test_miou_on_8_devices_equals_brute_force_numpy():
  num_classes, batch = 5, 16
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  config = config_lib.load(os.path.join(CONFIGS, "cityscapes.py") + ":tiny")
  task = tasks.create(config)
  rng = np.random.default_rng(0)
  batches = []
  for _ in range(3):
    labels = rng.integers(0, num_classes, (batch, 6, 7)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.2] = label_sets.IGNORE_LABEL
    batches.append({"image": rng.normal(size=(batch, 6, 7, num_classes)).astype(np.float32), "label": labels,
                    "image_size": np.full((batch, 2), [6, 7], np.int32),
                    "label_size": np.full((batch, 2), [6, 7], np.int32),
                    "mask": (np.arange(batch) < 11).astype(np.float32) if len(batches) == 2 else np.ones(batch,
                                                                                                         np.float32),
                    "undecodable": np.zeros(batch, np.float32)})
  eval_step = trainer.make_eval_step(_LogitsAreTheInput(), task, mesh)
  metrics = trainer.evaluate(eval_step, {}, lambda: _Batches(batches), mesh, task, check_recipe=False)

  intersection, union = np.zeros(num_classes), np.zeros(num_classes)
  for b in batches:
    for n in range(batch):
      if not b["mask"][n]:
        continue
      for i in range(6):
        for j in range(7):
          label, prediction = b["label"][n, i, j], int(np.argmax(b["image"][n, i, j]))
          if label == label_sets.IGNORE_LABEL:
            continue
          for k in range(num_classes):
            intersection[k] += label == k and prediction == k
            union[k] += label == k or prediction == k
  assert metrics["miou"] == pytest.approx(100 * np.mean(intersection / union), abs=1e-9)
  names = label_sets.LABEL_SETS["synthetic_shapes"].class_names
  for k, name in enumerate(names):
    assert metrics[f"iou/{name}"] == pytest.approx(100 * intersection[k] / union[k], abs=1e-9)


def test_iou_of_a_class_absent_everywhere_is_left_out():
  confusion = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
  per_class = iou_per_class(confusion)
  np.testing.assert_allclose(per_class[:2], [3 / 4, 2 / 3])
  assert np.isnan(per_class[2])


# ---- inference -------------------------------------------------------------------------------------------------------

WEIGHTS = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)


def _position_dependent_head(images):
  """Logits that depend on each pixel and on its position in the window: windows disagree at their seams."""
  height, width = images.shape[1:3]
  rows = np.arange(height, dtype=np.float32)[:, None, None] * np.array([0.05, -0.02, 0.01, 0.0], np.float32)
  cols = np.arange(width, dtype=np.float32)[None, :, None] * np.array([-0.01, 0.03, 0.0, 0.02], np.float32)
  return images @ WEIGHTS + rows + cols


def _resize(array, size):
  """Bilinear resize [H, W, C] as PyTorch (align_corners False), in float64."""
  rows = layers.interpolation_matrix(array.shape[0], size[0], False).astype(np.float64)
  cols = layers.interpolation_matrix(array.shape[1], size[1], False).astype(np.float64)
  return np.einsum("oh,hwc,pw->opc", rows, array, cols)


def _official_multi_scale_inference(image, scales, base_size, crop, flip, permutation):
  """A transcription of HRNet's ``BaseDataset.multi_scale_inference`` (one image, NumPy, float64)."""
  black = np.array(NORMALIZED_BLACK)
  stride_h, stride_w = int(crop[0] * 2.0 / 3.0), int(crop[1] * 2.0 / 3.0)

  def inference(window):
    pred = np.asarray(_position_dependent_head(window[None].astype(np.float32))[0], np.float64)
    if flip:
      flipped = np.asarray(_position_dependent_head(window[None, :, ::-1].astype(np.float32))[0], np.float64)
      pred = (pred + flipped[:, ::-1][..., permutation]) * 0.5
    return np.exp(pred)

  def pad(array):
    h, w = array.shape[:2]
    out = np.broadcast_to(black, (max(crop[0], h), max(crop[1], w), 3)).copy()
    out[:h, :w] = array
    return out

  height, width = image.shape[:2]
  final = 0
  for scale in scales:
    long_side = int(base_size * scale + 0.5)
    if height > width:
      size = (long_side, int(width * long_side / height + 0.5))
    else:
      size = (int(height * long_side / width + 0.5), long_side)
    new = _resize(image, size)
    h, w = new.shape[:2]
    if max(h, w) <= min(crop):
      preds = inference(pad(new))[:h, :w]
    else:
      new = pad(new)
      new_h, new_w = new.shape[:2]
      rows = int(np.ceil((new_h - crop[0]) / stride_h)) + 1
      cols = int(np.ceil((new_w - crop[1]) / stride_w)) + 1
      preds, count = np.zeros((new_h, new_w, 4)), np.zeros((new_h, new_w, 1))
      for r in range(rows):
        for c in range(cols):
          h0, w0 = r * stride_h, c * stride_w
          h1, w1 = min(h0 + crop[0], new_h), min(w0 + crop[1], new_w)
          h0, w0 = max(h1 - crop[0], 0), max(w1 - crop[1], 0)
          preds[h0:h1, w0:w1] += inference(new[h0:h1, w0:w1])[:h1 - h0, :w1 - w0]
          count[h0:h1, w0:w1] += 1
      preds = (preds / count)[:h, :w]
    final = final + _resize(preds, (height, width))
  return final


@pytest.mark.parametrize("scales", [(1.0,), (0.5, 1.0, 1.75)])
def test_sliding_window_multi_scale_flip_equals_the_official_loop(scales):
  """Images of three sizes in one 20x26 canvas, 12x16 windows (overlapping, the last shifted back inside, some
  images padded up to the window), LIP-style channel swap on the flip: equal to the official per-image loop."""
  rng = np.random.default_rng(2)
  sizes = np.array([[20, 26], [11, 17], [9, 14]], np.int32)
  black = np.array(NORMALIZED_BLACK, np.float32)
  canvas = np.broadcast_to(black, (3, 20, 26, 3)).copy()
  images = [rng.normal(size=(h, w, 3)).astype(np.float32) for h, w in sizes]
  for n, image in enumerate(images):
    canvas[n, :image.shape[0], :image.shape[1]] = image
  permutation = (0, 2, 1, 3)
  options = segmentation_inference.InferenceOptions(
      scales=scales, flip=True, mode="sliding", window=(12, 16), base_size=24, variable_size=True,
      flip_permutation=permutation)
  scores = jax.jit(lambda x, s: segmentation_inference.segment(_position_dependent_head, x, s, options))(
      canvas, sizes)
  chex.assert_shape(scores, (3, 20, 26, 4))
  for n, (h, w) in enumerate(sizes):
    expected = _official_multi_scale_inference(images[n].astype(np.float64), scales, 24, (12, 16), True,
                                               list(permutation))
    np.testing.assert_allclose(scores[n, :h, :w], expected, rtol=2e-5, err_msg=f"image {n}")


def test_sliding_window_with_a_pointwise_head_is_the_whole_image_at_every_seam():
  """A per-pixel head gives every window the same value at a shared pixel, so any seam must vanish."""
  rng = np.random.default_rng(3)
  images = rng.normal(size=(2, 30, 40, 3)).astype(np.float32)
  pointwise = lambda x: x @ WEIGHTS  # noqa: E731
  sizes = np.array([[30, 40], [30, 40]], np.int32)
  sliding = segmentation_inference.InferenceOptions(mode="sliding", window=(16, 16), flip=True,
                                                    flip_permutation=(1, 0, 2, 3))
  whole = segmentation_inference.InferenceOptions(flip=True, flip_permutation=(1, 0, 2, 3))
  got = segmentation_inference.segment(pointwise, jnp.asarray(images), sizes, sliding)
  logits = images @ WEIGHTS
  expected = np.exp((logits + logits[..., [1, 0, 2, 3]]) / 2)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(segmentation_inference.segment(pointwise, jnp.asarray(images), sizes, whole), expected,
                             rtol=1e-6)


def test_resize_within_is_pytorch_bilinear_per_example():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 9, 11, 2)).astype(np.float32)
  in_sizes, out_sizes = np.array([[9, 11], [5, 7]]), np.array([[13, 6], [10, 14]])
  got = segmentation_inference.resize_within(jnp.asarray(x), in_sizes, out_sizes, (13, 14), False, fill=-7.0)
  for n in range(2):
    (ih, iw), (oh, ow) = in_sizes[n], out_sizes[n]
    np.testing.assert_allclose(got[n, :oh, :ow], _resize(x[n, :ih, :iw].astype(np.float64), (oh, ow)), atol=1e-5)
    assert (np.asarray(got[n])[oh:] == -7).all() and (np.asarray(got[n])[:, ow:] == -7).all()


# ---- loss ------------------------------------------------------------------------------------------------------------

def test_ohem_keeps_the_hard_pixels_as_the_official_criterion():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(2, 5, 6, 3)).astype(np.float32) * 3
  targets = rng.integers(0, 3, (2, 5, 6))
  valid = rng.random((2, 5, 6)) > 0.2
  losses = -jax.nn.log_softmax(logits)[np.arange(2)[:, None, None], np.arange(5)[None, :, None],
                                       np.arange(6)[None, None], targets]
  for threshold, min_kept in ((0.7, 4), (0.2, 20), (0.9, 1000)):
    got = ohem_loss(jnp.asarray(logits), jnp.asarray(targets), losses, jnp.asarray(valid), threshold, min_kept)
    # The official OhemCrossEntropy.forward, in NumPy.
    probability = np.asarray(jax.nn.softmax(logits))[..., :][np.arange(2)[:, None, None], np.arange(5)[None, :, None],
                                                             np.arange(6)[None, None], targets][valid]
    order = np.argsort(probability, kind="stable")
    kth = probability[order][min(min_kept, probability.size - 1)]
    kept = np.asarray(losses)[valid][order][probability[order] < max(kth, threshold)]
    assert float(got) == pytest.approx(kept.mean(), rel=1e-5)


def test_class_weights_weight_the_mean_as_pytorch():
  config = config_lib.load(os.path.join(CONFIGS, "cityscapes.py") + ":w18_small_v1")
  task = tasks.create(config)
  rng = np.random.default_rng(6)
  outputs = rng.normal(size=(1, 2, 2, 19)).astype(np.float32)
  labels = np.array([[[0, 5], [18, 255]]] * 4).reshape(1, 4, 4)[:, :4, :4].astype(np.int32)
  loss, _ = task.loss(jnp.asarray(outputs), {"label": jnp.asarray(labels), "mask": jnp.ones(1)})
  logits = np.asarray(task._logits_at_label_size(jnp.asarray(outputs), labels))  # pylint: disable=protected-access
  weights = np.array(label_sets.LABEL_SETS["cityscapes"].class_weights)
  valid = labels != 255
  ce = -np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), np.where(valid, labels, 0)[..., None], -1)[..., 0]
  w = weights[np.where(valid, labels, 0)] * valid
  assert float(loss) == pytest.approx((ce * w).sum() / w.sum(), rel=1e-5)


def ocr_loss_case(ohem: bool):
  """The loss of a 19-class OCR model's outputs at 2x2 on 4x4 Cityscapes labels (class-weighted; one ignored pixel,
  one undecodable image), and the per-pixel weighted cross-entropies and validity computed by hand."""
  config = config_lib.load(os.path.join(CONFIGS, "cityscapes.py") + ":ocr_w48", {"ohem.enabled": ohem,
                                                                                  "ohem.min_kept": 5})
  task = tasks.create(config)
  rng = np.random.default_rng(8)
  aux, main = (jnp.asarray(rng.normal(size=(2, 2, 2, 19)).astype(np.float32) * 2) for _ in range(2))
  labels = jnp.asarray(rng.integers(0, 19, (2, 4, 4)).astype(np.int32)).at[0, 0, 0].set(255)
  batch = {"label": labels, "mask": jnp.array([1.0, 0.0])}
  loss, metrics = task.loss(ocr.OCROutputs(aux=aux, ocr=main), batch)
  valid = (np.asarray(labels) != 255) & (np.array([1, 0])[:, None, None] > 0)
  targets = np.where(valid, labels, 0)
  weight = np.array(label_sets.LABEL_SETS["cityscapes"].class_weights)[targets] * valid
  # Bilinear with align_corners=True (the OCR default) to the label's size, then the weighted cross-entropy.
  log_p = {name: np.asarray(jax.nn.log_softmax(layers.resize_bilinear(x, (4, 4), True)))
           for name, x in (("aux", aux), ("ocr", main))}
  per_pixel = {name: -np.take_along_axis(lp, targets[..., None], -1)[..., 0] * weight for name, lp in log_p.items()}
  return task, (aux, main), float(loss), metrics, per_pixel, valid, weight, np.exp(log_p["ocr"]), targets


def test_ocr_loss_is_0_4_aux_plus_ocr_cross_entropy():
  task, _, loss, metrics, per_pixel, _, weight, _, _ = ocr_loss_case(ohem=False)
  mean = {name: pixels.sum() / weight.sum() for name, pixels in per_pixel.items()}  # PyTorch's weighted mean
  assert loss == pytest.approx(0.4 * mean["aux"] + mean["ocr"], rel=1e-5)
  assert float(metrics["aux_loss"]) == pytest.approx(mean["aux"], rel=1e-5)
  assert task.config.aux_loss_weight == 0.4 and task.config.class_weights


def test_ocr_loss_with_ohem_is_the_official_criterion():
  """OhemCrossEntropy with two outputs: plain cross-entropy for the auxiliary one, unreduced and averaged with the
  rest over every pixel (ignored ones as 0), and OHEM for the OCR output (transcribed in NumPy here)."""
  _, _, loss, _, per_pixel, valid, _, probability, targets = ocr_loss_case(ohem=True)
  target_probability = np.take_along_axis(probability, targets[..., None], -1)[..., 0][valid]
  order = np.argsort(target_probability, kind="stable")
  threshold = max(target_probability[order][min(5, target_probability.size - 1)], 0.9)
  kept = per_pixel["ocr"][valid][order][target_probability[order] < threshold]
  assert loss == pytest.approx(0.4 * per_pixel["aux"].mean() + kept.mean(), rel=1e-5)


def test_ocr_evaluation_uses_the_ocr_output():
  task = tasks.create(config_lib.load(os.path.join(CONFIGS, "cityscapes.py") + ":ocr_w48,tiny"))
  rng = np.random.default_rng(9)
  aux, main = (jnp.asarray(rng.normal(size=(2, 2, 2, 5)).astype(np.float32)) for _ in range(2))
  batch = {"image": jnp.zeros((2, 8, 8, 3)), "image_size": jnp.array([[8, 8], [8, 8]])}
  scores = task.predict(lambda images: ocr.OCROutputs(aux=aux, ocr=main), batch)
  np.testing.assert_allclose(scores, task.predict(lambda images: main, batch))
  assert not np.allclose(scores, task.predict(lambda images: aux, batch))


# ---- end to end ------------------------------------------------------------------------------------------------------

# The end-to-end run trains the OCR head (issue #18): it runs everything the V2 head's run does (the V2 head is its
# auxiliary head) and the OCR parts besides; the V2 head alone trains end to end in the landmark task's test.
TINY = "cityscapes.py:ocr_w48,tiny"


@pytest.fixture(scope="module")
def trained_segmentation_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("seg_tiny"))
  config = config_lib.load(os.path.join(CONFIGS, TINY), {
      "data.data_dir": data_dir, "data.eval_split": "validation[:128]", "total_steps": 200, "eval_at_start": True,
      "eval_batch_size": 64, "log_every": 50, "checkpoint_every": 200, "num_devices": 1})
  return config, workdir, trainer.train_and_evaluate(config, workdir)


def test_tiny_segmentation_trains_far_above_chance(trained_segmentation_run):
  _, workdir, final = trained_segmentation_run
  start = next(m for m in metric_writer.read_metrics(workdir) if "eval/miou" in m)
  # Predicting background everywhere scores its pixel share (~0.8) / 5 classes: ~16%. So does the initial model.
  assert start["step"] == 0 and start["eval/miou"] < 17, start
  # Telling the four polygons apart pixel by pixel is slow to learn: 200 steps reach ~25% with the OCR head (the V2
  # head alone: ~28%; 47% after 1,000 steps).
  assert final["miou"] > 22, final
  assert final["flip_test"] == 0 and final["num_scales"] == 1


def test_each_evaluation_draws_label_overlays_into_tensorboard(trained_segmentation_run):
  _, workdir, _ = trained_segmentation_run
  values, hparams = tensorboard_contents(workdir)
  overlays = values["eval/prediction_0"]
  assert len(overlays) == 2 and overlays[-1].mode == "RGB"  # at step 0 and at the end
  assert max(overlays[-1].size) >= 256  # the small input enlarged
  assert len(np.unique(np.asarray(overlays[-1]).reshape(-1, 3), axis=0)) > 2  # the image shows through the colours
  assert {"model.name", "data.labels"} <= hparams


def test_multi_scale_flip_sliding_evaluation_from_the_command_line(trained_segmentation_run, tmp_path):
  """``evaluate`` with the options of the paper's tables, on 8 devices: the protocol is stored with the mIoU."""
  config, workdir, final = trained_segmentation_run
  output = str(tmp_path / "metrics.json")
  result = run_module("evaluate", f"--config={CONFIGS}/{TINY}", f"--checkpoint={workdir}",
                      f"--config.data.data_dir={config.data.data_dir}", "--config.data.eval_split=validation[:64]",
                      "--config.test.scales=(0.75,1.0,1.25)", "--config.test.flip=true", "--config.eval_batch_size=16",
                      f"--output={output}", devices=8)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "sliding 48x48 windows, scales 0.75/1/1.25, flip on" in result.stderr
  # A long evaluation shows where it is: after the first batch, every 10 s, at the end.
  assert re.search(r"evaluating: batch 1/4 \(16/64 examples, 25%\) \| \S+ elapsed \| ETA \S+", result.stderr)
  assert "evaluating: batch 4/4 (64/64 examples, 100%)" in result.stderr
  metrics = json.load(open(output))
  assert metrics["flip_test"] == 1 and metrics["num_scales"] == 3
  assert metrics["miou"] > final["miou"] - 10, (metrics["miou"], final["miou"])


def test_predict_writes_label_colour_and_overlay_pngs(trained_segmentation_run, tmp_path, caplog):
  from hrnet_jax.data import synthetic
  from hrnet_jax.tasks.segmentation.predict import label_maps
  config, workdir, _ = trained_segmentation_run
  example = synthetic.render_example(np.random.default_rng(7))
  Image.fromarray(np.asarray(Image.fromarray(example["image"]).resize((90, 70)))).save(tmp_path / "shape.png")
  (tmp_path / "broken.png").write_bytes(b"not an image")
  with caplog.at_level("INFO"):
    results, errors = label_maps(config, workdir, [str(tmp_path / "shape.png"), str(tmp_path / "broken.png")],
                                 str(tmp_path / "out"))
  assert re.search(r"segmenting images: 1/2 \(50%\) \| \S+ elapsed \| ETA \S+", caplog.text)
  assert "segmenting images: 2/2 (100%)" in caplog.text
  assert list(errors) == [str(tmp_path / "broken.png")] and len(results) == 1
  labels = np.asarray(Image.open(results[0]["outputs"]["labels"]))
  assert labels.shape == (70, 90) and labels.max() < 5
  colour = np.asarray(Image.open(results[0]["outputs"]["color"]))
  np.testing.assert_array_equal(colour, label_sets.LABEL_SETS["synthetic_shapes"].palette[labels])
  assert Image.open(results[0]["outputs"]["overlay"]).size == (90, 70)
  assert sum(results[0]["classes"].values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_resized_window_equals_the_crop_of_the_whole_resize(method):
  # The training crop resizes only the window it keeps: it must equal resizing everything, padding, then cropping.
  rng = np.random.default_rng(0)
  window = (24, 40)
  for in_size, size in (((37, 61), (83, 140)), ((50, 30), (21, 13)), ((40, 64), (40, 64)), ((64, 100), (30, 50))):
    image = rng.integers(0, 256, (*in_size, 3)).astype(np.uint8)
    label = rng.integers(0, 19, in_size).astype(np.int32)
    last_top, last_left = np.maximum(size, window) - window  # the crop's range, as the recipe draws it
    for top, left in ((0, 0), (last_top, last_left), (last_top // 2, last_left // 3)):
      if method == "bilinear":
        whole = image_ops.pad_to(image_ops.resize_image(image, size), *window, 0.0)
        got = image_ops.resized_window(tf.constant(image), tf.constant(size), top, left, window, method, 0.0)
      else:
        whole = image_ops.pad_to(recipes.resize_label(tf.constant(label), size), *window, 255)
        got = image_ops.resized_window(tf.constant(label), tf.constant(size), top, left, window, method, 255)
      np.testing.assert_array_equal(got.numpy(), whole.numpy()[top:top + window[0], left:left + window[1]])
