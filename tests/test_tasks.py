"""A task is one folder: the registry, a task defined wholly outside the package, the batch contract between
recipes and tasks, TensorFlow-free imports, and the shared heatmap codec."""

import os
import re
import subprocess
import sys

import chex
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from hrnet_jax import tasks
from hrnet_jax.data import synthetic
from hrnet_jax.engine import config_lib, trainer
from hrnet_jax.heatmaps import codec
from hrnet_jax.model import ModelDefaults, VARIANTS
from hrnet_jax.registry import UnknownNameError
from hrnet_jax.tasks.base import Task
from hrnet_jax.tasks.detection import synthetic as detection_synthetic
from hrnet_jax.tasks.pose.keypoint_sets import KEYPOINT_SETS
from hrnet_jax.tasks.segmentation.label_sets import LABEL_SETS
from hrnet_jax.tasks.spec import BatchContractError, BatchKey, Recipe, TaskSpec, check_batch
from helpers import REPO, cli_env, run_module

# ---- a task defined here, outside the package: regress a polygon's vertex count from its image ----------------


class VertexCountTask(Task):
  name = "vertex_count"
  train_reads = eval_reads = ("image", "vertices", "mask")

  def loss(self, outputs, batch):
    mask = batch["mask"]
    squared = (outputs[:, 0] - batch["vertices"]) ** 2
    return jnp.sum(mask * squared) / jnp.maximum(jnp.sum(mask), 1.0), {}

  def eval_sums(self, outputs, batch):
    mask = batch["mask"]
    return {"count": jnp.sum(mask), "absolute_error": jnp.sum(mask * jnp.abs(outputs[:, 0] - batch["vertices"]))}

  def finalize(self, sums, examples):
    count = float(sums["count"])
    return {"mae": float(sums["absolute_error"]) / max(count, 1.0), "count": count}


def vertex_count_recipe(data):
  """The synthetic shapes' images, resized to ``data.image_size``, with their vertex count (class + 3)."""
  def evaluate(example):
    image = tf.image.resize(tf.io.decode_png(example["image"], channels=3), (data.image_size, data.image_size))
    return {"image": image / 127.5 - 1.0, "vertices": tf.cast(example["label"], tf.float32) + 3.0}

  return (lambda example, seed: evaluate(example)), evaluate


def _vertex_keys(data):
  keys = {"image": BatchKey("float32", (data.image_size, data.image_size, 3)), "vertices": BatchKey("float32")}
  return keys, keys


VERTEX_COUNT = TaskSpec(
    name="vertex_count", model=ModelDefaults(head="classification", count_name="num_outputs", count=1),
    task=VertexCountTask, recipes=(Recipe("vertex_count_images", make=vertex_count_recipe, keys=_vertex_keys,
                                          defaults={"image_size": 32}),))


@pytest.fixture
def vertex_count_task():
  tasks.register(VERTEX_COUNT)
  yield VERTEX_COUNT
  del tasks.TASKS["vertex_count"]


def test_a_task_defined_in_a_test_file_trains_and_evaluates(vertex_count_task, data_dir, tmp_path):
  config = config_lib.base_config("vertex_count")
  assert config.data.preprocess == "vertex_count_images" and config.data.image_size == 32
  config.model.name = "hrnet_tiny"
  config.model.overrides = {"head_channels": (8, 16, 32, 64), "final_channels": 64}
  config.data.update(data_dir=data_dir, eval_split="validation[:64]")
  config.update(total_steps=2, global_batch_size=16, eval_batch_size=64, log_every=1, checkpoint_every=2,
                num_devices=1, optimizer={**config.optimizer, "learning_rate": 0.01})
  metrics = trainer.train_and_evaluate(config, str(tmp_path))
  assert metrics["count"] == 64 and np.isfinite(metrics["mae"])
  assert os.path.exists(tmp_path / trainer.FINAL_METRICS)


def test_registering_a_taken_name_fails(vertex_count_task):
  with pytest.raises(ValueError, match="task 'vertex_count' is already registered"):
    tasks.register(TaskSpec("vertex_count", ModelDefaults(head=None)))
  with pytest.raises(ValueError, match="declares the recipe 'imagenet', which another task declares"):
    tasks.register(TaskSpec("other", ModelDefaults(head=None),
                            recipes=(Recipe("imagenet", make=vertex_count_recipe, keys=_vertex_keys),)))


