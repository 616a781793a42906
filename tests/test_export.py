"""Export for deployment (issue #21): every task's prediction serialised with ``jax.export``, loaded back with JAX
alone and called at two batch sizes equals the task's evaluation path; the SavedModel and TFLite formats where they
are claimed to work; the command line."""

import json
import logging
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnet_jax import export, tasks
from hrnet_jax.engine import config_lib
from hrnet_jax.model import convert
from helpers import initialisation_like, random_variables, run_module

TINY = {"classification": "configs/demo.py", "pose": "configs/coco_pose.py:tiny",
        "segmentation": "configs/cityscapes.py:tiny", "landmarks": "configs/face_landmarks.py:tiny",
        "detection": "configs/coco_detection.py:tiny",
        "mask_rcnn": "configs/coco_detection.py:mask_rcnn_w18,tiny"}  # Faster R-CNN's network and more


def tiny(task_name):
  """The task's tiny config, its task, its eval input size and random variables scaled as an initialisation would
  (kernels by their fan-in, BatchNorm variances positive), so that activations stay near 1 through the network."""
  config = config_lib.load(TINY[task_name])
  task = tasks.create(config)
  size = export.default_size(config)
  return config, task, size, initialisation_like(random_variables(task.create_model(), (1, *size, 3)))


def inputs(task_name, size, batch):
  """Images in 0..255 and the task's other inputs, as a deployment would give them."""
  rng = np.random.default_rng(batch)
  images = rng.uniform(0, 255, (batch, *size, 3)).astype(np.float32)
  if task_name in ("pose", "landmarks"):  # boxes around the middle of a 2x larger image
    return images, {"center": rng.uniform(50, 70, (batch, 2)).astype(np.float32),
                    "scale": rng.uniform(0.4, 0.6, (batch, 2)).astype(np.float32)}
  if task_name in ("detection", "mask_rcnn"):
    return images, {"image_size": np.tile(np.asarray([size[0] - 10, size[1]], np.float32), (batch, 1))}
  return images, {}


def evaluation_outputs(task_name, task, model, variables, images, extra):
  """What evaluation computes for these inputs, through the task's own evaluation code (not the export's)."""
  normalised = (images / 255.0 - np.asarray([0.485, 0.456, 0.406])) / np.asarray([0.229, 0.224, 0.225])
  batch = {"image": jnp.asarray(normalised, jnp.float32), **{k: jnp.asarray(v) for k, v in extra.items()}}
  count = len(images)

  @jax.jit
  def run(batch):
    outputs = task.predict(task.inference(model, variables, batch), batch)
    if task_name == "classification":
      return {"logits": outputs, "probabilities": jax.nn.softmax(outputs)}
    if task_name == "pose":
      filler = {key: jnp.zeros((count,)) for key in ("score", "box_area", "gt_area", "gt_bbox", "gt_keypoints")}
      return {"keypoints": task.eval_examples(outputs, {**batch, **filler, "image_id": jnp.zeros(count, jnp.int32),
                                                         "index": jnp.arange(count)})["keypoints"]}
    if task_name == "landmarks":
      points = task.spec.count
      return {"landmarks": task.eval_examples(outputs, {**batch, "gt_landmarks": jnp.zeros((count, points, 2)),
                                                         "target_weight": jnp.ones((count, points)),
                                                         "box_size": jnp.ones(count)})["landmarks"]}
    if task_name == "segmentation":
      return {"scores": outputs, "labels": jnp.argmax(outputs, -1)}
    found = task.detections(outputs, batch)._asdict()
    return {**found, "masks": outputs.masks} if task_name == "mask_rcnn" else found
  return run({**batch, "image_size": batch.get("image_size", jnp.tile(jnp.asarray(images.shape[1:3]), (count, 1)))})


@pytest.mark.parametrize("task_name", list(TINY))
def test_an_export_loaded_with_jax_alone_equals_evaluation_at_two_batch_sizes(task_name, tmp_path):
  config, task, size, variables = tiny(task_name)
  described = export.export(config, variables, str(tmp_path), [size])  # a symbolic batch size
  loaded = export.load(str(tmp_path))
  assert loaded.sidecar == described == json.loads((tmp_path / "export.json").read_text())
  assert described["task"] == config.task and described["batch"] == "any"
  images, extra = inputs(task_name, size, 3)
  expected = evaluation_outputs(task_name, task, task.create_model(), variables, images, extra)
  assert set(described["outputs"]) == set(expected)
  for count in (3, 1):
    got = loaded(images[:count], **{key: value[:count] for key, value in extra.items()})
    for key, value in expected.items():
      # Boxes are in pixels (up to 128 here), the exponential of a regression times the stride: 1e-4 px; Mask
      # (Faster) R-CNN's pass through two such decodings (the proposal's, then the box head's): 1e-3 px (9e-4 seen),
      # and its masks are pooled at those boxes.
      atol = {"boxes": 1e-3 if task_name == "mask_rcnn" else 1e-4, "masks": 1e-4}.get(key, 1e-5)
      np.testing.assert_allclose(got[key], np.asarray(value)[:count], atol=atol, rtol=1e-5, err_msg=key)
  if config.task == "detection":
    assert got["valid"].any(), "no detection at all: the comparison would be empty"
  with pytest.raises(ValueError, match=r"takes \[batch, H, W, 3\] with H x W one of"):
    loaded(images[:, :-1], **extra)


