"""Named HRNet variants and tasks, timm-style: ``create_model('hrnet_w32', task='pose')``.

Variants are data (the official stage specs); tasks are data (the head and the options each official codebase
uses). Nothing here subclasses the network.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax import heads
from hrnet_jax.hrnet import FusionOptions, HRNetBackbone, HRNetSpec, StageSpec


class HRNet(nn.Module):
  """A backbone and an optional head. Without a head it returns the four branch outputs (``features``)."""
  backbone: HRNetBackbone
  head: nn.Module | None = None

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> Any:
    """images: NHWC, normalised. Returns the head's output (float32) or the list of branch features."""
    features = self.backbone(images, train=train)
    return features if self.head is None else self.head(features, train=train)


def _width_spec(c: int) -> HRNetSpec:
  return HRNetSpec((
      StageSpec(1, "BOTTLENECK", (4,), (64,)),
      StageSpec(1, "BASIC", (4, 4), (c, 2 * c)),
      StageSpec(4, "BASIC", (4, 4, 4), (c, 2 * c, 4 * c)),
      StageSpec(3, "BASIC", (4, 4, 4, 4), (c, 2 * c, 4 * c, 8 * c)),
  ))


# The official stage specs (HRNet-Image-Classification experiments/*.yaml).
VARIANTS: dict[str, HRNetSpec] = {
    "hrnet_w18_small_v1": HRNetSpec((
        StageSpec(1, "BOTTLENECK", (1,), (32,)),
        StageSpec(1, "BASIC", (2, 2), (16, 32)),
        StageSpec(1, "BASIC", (2, 2, 2), (16, 32, 64)),
        StageSpec(1, "BASIC", (2, 2, 2, 2), (16, 32, 64, 128)),
    )),
    "hrnet_w18_small_v2": HRNetSpec((
        StageSpec(1, "BOTTLENECK", (2,), (64,)),
        StageSpec(1, "BASIC", (2, 2), (18, 36)),
        StageSpec(3, "BASIC", (2, 2, 2), (18, 36, 72)),
        StageSpec(2, "BASIC", (2, 2, 2, 2), (18, 36, 72, 144)),
    )),
    **{f"hrnet_w{c}": _width_spec(c) for c in (18, 30, 32, 40, 44, 48, 64)},
    # A CPU-sized network for tests and demos: every structural feature, a few thousand times fewer FLOPs.
    "hrnet_tiny": HRNetSpec((
        StageSpec(1, "BOTTLENECK", (1,), (16,)),
        StageSpec(1, "BASIC", (1, 1), (8, 16)),
        StageSpec(2, "BASIC", (1, 1, 1), (8, 16, 32)),
        StageSpec(2, "BASIC", (1, 1, 1, 1), (8, 16, 32, 64)),
    )),
}


@dataclasses.dataclass(frozen=True)
class TaskDefaults:
  """What the official codebase of a task uses; every field can be overridden in ``create_model``."""
  head: str | None  # 'classification', 'v1', 'v1h', 'v2', 'v2p' or None (features)
  count_name: str | None  # the argument naming the number of outputs
  count: int | None
  fusion_upsample: str
  align_corners: bool
  bn_momentum: float
  fixed_stage1: bool
  mix: bool = False


TASKS: dict[str, TaskDefaults] = {
    # HRNet-Image-Classification: nearest fusion upsampling, stage 1 from the YAML.
    "classification": TaskDefaults("classification", "num_classes", 1000, "nearest", False, 0.1, False),
    # deep-high-resolution-net.pytorch: stage 1 hard-wired, last module outputs only the 1x branch.
    "pose": TaskDefaults("v1", "num_keypoints", 17, "nearest", False, 0.1, True),
    # HRNet-Semantic-Segmentation (pytorch-v1.1): bilinear everywhere, BN momentum 0.01.
    "segmentation": TaskDefaults("v2", "num_classes", 19, "bilinear", False, 0.01, False, mix=True),
    # HRNet-Facial-Landmark-Detection: the segmentation network with a heatmap output.
    "landmarks": TaskDefaults("v2", "num_landmarks", 98, "bilinear", False, 0.01, False, mix=True),
    # MMDetection's HRNet + HRFPN.
    "detection": TaskDefaults("v2p", None, None, "nearest", False, 0.1, False),
    "features": TaskDefaults(None, None, None, "nearest", False, 0.1, False),
}

BACKBONE_OPTIONS = ("fusion_upsample", "align_corners", "fusion_downsample", "fusion_op", "fuse_schedule",
                    "four_streams", "fixed_stage1", "multi_scale_output", "bn_momentum", "conv_init", "scan_repeats",
                    "dtype", "param_dtype")
HEAD_OPTIONS = ("head", "head_branch", "mix", "final_conv_kernel", "fpn_channels", "head_channels", "final_channels")


def _unknown(kind: str, value: Any, known: list[str]) -> ValueError:
  close = difflib.get_close_matches(str(value), known, n=3)
  hint = f" (did you mean {', '.join(close)}?)" if close else ""
  return ValueError(f"unknown {kind} {value!r}{hint}; known: {', '.join(known)}")