# ---- one registry, one lookup helper ---------------------------------------------------------------------------


@pytest.mark.parametrize("registry,name,kind,closest", [
    (VARIANTS, "hrnet_w33", "variant", "hrnet_w32"),
    (tasks.TASKS, "segmentaton", "task", "segmentation"),
    (tasks.recipes(), "topdown_pos", "recipe", "topdown_pose"),
    (KEYPOINT_SETS, "cocoo", "keypoint set", "coco"),
    (LABEL_SETS, "cityscape", "label set", "cityscapes"),
])
def test_an_unknown_name_lists_the_known_ones_and_the_closest(registry, name, kind, closest):
  with pytest.raises(UnknownNameError) as error:
    registry[name]  # pylint: disable=pointless-statement
  message = str(error.value)
  assert message.startswith(f"unknown {kind}") and f"did you mean {closest}" in message
  assert all(known in message for known in registry)
  assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)


def test_the_programs_hold_no_task_branches_and_the_model_has_no_second_registry():
  programs = [os.path.join(REPO, "hrnet_jax", f) for f in os.listdir(os.path.join(REPO, "hrnet_jax"))
              if f.endswith(".py")]
  branch = re.compile(r"task ==|task_name ==|\.name == \"")
  assert [p for p in programs if branch.search(open(p).read())] == []
  import hrnet_jax.model.factory as factory  # pylint: disable=import-outside-toplevel
  assert not hasattr(factory, "TASKS")
  # Every task the programs accept comes from the one registry: summary takes every entry, benchmark and
  # train the entries with a Task class.
  assert {"classification", "pose", "landmarks", "segmentation", "detection", "features"} <= set(tasks.TASKS)
  assert not tasks.TASKS["features"].trainable and tasks.TASKS["detection"].trainable


# ---- the batch contract -----------------------------------------------------------------------------------------


def test_a_recipe_a_task_cannot_read_ends_at_start_up_in_one_line(tmp_path):
  workdir = tmp_path / "run"
  result = run_module("train", f"--config={REPO}/configs/coco_pose.py:tiny", f"--workdir={workdir}",
                      "--config.data.preprocess=synthetic_classification")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
  assert len(lines) == 1, result.stderr[-2000:]
  assert all(word in lines[0] for word in ("'synthetic_classification'", "'pose'", "'target'")), lines[0]
  assert not workdir.exists()


def test_a_batch_that_differs_from_its_declaration_names_recipe_task_and_key():
  expected = {"image": BatchKey("float32", (4, 4, 3)), "label": BatchKey("int32")}
  batch = {"image": np.zeros((2, 4, 4, 3), np.float32), "label": np.zeros((2,), np.int32)}
  check_batch(batch, expected, "recipe_a", "task_b", "training")
  for wrong, what in [({**batch, "label": np.zeros((2,), np.int64)}, "is int64, declared int32"),
                      ({**batch, "image": np.zeros((2, 4, 5, 3), np.float32)}, "has shape [4, 5, 3]"),
                      ({"image": batch["image"]}, "is missing"),
                      ({**batch, "extra": np.zeros(2)}, "is not declared")]:
    with pytest.raises(BatchContractError, match=r"recipe 'recipe_a' .* task 'task_b' .*" + re.escape(what)):
      check_batch(wrong, expected, "recipe_a", "task_b", "training")


@pytest.mark.parametrize("task,recipe", [(spec.name, recipe.name) for spec in tasks.TASKS.values()
                                         for recipe in spec.recipes])
