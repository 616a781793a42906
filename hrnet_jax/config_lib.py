"""Shared config pieces: the engine's defaults, and parsing of a config file's ``arg`` string.

Config files in ``configs/`` define ``get_config(arg)``; ``arg`` is ``"key=value,flag,..."`` (big_vision style),
e.g. ``configs/imagenet.py:variant=w32,tiny``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

from hrnet_jax import label_sets


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """``"variant=w32,tiny"`` -> ConfigDict(variant='w32', tiny=True), typed by ``defaults``; unknown keys fail."""
  result = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"unknown config arg {key!r}; known: {', '.join(defaults)}")
    default = defaults[key]
    if not value:
      if not isinstance(default, bool):
        raise ValueError(f"config arg {key!r} needs a value ({key}=...)")
      result[key] = True
    elif isinstance(default, bool):
      result[key] = value.lower() in ("1", "true", "yes")
    else:
      result[key] = type(default)(value) if default is not None else value
  return result


def base_config() -> ml_collections.ConfigDict:
  """Every key the engine reads, with its default. Config files start from this and set what they need."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "classification"
  # dtype: compute (bfloat16 for mixed precision); param_dtype: parameters and optimizer state.
  # scan_repeats: run a stage's identical modules and blocks as one nn.scan each (W18's train step compiles 3x
  # faster on CPU at the same step time; checkpoints then stack those layers, and every loader converts).
  config.model = ml_collections.ConfigDict({"name": "hrnet_tiny", "dtype": "float32", "param_dtype": "float32",
                                            "scan_repeats": False, "overrides": {}})
  config.data = ml_collections.ConfigDict({
      "name": "synthetic_shapes", "data_dir": placeholder(str), "manual_dir": placeholder(str),
      "train_split": "train", "eval_split": "validation", "preprocess": "synthetic_classification",
      "image_size": 0,  # synthetic data: resize to this square size (0: native 64x64); tests use 32
  })
  config.global_batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 1.0
  config.total_steps = 0  # > 0 overrides num_epochs
  config.optimizer = ml_collections.ConfigDict({
      "name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": False, "b1": 0.9, "b2": 0.999,
      "weight_decay": 0.0, "weight_decay_mask": "all", "grad_clip_norm": 0.0,
  })
  config.schedule = ml_collections.ConfigDict({
      "name": "cosine", "warmup_epochs": 0.0, "milestones": (), "decay_factor": 0.1, "power": 0.9})
  config.accumulation_steps = 1
  config.ema_decay = 0.0  # > 0 keeps an exponential moving average of the parameters, used for evaluation
  config.label_smoothing = 0.0
  config.per_device_bn = False  # True: BatchNorm statistics per device, as PyTorch DDP without SyncBN
  config.num_devices = 0  # 0: every device of every process
  config.log_every = 10
  config.eval_every = 0  # 0: only at the end
  config.eval_at_start = False  # also evaluate the initial (or init_from) weights, as step 0
  config.checkpoint_every = 100
  config.keep_checkpoints = 2
  config.best_metric = placeholder(str)
  config.best_mode = "max"
  config.init_from = ""  # an Orbax checkpoint or a PyTorch file; not for resuming (that is automatic)
  return config


def config_module(path: str) -> Any:
  """The config file at ``path`` as a module (its ``get_config`` and constants such as the paper's numbers)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"no config file {path}")
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(path_and_arg: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
  """Loads ``configs/<file>.py[:arg]`` and applies ``{"a.b": value}`` overrides (for tests and tools)."""
  path, _, arg = path_and_arg.partition(":")
  config = config_module(path).get_config(arg or None)
  for dotted, value in (overrides or {}).items():
    *parents, leaf = dotted.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    if leaf not in node:
      raise KeyError(f"unknown config key {dotted!r}")
    node[leaf] = value
  return config


def segmentation_config(*, model: str, dataset: str, labels: str, crop: tuple[int, int], base_size: int,
                        eval_canvas: tuple[int, int], batch: int, epochs: int, learning_rate: float,
                        weight_decay: float) -> ml_collections.ConfigDict:
  """The HRNet-Semantic-Segmentation recipe: SGD (momentum 0.9, decay on every parameter), poly 0.9 per step, random
  scale 0.5-2.1 / crop / flip, cross-entropy ignoring 255, whole-image single-scale evaluation during training."""
  config = base_config()
  config.task = "segmentation"
  config.model.name = model
  config.model.overrides = {"num_classes": len(label_sets.get(labels).class_names)}
  config.data.update(name=f"semantic_segmentation/{dataset}", train_split="train", eval_split="validation",
                     preprocess="segmentation")
  config.data.labels = labels
  config.data.crop_size = crop
  config.data.base_size = base_size
  config.data.scale_steps = 16
  config.data.resize_to_crop_first = False
  config.data.flip = True
  config.data.ignore_background = False
  config.data.eval_image_size = ()  # resize eval images to this (h, w) first; () keeps them
  config.data.eval_canvas = eval_canvas  # eval images are padded into this (h, w)
  config.data.label_canvas = ()  # eval labels are padded into this; () is eval_canvas
  config.data.variable_size = False  # eval images of several sizes
  config.class_weights = False
  config.ohem = ml_collections.ConfigDict({"enabled": False, "threshold": 0.9, "min_kept": 131072})
  # The evaluation protocol (segmentation_inference.InferenceOptions), stated beside every mIoU.
  config.test = ml_collections.ConfigDict({"mode": "whole", "window": (0, 0), "stride": 2 / 3, "pad_to_window": True,
                                           "base_size": 0, "scales": (1.0,), "flip": False})
  config.global_batch_size = batch
  config.eval_batch_size = 8
  config.num_epochs = epochs
  config.optimizer.update(name="sgd", learning_rate=learning_rate, momentum=0.9, nesterov=False,
                          weight_decay=weight_decay, weight_decay_mask="all")
  config.schedule.update(name="poly", warmup_epochs=0.0, power=0.9)
  config.log_every = 50
  config.checkpoint_every = 1000
  config.best_metric = "eval/miou"
  return config


def tiny_segmentation(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` switched to hrnet_tiny on the synthetic shapes' masks (5 classes, 64x64), for a CPU in minutes;
  the dataset's flip and loss options stay."""
  config.model.name = "hrnet_tiny"
  config.model.overrides = {"num_classes": len(label_sets.get("synthetic_shapes").class_names)}
  config.data.update(name="synthetic_shapes", train_split="train", eval_split="validation", labels="synthetic_shapes",
                     crop_size=(48, 48), base_size=64, eval_image_size=(), eval_canvas=(64, 64), label_canvas=(),
                     variable_size=False, resize_to_crop_first=False, ignore_background=False)
  config.class_weights = False
  config.test.update(window=(48, 48), base_size=0)
  config.global_batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 2
  config.optimizer.learning_rate = 0.1
  config.log_every = 20
  config.checkpoint_every = 200
  return config
