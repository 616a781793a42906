"""Building configs: the engine's defaults with a task's section and a recipe's data keys, each default written once;
parsing a config file's ``arg`` string; loading a config file.

Config files in ``configs/`` define ``get_config(arg)``; ``arg`` is ``"key=value,flag,..."`` (big_vision style),
e.g. ``configs/imagenet.py:variant=w32,tiny``. They start from ``base_config(task, recipe)``, which holds every key
the engine, the task and the recipe read, so ``--config.<key>=`` can override any of them.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

from hrnet_jax import tasks
from hrnet_jax.model import VARIANTS
from hrnet_jax.registry import unknown_name


def parse_arg(arg: str | None, positional: str | None = None, **defaults: Any) -> ml_collections.ConfigDict:
  """``"variant=w32,tiny"`` -> ConfigDict(variant='w32', tiny=True), typed by ``defaults``; unknown keys fail.

  ``positional`` names the key a bare first item sets: with ``positional="variant"``, ``"w32,tiny"`` is
  ``"variant=w32,tiny"``.
  """
  result = ml_collections.ConfigDict(defaults)
  for position, item in enumerate(filter(None, (arg or "").split(","))):
    key, _, value = item.partition("=")
    if position == 0 and positional and not value and key not in defaults:
      key, value = positional, item
    if not defaults:
      raise ValueError(f"this config takes no arg, got {item!r}")
    if key not in defaults:
      raise unknown_name("config arg", key, defaults)
    default = defaults[key]
    if not value:
      if not isinstance(default, bool):
        raise ValueError(f"config arg {key!r} needs a value ({key}=...)")
      result[key] = True
    elif isinstance(default, bool):
      result[key] = value.lower() in ("1", "true", "yes")
    else:
      try:
        result[key] = type(default)(value) if default is not None else value
      except ValueError:
        raise ValueError(f"config arg {key}={value!r} is not a {type(default).__name__}") from None
  return result


def check_choice(kind: str, value: str, known) -> str:
  """``value`` if it is one of ``known``; else the error listing them and the closest."""
  if value not in known:
    raise unknown_name(kind, value, known)
  return value


def base_config(task: str = "classification", recipe: str | None = None) -> ml_collections.ConfigDict:
  """Every key the engine, ``task`` and ``recipe`` (``data.preprocess``; default: the task's first recipe) read,
  with its default. Config files start from this and set what they need."""
  config = engine_config()
  spec = tasks.TASKS[task]
  recipe = tasks.recipes()[recipe] if recipe else spec.recipes[0]
  config.task = task
  config.data.preprocess = recipe.name
  _add(config, spec.config)
  _add(config.data, recipe.defaults)
  return config


def _add(config: ml_collections.ConfigDict, defaults: dict[str, Any]) -> None:
  for key, value in defaults.items():
    if key in config and isinstance(value, dict):
      _add(config[key], value)
    else:
      config[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value


def engine_config() -> ml_collections.ConfigDict:
  """The keys the engine reads (training loop, optimizer, checkpoints, datasets), with their defaults."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = ""
  # dtype: compute (bfloat16 for mixed precision); param_dtype: parameters and optimizer state.
  # scan_repeats: run a stage's identical modules and blocks as one nn.scan each (W18's train step compiles 3x
  # faster on CPU at the same step time; checkpoints then stack those layers, and every loader converts).
  config.model = ml_collections.ConfigDict({"name": "hrnet_tiny", "dtype": "float32", "param_dtype": "float32",
                                            "scan_repeats": False, "overrides": {}})
  config.data = ml_collections.ConfigDict({
      "name": "synthetic_shapes", "data_dir": placeholder(str), "manual_dir": placeholder(str),
      "train_split": "train", "eval_split": "validation", "preprocess": "",
      # Only the examples with labelled keypoints (a dataset that stores them first and counts them in its
      # metadata, as coco_keypoints).
      "labelled_only": False,
  })
  config.global_batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 1.0
  config.total_steps = 0  # > 0 overrides num_epochs
  config.optimizer = ml_collections.ConfigDict({
      "name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": False, "b1": 0.9, "b2": 0.999,
      "weight_decay": 0.0, "weight_decay_mask": "all", "grad_clip_norm": 0.0,
      # The head's learning rate is this times the backbone's, at every step of the schedule (HRNet-OCR's
      # TRAIN.NONBACKBONE_MULT for the parameters of its cls/aux/ocr layers, i.e. exactly the head's).
      "head_lr_multiplier": 1.0,
      # The conv/linear biases' learning rate is this times the others' (MMDetection's bias_lr_mult: 2 for FCOS).
      "bias_lr_multiplier": 1.0,
  })
  config.schedule = ml_collections.ConfigDict({
      "name": "cosine", "warmup_epochs": 0.0, "milestones": (), "decay_factor": 0.1, "power": 0.9,
      # The warm-up starts at warmup_ratio x the rate: 'linear' rises to it, 'constant' stays (MMDetection's).
      "warmup": "linear", "warmup_ratio": 0.0})
  config.accumulation_steps = 1
  config.ema_decay = 0.0  # > 0 keeps an exponential moving average of the parameters, used for evaluation
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
  # JAX's persistent compilation cache, so that a resumed run loads its compiled steps: "" keeps the folder JAX
  # was given (JAX_COMPILATION_CACHE_DIR) or else uses WORKDIR/compilation_cache; "off"; or any folder.
  config.compilation_cache_dir = ""
  config.profile_steps = 0  # > 0: a jax.profiler trace of that many steps (from the third) in WORKDIR/tensorboard
  config.preview_images = 4  # predictions drawn into TensorBoard at each evaluation (0: none)
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


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails, naming the key, the value and what is expected, on a config no run can use: called before anything is
  compiled or written."""
  def require(key: str, ok: bool, expected: str) -> None:
    if not ok:
      value = config
      for part in key.split("."):
        value = value[part]
      raise ValueError(f"--config.{key}={value!r}: expected {expected}")

  for key in ("global_batch_size", "eval_batch_size", "log_every", "checkpoint_every", "keep_checkpoints",
              "accumulation_steps"):
    require(key, config[key] >= 1, "a positive integer")
  for key in ("profile_steps", "preview_images"):
    require(key, config[key] >= 0, "0 (off) or a positive integer")
  require("total_steps", config.total_steps >= 0, "0 (train for num_epochs) or a positive number of steps")
  require("num_epochs", config.total_steps or config.num_epochs > 0, "a positive number of epochs")
  require("eval_every", config.eval_every >= 0, "0 (at the end only) or a positive number of steps")
  require("optimizer.learning_rate", config.optimizer.learning_rate > 0, "a positive learning rate")
  for key in ("weight_decay", "grad_clip_norm"):
    require(f"optimizer.{key}", config.optimizer[key] >= 0, "0 (off) or a positive value")
  for key in ("head_lr_multiplier", "bias_lr_multiplier"):
    require(f"optimizer.{key}", config.optimizer[key] > 0, "a positive factor")
  require("schedule.warmup_epochs", config.schedule.warmup_epochs >= 0, "0 or a positive number of epochs")
  require("ema_decay", 0 <= config.ema_decay < 1, "0 (off) or a decay in (0, 1)")
  require("best_mode", config.best_mode in ("max", "min"), "'max' or 'min'")
  if config.schedule.name == "step" and not config.total_steps:
    late = [m for m in config.schedule.milestones if not 0 < m < config.num_epochs]
    require("schedule.milestones", not late, f"epochs between 0 and num_epochs={config.num_epochs} ({late} are not)")
  check_choice("optimizer (--config.optimizer.name)", config.optimizer.name, ("sgd", "adam", "adamw"))
  check_choice("schedule (--config.schedule.name)", config.schedule.name, ("constant", "cosine", "poly", "step"))
  check_choice("weight_decay_mask", config.optimizer.weight_decay_mask, ("all", "kernels", "no_layer_bias"))
  check_choice("warmup (--config.schedule.warmup)", config.schedule.warmup, ("linear", "constant"))
  require("schedule.warmup_ratio", 0 <= config.schedule.warmup_ratio <= 1, "between 0 and 1")
  for key in ("dtype", "param_dtype"):
    check_choice(f"model.{key}", config.model[key], ("float32", "bfloat16", "float16", "float64"))
  VARIANTS[config.model.name]  # pylint: disable=pointless-statement  (an unknown variant names the known ones)
  spec = tasks.TASKS[config.task]
  recipe = tasks.recipes()[config.data.preprocess]
  upsample = config.model.overrides.get("fusion_upsample", spec.model.fusion_upsample)
  if upsample == "nearest":
    data = ml_collections.ConfigDict({**recipe.defaults, **config.data.to_dict()})  # as tasks.create fills it
    for phase, keys in zip(("training", "evaluation"), recipe.batch_keys(data)):
      height, width = keys["image"].shape[:2]
      if height % 32 or width % 32:
        raise ValueError(f"the {phase} input of recipe {recipe.name!r} is {height}x{width} (set in config.data), but "
                         "nearest fusion upsampling needs multiples of 32; change the size, or set "
                         "--config.model.overrides.fusion_upsample=bilinear")
