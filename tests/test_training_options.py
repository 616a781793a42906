"""Optimizer/schedule construction and the engine's options (init_from, accumulation, EMA, bf16, per-device BN)."""

import os
import subprocess

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from hrnet_jax import compilation
from hrnet_jax import model as models
from hrnet_jax import tasks
from hrnet_jax.engine import config_lib, metric_writer, optim, sharding, trainer, weights
from hrnet_jax.model import convert, scan_layout
from helpers import REPO, cli_env, random_variables
from engine_runs import cli_args, one_device_run  # noqa: F401  (a fixture)


def schedule_config(**schedule):
  config = config_lib.base_config()
  config.optimizer.learning_rate = 0.1
  config.schedule.update(schedule)
  return config


def test_step_schedule_with_warmup_in_epochs():
  config = schedule_config(name="step", warmup_epochs=1.0, milestones=(3, 6), decay_factor=0.1)
  lr = optim.learning_rate_schedule(config, total_steps=100, steps_per_epoch=10)
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(29), lr(30), lr(59), lr(60), lr(99)],
                             [0.0, 0.05, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6, atol=1e-9)


def test_poly_and_cosine_reach_zero_at_the_end():
  for name in ("poly", "cosine"):
    lr = optim.learning_rate_schedule(schedule_config(name=name), total_steps=50, steps_per_epoch=10)
    assert float(lr(0)) == pytest.approx(0.1)
    assert float(lr(50)) == pytest.approx(0.0, abs=1e-7)
  poly = optim.learning_rate_schedule(schedule_config(name="poly", power=0.9), total_steps=50, steps_per_epoch=10)
  assert float(poly(25)) == pytest.approx(0.1 * 0.5**0.9)


def test_decay_mask_kernels_excludes_batchnorm_and_biases():
  params = {"conv": {"kernel": jnp.ones((3, 3, 1, 1))}, "bn": {"scale": jnp.ones(1), "bias": jnp.ones(1)},
            "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
  assert optim.decay_mask(params, "kernels") == {"conv": {"kernel": True}, "bn": {"scale": False, "bias": False},
                                                 "dense": {"kernel": True, "bias": False}}
  with pytest.raises(ValueError, match="unknown weight_decay_mask"):
    optim.decay_mask(params, "bias")


def test_sgd_weight_decay_is_added_to_the_gradient_like_pytorch():
  config = config_lib.base_config()
  config.optimizer.update(name="sgd", learning_rate=0.5, momentum=0.0, weight_decay=0.1)
  tx = optim.create_optimizer(config, lambda step: 0.5)
  params = {"w": {"kernel": jnp.array([2.0])}}
  updates, _ = tx.update({"w": {"kernel": jnp.array([1.0])}}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"]["kernel"], [-0.5 * (1.0 + 0.1 * 2.0)])


def assert_equals_torch_sgd(tx, params, steps, rate, decay):
  """Runs ``tx`` for ``steps`` on random gradients beside torch.optim.SGD's rule written out, per parameter group:
  the buffer accumulates gradient + decay x parameter (momentum 0.9), and the group's rate multiplies only the step.
  ``rate(step, path)`` and ``decay(path)`` give each leaf's group values (``path``: its dict keys)."""
  state = tx.init(params)
  reference = jax.tree.map(np.asarray, params)
  buffers = jax.tree.map(np.zeros_like, reference)
  rng = np.random.default_rng(0)
  keys = lambda path: tuple(entry.key for entry in path)
  for step in range(steps):
    grads = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), reference)
    updates, state = tx.update(jax.tree.map(jnp.asarray, grads), state, params)
    params = optax.apply_updates(params, updates)
    buffers = jax.tree_util.tree_map_with_path(lambda path, b, g, p: 0.9 * b + g + decay(keys(path)) * p, buffers,
                                               grads, reference)
    reference = jax.tree_util.tree_map_with_path(lambda path, p, b, step=step: p - rate(step, keys(path)) * b,
                                                 reference, buffers)
  chex.assert_trees_all_close(params, reference, rtol=1e-5)


def test_head_learning_rate_multiplier_is_pytorchs_parameter_group_for_exactly_the_head():
  """HRNet-OCR's NONBACKBONE_MULT: a second SGD group at lr x 10 along the poly schedule, momentum and L2 decay as
  torch.optim.SGD."""
  config = config_lib.base_config()
  config.optimizer.update(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4, head_lr_multiplier=10.0)
  config.schedule.update(name="poly", power=0.9)
  schedule = optim.learning_rate_schedule(config, total_steps=5, steps_per_epoch=5)
  params = {"backbone": {"conv": {"kernel": jnp.array([2.0, -1.0])}},
            "head": {"cls_head": {"kernel": jnp.array([0.5]), "bias": jnp.array([1.0])}}}
  assert_equals_torch_sgd(optim.create_optimizer(config, schedule), params, 4,
                          lambda step, path: 0.1 * (1 - step / 5) ** 0.9 * (10.0 if path[0] == "head" else 1.0),
                          lambda path: 1e-4)
  assert optim.head_mask(params) == {"backbone": {"conv": {"kernel": False}},
                                     "head": {"cls_head": {"kernel": True, "bias": True}}}


