"""``create_model('hrnet_w32', task='pose')``: a named variant with the head and options of a task, timm-style.

Variants are data (``variants.VARIANTS``); each task declares the network its official codebase uses
(``ModelDefaults``) in its ``TaskSpec``, found through the one task registry (``hrnet_jax.tasks.TASKS``). Nothing
here subclasses the network.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax.model import heads
from hrnet_jax.model.backbone import FusionOptions, HRNetBackbone, HRNetSpec
from hrnet_jax.model.variants import resolve_spec
from hrnet_jax.registry import unknown_name


class HRNet(nn.Module):
  """A backbone and an optional head. Without a head it returns the four branch outputs (``features``)."""
  backbone: HRNetBackbone
  head: nn.Module | None = None

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False, **head_inputs: jax.Array) -> Any:
    """images: NHWC, normalised. Returns the head's output (float32) or the list of branch features.
    ``head_inputs`` go to the head (a two-stage detector's ground truth in training: ``Task.model_inputs``)."""
    features = self.backbone(images, train=train)
    return features if self.head is None else self.head(features, train=train, **head_inputs)


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """A head a task brings beside the shared ones (segmentation's OCR, detection's FCOS): its Flax module, a
  ``"module:Class"`` reference imported on first use; the options it adds to ``create_model``, with their defaults;
  the shared head options it also reads (``shared``: the ``fpn_*`` of a detector's V2p neck); and the options its
  official code sets differently from the task's (``network_defaults``: OCR's align_corners=True, FCOS's
  fpn_stride=2). The module is built with those of ``num_outputs``, ``align_corners``, ``bn_momentum``, ``dtype``,
  ``param_dtype`` that are its fields, and these options; it initialises its layers its own way (``conv_init``
  applies to the backbone)."""
  module: str
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  network_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  shared: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelDefaults:
  """The network a task uses, as its official codebase builds it; every field can be overridden in
  ``create_model``. A task declares one in its ``TaskSpec`` (``hrnet_jax.tasks``)."""
  head: str | None  # 'classification', 'v1', 'v1h', 'v2', 'v2p' or None (features)
  count_name: str | None = None  # the argument naming the number of outputs
  count: int | None = None
  fusion_upsample: str = "nearest"
  align_corners: bool = False
  bn_momentum: float = 0.1
  fixed_stage1: bool = False
  mix: bool = False
  # The official pose network stops computing the lower branches in its last module when the head reads only the
  # 1x branch (V1 on branch 0).
  prune_last_module: bool = False
  # Heads of this task only, by the name ``head=`` takes.
  task_heads: Mapping[str, HeadSpec] = dataclasses.field(default_factory=dict)


BACKBONE_OPTIONS = ("fusion_upsample", "align_corners", "fusion_downsample", "fusion_op", "fuse_schedule",
                    "four_streams", "fixed_stage1", "multi_scale_output", "bn_momentum", "conv_init", "norm_eval",
                    "scan_repeats", "dtype", "param_dtype")
HEAD_OPTIONS = ("head", "head_branch", "mix", "final_conv_kernel", "fpn_channels", "fpn_levels", "fpn_stride",
                "fpn_pooling", "fpn_representation", "head_channels", "final_channels")


def _registered_tasks():
  # Imported when first needed, not at the top: the task declarations import this module (for ModelDefaults).
  from hrnet_jax import tasks  # pylint: disable=import-outside-toplevel
  return tasks.TASKS


def model_defaults(task: str) -> ModelDefaults:
  """The network ``task`` declares (through the task registry)."""
  return _registered_tasks()[task].model


def option_default(task: str, overrides: Mapping[str, Any], name: str) -> Any:
  """The value ``create_model(..., task=task, **overrides)`` uses for the ``ModelDefaults`` field ``name``: the
  override, else the chosen task head's network default, else the task's."""
  defaults = model_defaults(task)
  head = defaults.task_heads.get(overrides.get("head", defaults.head))
  return overrides.get(name, head.network_defaults.get(name, getattr(defaults, name)) if head else getattr(
      defaults, name))


def output_count(task: str, overrides: Mapping[str, Any]) -> int | None:
  """How many outputs a model of ``task`` built with ``overrides`` has (None for tasks without an output count)."""
  defaults = model_defaults(task)
  return overrides.get(defaults.count_name, defaults.count) if defaults.count_name else None


def create_model(name: str | HRNetSpec | Mapping[str, Any], task: str = "classification", **overrides) -> HRNet:
  """Builds an HRNet for a task with the official defaults of that task's codebase.

  Args:
    name: a variant (``hrnet_w18_small_v1`` ... ``hrnet_w64``, ``hrnet_tiny``), an ``HRNetSpec``, or an official
      ``MODEL.EXTRA`` mapping.
    task: a registered task (``hrnet_jax.tasks.TASKS``): classification, pose, segmentation, landmarks,
      detection (FCOS or CenterNet; ``head='v2p'`` gives the bare HRFPN pyramid), or features (no head, the
      network without a training task).
    **overrides: the output count (``num_classes``, ``num_keypoints`` or ``num_landmarks``, by task) and any of
      BACKBONE_OPTIONS / HEAD_OPTIONS, e.g. ``fusion_upsample='bilinear'``, ``head='v1h'``, ``dtype=jnp.bfloat16``.
  """
  spec = resolve_spec(name)
  defaults = model_defaults(task)
  head_options = {k: v for head_spec in defaults.task_heads.values() for k, v in head_spec.options.items()}
  allowed = set(BACKBONE_OPTIONS) | set(HEAD_OPTIONS) | set(head_options) | ({defaults.count_name} - {None})
  count_names = {t.model.count_name for t in _registered_tasks().values()} - {None}
  for key in overrides:
    if key in count_names and key != defaults.count_name:
      raise ValueError(f"task {task!r} takes its output count as "
                       f"{defaults.count_name or 'nothing (it has no output count)'}, not {key}")
    if key not in allowed:
      raise unknown_name(f"option for task {task!r}", key, sorted(allowed))
  head = overrides.get("head", defaults.head)
  chosen = defaults.task_heads.get(head)
  for name, head_spec in defaults.task_heads.items():
    stray = sorted(set(head_spec.options) & set(overrides) - set(chosen.options if chosen else ())) \
        if head != name else []
    if stray:
      raise ValueError(f"{', '.join(stray)} only apply to head={name!r}; this model's head is {head!r}")
  chosen_head_defaults = {k: v for k, v in (chosen.network_defaults if chosen else {}).items() if k in HEAD_OPTIONS}
  options = {"fusion_upsample": defaults.fusion_upsample,
             "align_corners": option_default(task, overrides, "align_corners"),
             "fusion_downsample": "strided_conv", "fusion_op": "sum", "fuse_schedule": "every",
             "four_streams": False, "fixed_stage1": defaults.fixed_stage1,
             "bn_momentum": option_default(task, overrides, "bn_momentum"),
             "conv_init": "he", "norm_eval": False, "scan_repeats": False,
             "dtype": jnp.float32, "param_dtype": jnp.float32, "head": defaults.head, "head_branch": 0,
             "mix": defaults.mix, "final_conv_kernel": 1, "fpn_channels": 256, "fpn_levels": 5,
             "fpn_stride": 1, "fpn_pooling": "avg", "fpn_representation": "v2", "head_channels": (32, 64, 128, 256),
             "final_channels": 2048, **head_options, **(chosen.options if chosen else {}), **chosen_head_defaults,
             **overrides}  # the chosen head's option defaults over another head's of the same name
  count = output_count(task, overrides)
  multi_scale = not (defaults.prune_last_module and options["head"] in ("v1", "v1h") and options["head_branch"] == 0)
  if options["four_streams"]:
    spec = spec.four_streams_from_start()
  backbone = HRNetBackbone(
      spec=spec,
      fusion=FusionOptions(options["fusion_upsample"], options["align_corners"], options["fusion_downsample"],
                           options["fusion_op"]),
      fixed_stage1=options["fixed_stage1"], fuse_schedule=options["fuse_schedule"],
      multi_scale_output=options.get("multi_scale_output", multi_scale), bn_momentum=options["bn_momentum"],
      conv_init=options["conv_init"], norm_eval=options["norm_eval"], scan_repeats=options["scan_repeats"],
      dtype=options["dtype"], param_dtype=options["param_dtype"])
  return HRNet(backbone=backbone, head=_make_head(options, count, defaults.task_heads))


def _make_head(options: dict[str, Any], count: int | None, task_heads: Mapping[str, HeadSpec]) -> nn.Module | None:
  head = options["head"]
  common = {"dtype": options["dtype"], "param_dtype": options["param_dtype"], "conv_init": options["conv_init"]}
  if head is None:
    return None
  if head in task_heads:
    from hrnet_jax.tasks.spec import resolve  # pylint: disable=import-outside-toplevel  (tasks import this module)
    spec = task_heads[head]
    module = resolve(spec.module)
    given = {"num_outputs": count, "align_corners": options["align_corners"], "bn_momentum": options["bn_momentum"],
             "dtype": options["dtype"], "param_dtype": options["param_dtype"]}
    fields = {field.name for field in dataclasses.fields(module)}
    return module(**{k: v for k, v in given.items() if k in fields},
                  **{name: options[name] for name in (*spec.options, *spec.shared)})
  if head == "classification":
    return heads.ClassificationHead(num_classes=count, head_channels=tuple(options["head_channels"]),
                                    final_channels=options["final_channels"], bn_momentum=options["bn_momentum"],
                                    **common)
  if head == "v2p":
    return heads.HRFPNHead(out_channels=options["fpn_channels"], num_levels=options["fpn_levels"],
                           conv_stride=options["fpn_stride"], pooling=options["fpn_pooling"],
                           align_corners=options["align_corners"], representation=options["fpn_representation"],
                           bn_momentum=options["bn_momentum"], **common)
  if head in ("v1", "v1h", "v2"):
    if count is None:
      raise ValueError(f"head {head!r} needs an output count for this task")
    return heads.DenseHead(
        num_outputs=count, representation=head, branch=options["head_branch"],
        mix=options["mix"] or head == "v1h", final_conv_kernel=options["final_conv_kernel"],
        align_corners=options["align_corners"], bn_momentum=options["bn_momentum"], **common)
  raise unknown_name("head", head, ["classification", "v1", "v1h", "v2", "v2p", *task_heads, "None"])


def count_parameters(model: nn.Module, input_shape: tuple[int, ...] = (1, 64, 64, 3)) -> int:
  """Number of trainable parameters (BatchNorm statistics excluded), computed without allocating them."""
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(input_shape, jnp.float32))
  return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
