"""The HRNet backbone (Wang et al., TPAMI 2020), built from data.

A network is a stem, stage 1 (one branch of residual blocks), then stages 2-4 made of multi-resolution modules:
parallel branches of residual blocks followed by a fusion that exchanges information across resolutions.
Every difference between the official PyTorch codebases, and every ablation of the paper, is a field here.

Submodule names follow the official PyTorch state_dict with ``.`` before an index written as ``_``
(``stage2.0.fuse_layers.1.0.0.0`` is ``stage2_0/fuse_layers_1_0_0_0``), so weight import is a renaming rule.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Callable, ClassVar, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax.model import layers, scan_layout
from hrnet_jax.model.layers import ModuleDef

BlockName = Literal["BASIC", "BOTTLENECK"]
FuseSchedule = Literal["every", "across", "final"]


@dataclasses.dataclass(frozen=True)
class StageSpec:
  """One stage, as the official YAML's ``STAGEk`` describes it (channels before block expansion)."""
  num_modules: int
  block: BlockName
  num_blocks: tuple[int, ...]
  num_channels: tuple[int, ...]

  def __post_init__(self):
    if self.block not in BLOCKS:
      raise ValueError(f"unknown block {self.block!r}; known: {sorted(BLOCKS)}")
    if len(self.num_blocks) != len(self.num_channels):
      raise ValueError(f"num_blocks {self.num_blocks} and num_channels {self.num_channels} differ in length")

  @property
  def num_branches(self) -> int:
    return len(self.num_channels)

  @property
  def out_channels(self) -> tuple[int, ...]:
    return tuple(c * BLOCKS[self.block].expansion for c in self.num_channels)