def test_warmup_starts_at_its_ratio_and_rises_or_stays():
  constant = optim.learning_rate_schedule(
      schedule_config(name="step", warmup_epochs=0.5, warmup="constant", warmup_ratio=1 / 3, milestones=(8,)),
      total_steps=100, steps_per_epoch=10)  # MMDetection's FCOS: 1/3 of the rate for the warm-up, then the rate
  np.testing.assert_allclose([constant(0), constant(4), constant(5), constant(79), constant(80)],
                             [0.1 / 3, 0.1 / 3, 0.1, 0.1, 0.01], rtol=1e-6)
  linear = optim.learning_rate_schedule(schedule_config(name="constant", warmup_epochs=1.0, warmup_ratio=0.5),
                                        total_steps=100, steps_per_epoch=10)
  np.testing.assert_allclose([linear(0), linear(5), linear(10)], [0.05, 0.075, 0.1], rtol=1e-6)
  config = schedule_config(warmup="cosine")
  with pytest.raises(ValueError, match="warmup"):
    config_lib.validate(config)


def test_bias_learning_rate_and_decay_are_mmdetections_for_conv_biases_only():
  """FCOS's ``paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.)``: conv/linear biases at lr x 2 without
  weight decay; norm scales and biases (GroupNorm, BatchNorm) and the rest at lr with decay, as torch.optim.SGD."""
  config = config_lib.base_config()
  config.optimizer.update(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-2,
                          weight_decay_mask="no_layer_bias", bias_lr_multiplier=2.0)
  tx = optim.create_optimizer(config, lambda step: 0.1)
  params = {"conv": {"kernel": jnp.array([2.0, -1.0]), "bias": jnp.array([1.0])},
            "gn": {"scale": jnp.array([1.5]), "bias": jnp.array([0.5])}, "scale": {"scale": jnp.array([1.0])}}
  assert optim.layer_bias_mask(params) == {"conv": {"kernel": False, "bias": True},
                                           "gn": {"scale": False, "bias": False}, "scale": {"scale": False}}
  conv_bias = lambda path: path == ("conv", "bias")
  assert_equals_torch_sgd(tx, params, 3, lambda step, path: 0.2 if conv_bias(path) else 0.1,
                          lambda path: 0.0 if conv_bias(path) else 1e-2)
  # On the FCOS detector: exactly its convolutions' biases (the neck's and the three predictors'; the towers' convs
  # and the backbone's have none), not the GroupNorm or BatchNorm biases nor the per-level scales.
  config = config_lib.load(os.path.join(REPO, "configs", "coco_detection.py:fcos_w18,tiny"))
  shapes = jax.eval_shape(tasks.create(config).create_model().init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  marked = [path for path, is_bias in flax.traverse_util.flatten_dict(optim.layer_bias_mask(shapes["params"])).items()
            if is_bias]
  assert sorted("/".join(path[:-1]) for path in marked) == [
      "head/bbox_head/fcos_centerness", "head/bbox_head/fcos_cls", "head/bbox_head/fcos_reg",
      *[f"head/neck/fpn_convs_{k}" for k in range(5)], "head/neck/reduction_conv"], marked


OPTIONS_RUN = {"total_steps": 4, "global_batch_size": 16, "eval_batch_size": 128, "log_every": 2,
               "checkpoint_every": 4, "best_metric": "eval/top1", "data.image_size": 32}


def train(workdir, data_dir, devices=1, **overrides):
  """The CLI, as users run it (one fresh process per run)."""
  result = subprocess.run(cli_args(workdir, data_dir, **{**OPTIONS_RUN, **overrides}), env=cli_env(devices),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stderr


def test_engine_options_train_and_init_from(data_dir, tmp_path, one_device_run):
  # Every option at once, starting from another run's (float64) weights.
  log = train(str(tmp_path / "second"), data_dir, devices=2, num_devices=2, per_device_bn=True,
              accumulation_steps=2, ema_decay=0.9, init_from=one_device_run,
              **{"model.dtype": "bfloat16", "optimizer.name": "adamw", "optimizer.learning_rate": 1e-3,
                 "optimizer.weight_decay": 0.05, "optimizer.grad_clip_norm": 1.0, "schedule.name": "poly",
                 "schedule.warmup_epochs": 0.01})
  assert "re-initialised 0: none" in log
  rows = metric_writer.read_metrics(str(tmp_path / "second"))
  assert [row["eval/count"] for row in rows if "eval/count" in row] == [200]  # SHORT_RUN evaluates 200 images
  assert all(np.isfinite(row["train/loss"]) for row in rows if "train/loss" in row)
  assert os.path.isdir(os.path.join(tmp_path, "second", "best"))  # best_metric: eval/top1



def test_init_from_a_pytorch_file_with_another_class_count(data_dir, tmp_path, caplog):
  """The backbone loads, the classifier is re-initialised, and the log says which (the loader train() calls)."""
  config = config_lib.load(os.path.join(REPO, "configs", "demo.py"))
  model = tasks.create(config).create_model()
  trained = random_variables(model)
  state_dict = convert.to_state_dict(trained)
  state_dict["classifier.weight"] = np.zeros((10, 256), np.float32)
  state_dict["classifier.bias"] = np.zeros((10,), np.float32)
  np.savez(tmp_path / "weights.npz", **state_dict)
  fresh = jax.tree.map(np.zeros_like, trained)
  with caplog.at_level("INFO"):
    loaded = weights.init_from(model, str(tmp_path / "weights.npz"), fresh)
  assert "re-initialised 2: classifier.bias, classifier.weight" in caplog.text
  chex.assert_trees_all_close(loaded["params"]["backbone"], trained["params"]["backbone"])
  assert loaded["params"]["head"]["classifier"]["kernel"].shape == (256, 4)  # fresh, of the model's class count


def test_init_from_a_v2_segmentation_run_starts_the_ocr_auxiliary_head(tmp_path):
  """A workdir's (Orbax) V2 head becomes the OCR model's ``aux_head``, as the official loader renames it."""
  v2 = models.create_model("hrnet_tiny", task="segmentation", num_classes=3)
  ocr = models.create_model("hrnet_tiny", task="segmentation", num_classes=3, head="ocr", ocr_mid_channels=8,
                            ocr_key_channels=4)
  trained = random_variables(v2)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", {"step": np.int32(5), **trained})
  checkpointer.wait_until_finished()
  loaded = weights.init_from(ocr, str(tmp_path / "ckpt"), jax.tree.map(np.zeros_like, random_variables(ocr)))
  chex.assert_trees_all_equal(loaded["params"]["head"]["aux_head_3"], trained["params"]["head"]["last_layer_3"])
  chex.assert_trees_all_equal(loaded["batch_stats"]["head"]["aux_head_1"],
                              trained["batch_stats"]["head"]["last_layer_1"])
  assert float(jnp.abs(loaded["params"]["head"]["cls_head"]["kernel"]).sum()) == 0  # fresh (here: the zeros given)


def test_init_from_an_orbax_checkpoint_of_the_other_layout(tmp_path):
  """Weights saved one entry per layer start a model that stacks its repeated layers."""
  per_layer = models.create_model("hrnet_tiny", task="segmentation", num_classes=3)
  scanned = models.create_model("hrnet_tiny", task="segmentation", num_classes=3, scan_repeats=True)
  trained = random_variables(per_layer)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", {"step": np.int32(5), **trained})
  checkpointer.wait_until_finished()
  fresh = jax.tree.map(np.zeros_like, random_variables(scanned))
  loaded = weights.init_from(scanned, str(tmp_path / "ckpt"), fresh)
  chex.assert_trees_all_equal_shapes(loaded, fresh)
  assert loaded["params"]["backbone"]["stage3_0_to_1"]["branches_0_0"]["conv1"]["kernel"].shape[0] == 2
  chex.assert_trees_all_equal({c: scan_layout.unstack(loaded[c]) for c in loaded}, trained)


class _DropoutNet(nn.Module):
  """The smallest model with dropout (the OCR head's Dropout2d is the same nn.Dropout): the train step's keys are
  what is tested, not HRNet."""

  @nn.compact
  def __call__(self, images, train=False):
    return nn.Dropout(0.5, deterministic=not train)(nn.Dense(8)(images.reshape(images.shape[0], -1)))


class _MeanOutput:
  def model_inputs(self, batch, train):
    del batch, train
    return {}

  def loss(self, outputs, batch):
    del batch
    return jnp.mean(outputs**2), {}


def test_dropout_draws_from_the_seed_and_the_step():
  """The train step's dropout keys: the same state and batch give the same loss (a resumed run draws what it would
  have), the next step draws other masks (the step number enters the loss through nothing else), and so does another
  seed."""
  config = config_lib.base_config()
  schedule = optim.learning_rate_schedule(config, total_steps=10, steps_per_epoch=10)
  tx = optim.create_optimizer(config, schedule)
  model = _DropoutNet()
  state = trainer.init_train_state(model, tx, (2, 2, 3), jax.random.key(0))
  image = jax.random.normal(jax.random.key(1), (1, 2, 2, 3))

  def loss(step=0, seed=0):
    config.seed = seed
    images = jnp.tile(image, (4, 1, 1, 1))
    train_step = trainer.make_train_step(model, _MeanOutput(), tx, schedule, config, sharding.make_mesh(1))
    copy = jax.tree.map(jnp.copy, state.replace(step=jnp.int32(step)))  # the step donates its state
    return float(train_step(copy, {"image": images, "mask": jnp.ones(images.shape[0])})[1]["loss"])

  assert loss() == loss() != loss(step=1)
  assert loss() != loss(seed=1)