def test_every_recipe_produces_exactly_the_keys_it_declares(task, recipe):
  """Each built-in recipe on a synthetic example, with the defaults its config section declares."""
  config = config_lib.base_config(task, recipe)
  config.data.update({"keypoints": "synthetic_shapes"} if "keypoints" in config.data else {})
  train_keys, eval_keys = tasks.recipes()[recipe].keys(config.data)
  train_fn, eval_fn = tasks.recipes()[recipe].build(config.data)
  if task == "detection":  # several objects per image: the detection task's own synthetic data
    example = detection_synthetic.render_example(np.random.default_rng(3), 1)
    encoded = {key: tf.constant(value) for key, value in example.items() if key != "image"}
  else:
    example = synthetic.render_example(np.random.default_rng(3))
    encoded = {"mask": tf.io.encode_png(example["mask"]),
               **{key: tf.constant(example[key]) for key in ("label", "keypoints", "bbox")}}
  encoded["image"] = tf.io.encode_png(example["image"])
  for outputs, keys, phase in ((train_fn(encoded, tf.constant([0, 1], tf.int64)), train_keys, "training"),
                               (eval_fn(encoded), eval_keys, "evaluation")):
    batch = {key: value.numpy()[None] for key, value in outputs.items()}
    check_batch(batch, keys, recipe, task, phase)


# ---- TensorFlow stays in the data code -------------------------------------------------------------------------

TENSORFLOW_FREE = """
import sys
sys.modules["tensorflow"] = None  # importing TensorFlow now fails
sys.modules["tensorflow_datasets"] = None
import numpy as np
import hrnet_jax
from hrnet_jax import benchmark, evaluate, export, summary, tasks
from hrnet_jax.engine import checkpointing, config_lib, metric_writer, optim, sharding, trainer, weights
from hrnet_jax.heatmaps import codec, task
from hrnet_jax.tasks.landmarks import task
from hrnet_jax.tasks.pose import coco_eval, task
from hrnet_jax.tasks.segmentation import inference, task
from hrnet_jax.tasks.detection import task
from hrnet_jax.model import convert
for name, spec in tasks.TASKS.items():
  if spec.trainable:
    tasks.create(config_lib.base_config(name))  # each task's loss and metric code
import jax
model = hrnet_jax.create_model("hrnet_tiny", task="segmentation", num_classes=3)
rng = np.random.default_rng(0)
shapes = convert.model_variable_shapes(model, (1, 32, 32, 3))
state = convert.to_state_dict(jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes))
variables = hrnet_jax.load_pytorch_weights(model, state)
logits = model.apply(variables, np.zeros((1, 32, 32, 3), np.float32))
assert logits.shape == (1, 8, 8, 3), logits.shape
import tempfile
config = config_lib.load("configs/demo.py")  # an export written and called back
classifier = tasks.create(config).create_model()
shapes = convert.model_variable_shapes(classifier, (1, 32, 32, 3))
with tempfile.TemporaryDirectory() as directory:
  export.export(config, jax.tree.map(lambda s: np.ones(s.shape, s.dtype), shapes), directory, [(32, 32)])
  assert export.load(directory)(np.zeros((2, 32, 32, 3)))["probabilities"].shape == (2, 4)
print("tensorflow-free:", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets")
                                 and sys.modules[m] is not None))
"""


def test_model_engine_and_task_metrics_import_and_run_without_tensorflow():
  result = subprocess.run([sys.executable, "-c", TENSORFLOW_FREE], env=cli_env(1), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "tensorflow-free: []" in result.stdout


# ---- heatmaps: encoding and decoding are one module ------------------------------------------------------------


def test_heatmap_targets_decode_back_to_their_keypoints():
  """Gaussian targets (the recipes' encoding) decoded as predictions (the tasks' decoding) return every labelled
  keypoint to the heatmap cell it was rounded to; an unlabelled one gets no target and decodes to 0."""
  rng = np.random.default_rng(0)
  joints = rng.uniform(8, 184, size=(12, 2)).astype(np.float32)  # in a 192x256 input, away from the borders
  visible = np.ones(12, np.float32)
  visible[5] = 0
  heatmaps, weight = codec.gaussian_targets(tf.constant(joints), tf.constant(visible), (192, 256), (48, 64), 2.0)
  coords, maxvals = codec.heatmap_maxima(jnp.asarray(heatmaps.numpy())[None])
  expected = np.floor(joints / 4 + 0.5)  # the official rounding to the heatmap grid
  labelled = visible > 0
  chex.assert_trees_all_close(np.asarray(coords[0])[labelled], expected[labelled])
  np.testing.assert_array_equal(np.asarray(maxvals[0]) > 0.99, labelled)
  np.testing.assert_array_equal(weight.numpy(), visible)
  assert np.asarray(coords[0])[5].tolist() == [0.0, 0.0]