@dataclasses.dataclass(frozen=True)
class HRNetSpec:
  """The four stages of an HRNet. Stage 1 has one branch; each later stage usually adds one."""
  stages: tuple[StageSpec, StageSpec, StageSpec, StageSpec]

  @classmethod
  def from_official(cls, extra: dict[str, Any]) -> "HRNetSpec":
    """Builds a spec from the official YAML ``MODEL.EXTRA`` mapping (``STAGE1`` ... ``STAGE4``)."""
    stages = []
    for k in range(1, 5):
      cfg = extra[f"STAGE{k}"]
      stage = StageSpec(
          num_modules=int(cfg["NUM_MODULES"]), block=cfg["BLOCK"],
          num_blocks=tuple(int(b) for b in cfg["NUM_BLOCKS"]),
          num_channels=tuple(int(c) for c in cfg["NUM_CHANNELS"]))
      if int(cfg.get("NUM_BRANCHES", stage.num_branches)) != stage.num_branches:
        raise ValueError(f"STAGE{k}: NUM_BRANCHES={cfg['NUM_BRANCHES']} but {stage.num_branches} channel entries")
      if cfg.get("FUSE_METHOD", "SUM") != "SUM":
        raise ValueError(f"STAGE{k}: only FUSE_METHOD SUM exists in the official code, got {cfg['FUSE_METHOD']}")
      stages.append(stage)
    return cls(tuple(stages))

  @property
  def out_channels(self) -> tuple[int, ...]:
    return self.stages[-1].out_channels

  def four_streams_from_start(self) -> "HRNetSpec":
    """The paper's Table 12 variant: stages 2 and 3 already run all of the last stage's branches (its widths and
    blocks per branch), with their own module counts, instead of adding one lower resolution per stage."""
    last = self.stages[-1]
    middle = tuple(StageSpec(s.num_modules, s.block, last.num_blocks, last.num_channels) for s in self.stages[1:-1])
    return HRNetSpec((self.stages[0], *middle, last))


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual connection (ResNet's basic block)."""
  planes: int
  conv: ModuleDef
  norm: ModuleDef
  stride: int = 1
  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = layers.conv3x3(self.conv, self.planes, self.stride, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = layers.conv3x3(self.conv, self.planes, name="conv2")(y)
    y = self.norm(name="bn2")(y)
    return layers.relu_kept(y + _shortcut(self, x))


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3, 1x1 expand by 4, with a residual connection."""
  planes: int
  conv: ModuleDef
  norm: ModuleDef
  stride: int = 1
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = layers.conv1x1(self.conv, self.planes, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = layers.conv3x3(self.conv, self.planes, self.stride, name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = layers.conv1x1(self.conv, self.planes * self.expansion, name="conv3")(y)
    y = self.norm(name="bn3")(y)
    return layers.relu_kept(y + _shortcut(self, x))


def _shortcut(block: BasicBlock | Bottleneck, x: jax.Array) -> jax.Array:
  """Identity, or a strided 1x1 conv + BN where the shape changes (the official ``downsample``)."""
  out_channels = block.planes * block.expansion
  if block.stride == 1 and x.shape[-1] == out_channels:
    return x
  x = layers.conv1x1(block.conv, out_channels, block.stride, name="downsample_0")(x)
  return block.norm(name="downsample_1")(x)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def apply_repeated(layer: Callable[..., nn.Module], x: Any, prefix: str, start: int, stop: int, scan: bool) -> Any:
  """Applies the identical layers ``{prefix}_{start}`` ... ``{prefix}_{stop - 1}`` one after another.

  With ``scan`` (and two or more layers) they become one ``nn.scan`` named ``{prefix}_{start}_to_{stop - 1}``
  whose variables are stacked on a leading axis (``scan_layout`` converts): XLA compiles the layer once instead of
  once per copy.
  """
  if not scan or stop - start < 2:
    for k in range(start, stop):
      x = layer(name=f"{prefix}_{k}")(x)
    return x
  repeated = nn.scan(lambda module, carry, _: (module(carry), None), variable_axes={"params": 0, "batch_stats": 0},
                     split_rngs={"params": True}, length=stop - start)
  return repeated(layer(name=scan_layout.stack_name(prefix, start, stop)), x, None)[0]


# The stage 1 that the official pose code hard-wires, whatever its YAML says.
FIXED_STAGE1 = StageSpec(num_modules=1, block="BOTTLENECK", num_blocks=(4,), num_channels=(64,))


@dataclasses.dataclass(frozen=True)
class FusionOptions:
  """How a multi-resolution module exchanges information (paper Sec. 3 and Table 12).

  upsample: 'nearest' by 2^(j-i) (official cls/pose) or 'bilinear' to the exact size (official seg/landmarks).
  align_corners: PyTorch's flag for the bilinear resizes.
  downsample: 'strided_conv' (chains of 3x3 stride-2 convs, the paper) or 'bilinear' (resize, then 1x1 conv).
  op: 'sum' (the paper) or 'product' (an ablation).
  """
  upsample: Literal["nearest", "bilinear"] = "nearest"
  align_corners: bool = False
  downsample: Literal["strided_conv", "bilinear"] = "strided_conv"
  op: Literal["sum", "product"] = "sum"

  def __post_init__(self):
    for name, allowed in (("upsample", ("nearest", "bilinear")), ("downsample", ("strided_conv", "bilinear")),
                          ("op", ("sum", "product"))):
      if getattr(self, name) not in allowed:
        raise ValueError(f"fusion {name} must be one of {allowed}, got {getattr(self, name)!r}")


class HighResolutionModule(nn.Module):
  """Parallel branches of residual blocks, then (optionally) a fusion across resolutions."""
  block: BlockName
  num_blocks: tuple[int, ...]
  num_channels: tuple[int, ...]
  fusion: FusionOptions
  conv: ModuleDef
  norm: ModuleDef
  fuse: bool = True
  multi_scale_output: bool = True
  scan_repeats: bool = False

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array]) -> list[jax.Array]:
    block = BLOCKS[self.block]
    branches = [
        apply_repeated(functools.partial(block, self.num_channels[i], self.conv, self.norm), x, f"branches_{i}", 0,
                       self.num_blocks[i], self.scan_repeats)
        for i, x in enumerate(xs)]
    if len(branches) == 1 or not self.fuse:
      return branches

    outputs = []
    for i in range(len(branches) if self.multi_scale_output else 1):
      fused = None
      for j, x in enumerate(branches):
        x = x if i == j else self._transform(i, j, x, branches[i].shape)
        if fused is None:
          fused = x
        else:
          fused = fused + x if self.fusion.op == "sum" else fused * x
      outputs.append(layers.relu_kept(fused))
    return outputs

  def _transform(self, i: int, j: int, x: jax.Array, target_shape: tuple[int, ...]) -> jax.Array:
    """Brings branch j to branch i's resolution and width (the official ``fuse_layers[i][j]``)."""
    channels = target_shape[-1]
    target_size = target_shape[1:3]
    prefix = f"fuse_layers_{i}_{j}"
    if j > i:
      x = self.norm(name=f"{prefix}_1")(layers.conv1x1(self.conv, channels, name=f"{prefix}_0")(x))
      if self.fusion.upsample == "bilinear":
        return layers.resize_bilinear(x, target_size, self.fusion.align_corners)
      factor = 2 ** (j - i)
      if (x.shape[1] * factor, x.shape[2] * factor) != tuple(target_size):
        raise ValueError(
            f"nearest fusion upsampling by {factor} maps {x.shape[1:3]} to {x.shape[1] * factor}x"
            f"{x.shape[2] * factor}, not {target_size}: use an input size divisible by 32, or "
            "fusion_upsample='bilinear'")
      return layers.upsample_nearest(x, factor)
    if self.fusion.downsample == "bilinear":
      x = layers.resize_bilinear(x, target_size, self.fusion.align_corners)
      return self.norm(name=f"{prefix}_1")(layers.conv1x1(self.conv, channels, name=f"{prefix}_0")(x))
    for k in range(i - j):
      last = k == i - j - 1
      x = layers.conv3x3(self.conv, channels if last else x.shape[-1], 2, name=f"{prefix}_{k}_0")(x)
      x = self.norm(name=f"{prefix}_{k}_1")(x)
      if not last:
        x = nn.relu(x)
    return x


class HRNetBackbone(nn.Module):
  """Stem, stage 1 and the multi-resolution stages 2-4. Returns the branch outputs, highest resolution first.

  fixed_stage1: ignore ``spec.stages[0]`` and use Bottleneck x4 with 64 planes, as the official pose code does.
  fuse_schedule: which modules fuse: 'every' module (HRNet), the last module of each stage ('across'), or only
    the network's very last module ('final') - the paper's Table 12.
  multi_scale_output: False makes the last module output only the highest-resolution branch (official pose).
  bn_momentum: PyTorch convention (0.1 cls/pose, 0.01 official seg and landmarks).
  conv_init: 'he' or 'normal' (N(0, 0.001), the official dense-task init), see ``layers.CONV_INITS``.
  norm_eval: BatchNorm in inference mode during training too (running statistics used and left as they are; the
    scales and biases still train), as MMDetection's HRNet backbone (``norm_eval=True``) under detectors fine-tuned
    from ImageNet weights with small per-device batches.
  """
  spec: HRNetSpec
  fusion: FusionOptions = FusionOptions()
  fixed_stage1: bool = False
  fuse_schedule: FuseSchedule = "every"
  multi_scale_output: bool = True
  bn_momentum: float = 0.1
  conv_init: str = "he"
  norm_eval: bool = False
  scan_repeats: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    if self.fuse_schedule not in ("every", "across", "final"):
      raise ValueError(f"fuse_schedule must be 'every', 'across' or 'final', got {self.fuse_schedule!r}")
    conv, norm = layers.conv_and_norm(self.dtype, self.param_dtype, self.bn_momentum, train and not self.norm_eval,
                                      self.conv_init, in_loops=self.scan_repeats)
    x = jnp.asarray(x, self.dtype)
    x = nn.relu(norm(name="bn1")(layers.conv3x3(conv, 64, 2, name="conv1")(x)))
    x = nn.relu(norm(name="bn2")(layers.conv3x3(conv, 64, 2, name="conv2")(x)))

    stage1 = FIXED_STAGE1 if self.fixed_stage1 else self.spec.stages[0]
    block = functools.partial(BLOCKS[stage1.block], stage1.num_channels[0], conv, norm)
    x = block(name="layer1_0")(x)  # the first block changes the width (a downsample shortcut): never repeated
    branches = [apply_repeated(block, x, "layer1", 1, stage1.num_blocks[0], self.scan_repeats)]

    later_stages = self.spec.stages[1:]
    for s, stage in enumerate(later_stages, start=2):
      branches = self._transition(s - 1, branches, stage.out_channels, conv, norm)

      def module_options(m: int) -> tuple[bool, bool]:
        last_of_stage = m == stage.num_modules - 1
        last_of_network = last_of_stage and s == 1 + len(later_stages)
        fuse = {"every": True, "across": last_of_stage, "final": last_of_network}[self.fuse_schedule]
        return fuse, self.multi_scale_output or not last_of_network

      for (fuse, multi_scale), group in itertools.groupby(range(stage.num_modules), key=module_options):
        indices = list(group)
        module = functools.partial(
            HighResolutionModule, stage.block, stage.num_blocks, stage.num_channels, self.fusion, conv, norm,
            fuse=fuse, multi_scale_output=multi_scale, scan_repeats=self.scan_repeats)
        branches = apply_repeated(module, branches, f"stage{s}", indices[0], indices[-1] + 1, self.scan_repeats)
      self.sow("intermediates", f"stage{s}", tuple(branches))
    return branches

  def _transition(self, index: int, branches: list[jax.Array], channels: tuple[int, ...],
                  conv: ModuleDef, norm: ModuleDef) -> list[jax.Array]:
    """Adapts the previous stage's branches to the next: a 3x3 conv where a width changes, and each new
    lower-resolution branch from the previous *lowest* one by a chain of 3x3 stride-2 convs.

    A width-changing conv reads its own branch, as the segmentation code does; the official cls/pose code feeds it
    the lowest branch instead, which only differs for specs no official config uses (widths never change there).
    """
    prefix = f"transition{index}"
    outputs = []
    for i, width in enumerate(channels):
      if i < len(branches):
        x = branches[i]
        if x.shape[-1] != width:
          x = layers.conv3x3(conv, width, name=f"{prefix}_{i}_0")(x)
          x = nn.relu(norm(name=f"{prefix}_{i}_1")(x))
      else:
        x = branches[-1]
        num_new = i + 1 - len(branches)
        for k in range(num_new):
          out = width if k == num_new - 1 else x.shape[-1]
          x = layers.conv3x3(conv, out, 2, name=f"{prefix}_{i}_{k}_0")(x)
          x = nn.relu(norm(name=f"{prefix}_{i}_{k}_1")(x))
      outputs.append(x)
    return outputs