@pytest.mark.parametrize("task_name,batch", [("classification", None), ("pose", 2)])
def test_savedmodel_and_tflite_equal_the_export(task_name, batch, tmp_path):
  """The TensorFlow formats, where they work: classification at any batch size; pose at a fixed one (TFLite does
  not legalise the keypoint decoding's gathers with a dynamic batch)."""
  import tensorflow as tf
  config, _, size, variables = tiny(task_name)
  logging_before = logging.getLogger("absl").level, list(logging.root.handlers)
  export.export(config, variables, str(tmp_path), [size], batch, formats=["jax", "saved_model", "tflite"])
  # TensorFlow's SavedModel writer sets the absl logger to WARNING: the process's INFO lines would vanish.
  assert (logging.getLogger("absl").level, list(logging.root.handlers)) == logging_before
  images, extra = inputs(task_name, size, 2)
  expected = export.load(str(tmp_path))(images, **extra)
  name = f"{size[0]}x{size[1]}"
  signature = tf.saved_model.load(str(tmp_path / f"saved_model_{name}")).signatures["serving_default"]
  from_tf = signature(image=tf.constant(images), **{k: tf.constant(v) for k, v in extra.items()})
  runner = tf.lite.Interpreter(model_path=str(tmp_path / f"{name}.tflite")).get_signature_runner()
  from_tflite = runner(image=images, **extra)
  for key, value in expected.items():
    np.testing.assert_allclose(from_tf[key].numpy(), value, atol=1e-5, rtol=1e-5, err_msg=key)
    # TFLite's kernels (XNNPACK) sum convolutions in another order: logits of ~10 differ by up to ~1e-4.
    np.testing.assert_allclose(from_tflite[key], value, atol=1e-5, rtol=2e-5, err_msg=key)


def test_the_command_exports_a_checkpoint_and_says_what_it_wrote(tmp_path):
  config, _, size, variables = tiny("landmarks")
  weights = tmp_path / "weights.npz"
  np.savez(weights, **convert.to_state_dict(variables))
  output = tmp_path / "exported"
  result = run_module("export", f"--config={TINY['landmarks']}", f"--checkpoint={weights}", f"--output={output}",
                      "--size=64x64", "--size=96x96")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"wrote {output}/64x64.jax" in result.stdout and f"wrote {output}/96x96.jax" in result.stdout
  loaded = export.load(str(output))
  assert loaded.sidecar["names"] == list(tasks.create(config).spec.names)
  for shape in ((64, 64), (96, 96)):
    images, extra = inputs("landmarks", shape, 2)
    chex.assert_shape(loaded(images, **extra)["landmarks"], (2, len(loaded.sidecar["names"]), 2))
  result = run_module("export", f"--config={TINY['landmarks']}", f"--checkpoint={weights}", f"--output={output}",
                      "--format=onnx")
  assert result.returncode != 0 and "unknown export format(s) ['onnx']; known: jax, saved_model, tflite" in \
      result.stderr.strip().splitlines()[-1]
  assert os.path.exists(output / "export.json")



def test_the_onnx_route_through_the_pytorch_state_dict_equals_jax(tmp_path):
  """The README's ONNX route: ``convert.to_state_dict`` into a PyTorch HRNet (timm's, which keeps the official
  ``cls_hrnet.py`` names and layout), ``torch.onnx.export``, ONNX Runtime: the logits equal the JAX model's at two
  batch sizes. Runs where torch, timm, onnx and onnxruntime are installed (not in the base test environment)."""
  torch = pytest.importorskip("torch")
  timm = pytest.importorskip("timm")
  onnxruntime = pytest.importorskip("onnxruntime")
  pytest.importorskip("onnx")
  from hrnet_jax.model import factory  # pylint: disable=import-outside-toplevel
  model = factory.create_model("hrnet_w18_small_v1", task="classification", num_classes=10)
  variables = initialisation_like(random_variables(model, (1, 64, 64, 3)))
  network = timm.create_model("hrnet_w18_small", pretrained=False, num_classes=10).eval()
  network.load_state_dict({key: torch.from_numpy(value) for key, value in convert.to_state_dict(variables).items()},
                          strict=True)
  path = str(tmp_path / "hrnet.onnx")
  torch.onnx.export(network, torch.zeros(1, 3, 64, 64), path, input_names=["image"], output_names=["logits"],
                    dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
  session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  for count in (2, 1):
    images = np.random.default_rng(count).standard_normal((count, 64, 64, 3)).astype(np.float32)
    (logits,) = session.run(None, {"image": images.transpose(0, 3, 1, 2)})
    expected = model.apply(variables, jnp.asarray(images), train=False)
    chex.assert_shape(logits, (count, 10))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