def resolve_spec(name_or_spec: str | HRNetSpec | Mapping[str, Any]) -> HRNetSpec:
  """A named variant, an ``HRNetSpec``, or an official YAML ``MODEL.EXTRA`` mapping."""
  if isinstance(name_or_spec, HRNetSpec):
    return name_or_spec
  if isinstance(name_or_spec, Mapping):
    return HRNetSpec.from_official(name_or_spec)
  if name_or_spec not in VARIANTS:
    raise _unknown("variant", name_or_spec, list(VARIANTS))
  return VARIANTS[name_or_spec]


def output_count(task: str, overrides: Mapping[str, Any]) -> int | None:
  """How many outputs a model of ``task`` built with ``overrides`` has (None for tasks without an output count)."""
  defaults = TASKS[task]
  return overrides.get(defaults.count_name, defaults.count) if defaults.count_name else None


def create_model(name: str | HRNetSpec | Mapping[str, Any], task: str = "classification", **overrides) -> HRNet:
  """Builds an HRNet for a task with the official defaults of that task's codebase.

  Args:
    name: a variant (``hrnet_w18_small_v1`` ... ``hrnet_w64``, ``hrnet_tiny``), an ``HRNetSpec``, or an official
      ``MODEL.EXTRA`` mapping.
    task: classification, pose, segmentation, landmarks, detection or features.
    **overrides: the output count (``num_classes``, ``num_keypoints`` or ``num_landmarks``, by task) and any of
      BACKBONE_OPTIONS / HEAD_OPTIONS, e.g. ``fusion_upsample='bilinear'``, ``head='v1h'``, ``dtype=jnp.bfloat16``.
  """
  spec = resolve_spec(name)
  if task not in TASKS:
    raise _unknown("task", task, list(TASKS))
  defaults = TASKS[task]
  allowed = set(BACKBONE_OPTIONS) | set(HEAD_OPTIONS) | ({defaults.count_name} - {None})
  count_names = {t.count_name for t in TASKS.values()} - {None}
  for key in overrides:
    if key in count_names and key != defaults.count_name:
      raise ValueError(f"task {task!r} takes its output count as "
                       f"{defaults.count_name or 'nothing (it has no output count)'}, not {key}")
    if key not in allowed:
      raise _unknown(f"option for task {task!r}", key, sorted(allowed))
  options = {"fusion_upsample": defaults.fusion_upsample, "align_corners": defaults.align_corners,
             "fusion_downsample": "strided_conv", "fusion_op": "sum", "fuse_schedule": "every",
             "four_streams": False, "fixed_stage1": defaults.fixed_stage1, "bn_momentum": defaults.bn_momentum,
             "conv_init": "he", "scan_repeats": False,
             "dtype": jnp.float32, "param_dtype": jnp.float32, "head": defaults.head, "head_branch": 0,
             "mix": defaults.mix, "final_conv_kernel": 1, "fpn_channels": 256, "head_channels": (32, 64, 128, 256),
             "final_channels": 2048, **overrides}
  count = output_count(task, overrides)
  # The official pose network stops computing the lower branches in its last module: only 1x is used.
  multi_scale = not (options["head"] in ("v1", "v1h") and options["head_branch"] == 0 and task == "pose")
  if options["four_streams"]:
    spec = spec.four_streams_from_start()
  backbone = HRNetBackbone(
      spec=spec,
      fusion=FusionOptions(options["fusion_upsample"], options["align_corners"], options["fusion_downsample"],
                           options["fusion_op"]),
      fixed_stage1=options["fixed_stage1"], fuse_schedule=options["fuse_schedule"],
      multi_scale_output=options.get("multi_scale_output", multi_scale), bn_momentum=options["bn_momentum"],
      conv_init=options["conv_init"], scan_repeats=options["scan_repeats"], dtype=options["dtype"],
      param_dtype=options["param_dtype"])
  return HRNet(backbone=backbone, head=_make_head(options, count))


def _make_head(options: dict[str, Any], count: int | None) -> nn.Module | None:
  head = options["head"]
  common = {"dtype": options["dtype"], "param_dtype": options["param_dtype"], "conv_init": options["conv_init"]}
  if head is None:
    return None
  if head == "classification":
    return heads.ClassificationHead(num_classes=count, head_channels=tuple(options["head_channels"]),
                                    final_channels=options["final_channels"], bn_momentum=options["bn_momentum"],
                                    **common)
  if head == "v2p":
    return heads.HRFPNHead(out_channels=options["fpn_channels"], align_corners=options["align_corners"], **common)
  if head in ("v1", "v1h", "v2"):
    if count is None:
      raise ValueError(f"head {head!r} needs an output count for this task")
    return heads.DenseHead(
        num_outputs=count, representation=head, branch=options["head_branch"],
        mix=options["mix"] or head == "v1h", final_conv_kernel=options["final_conv_kernel"],
        align_corners=options["align_corners"], bn_momentum=options["bn_momentum"], **common)
  raise _unknown("head", head, ["classification", "v1", "v1h", "v2", "v2p", "None"])


def count_parameters(model: nn.Module, input_shape: tuple[int, ...] = (1, 64, 64, 3)) -> int:
  """Number of trainable parameters (BatchNorm statistics excluded), computed without allocating them."""
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(input_shape, jnp.float32))
  return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
