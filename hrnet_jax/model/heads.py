"""Representation heads on top of the backbone's branches (paper Sec. 3 and Fig. 10).

- ``ClassificationHead``: the official ImageNet head.
- ``DenseHead``: per-pixel outputs at 1/4 resolution from representation V1 (one branch), V1h (one branch widened
  to 15C) or V2 (all branches resized and concatenated): pose heatmaps, segmentation logits, landmark heatmaps.
- ``HRFPNHead`` (V2p): a feature pyramid for detection, as HRFPN in MMDetection.
Outputs are at least float32 whatever the compute dtype, so losses are computed in float32 (or float64).
"""

from __future__ import annotations

import functools
from typing import Any, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax.model import layers
from hrnet_jax.model.backbone import Bottleneck

Representation = Literal["v1", "v1h", "v2"]
# The official pose, segmentation and landmark codes initialise convs as N(0, 0.001): outputs start near zero, so a
# heatmap MSE starts small instead of at the scale of He-initialised activations (loss ~7 on hrnet_tiny). The output
# conv always starts so; the other convs follow ``conv_init``.
DENSE_OUTPUT_INIT = layers.CONV_INITS["normal"]


def float_output(x: jax.Array) -> jax.Array:
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


class ClassificationHead(nn.Module):
  """Official head: per-branch Bottlenecks to 128/256/512/1024 channels, merged from high to low resolution by
  stride-2 3x3 convs (with bias), a 1x1 conv to 2048, global average pooling and a linear classifier."""
  num_classes: int = 1000
  head_channels: tuple[int, ...] = (32, 64, 128, 256)  # Bottleneck planes per branch (x4 channels out)
  final_channels: int = 2048
  bn_momentum: float = 0.1
  conv_init: str = "he"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, branches: Sequence[jax.Array], train: bool = False) -> jax.Array:
    conv, norm = layers.conv_and_norm(self.dtype, self.param_dtype, self.bn_momentum, train, self.conv_init)
    y = None
    for i, x in enumerate(branches):
      x = Bottleneck(self.head_channels[i], conv, norm, name=f"incre_modules_{i}_0")(x)
      if y is not None:
        y = layers.conv3x3(conv, x.shape[-1], 2, use_bias=True, name=f"downsamp_modules_{i - 1}_0")(y)
        x = x + nn.relu(norm(name=f"downsamp_modules_{i - 1}_1")(y))
      y = x
    y = layers.conv1x1(conv, self.final_channels, use_bias=True, name="final_layer_0")(y)
    y = nn.relu(norm(name="final_layer_1")(y))
    y = jnp.mean(float_output(y), axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=y.dtype, param_dtype=self.param_dtype, name="classifier")(y)


def quarter_resolution(branches: Sequence[jax.Array], representation: str, branch: int,
                           align_corners: bool) -> jax.Array:
  """The representation a dense head sees, at the highest branch's (1/4) resolution."""
  size = branches[0].shape[1:3]
  if representation == "v2":
    return jnp.concatenate([layers.resize_bilinear(x, size, align_corners) for x in branches], axis=-1)
  return layers.resize_bilinear(branches[branch], size, align_corners)


class DenseHead(nn.Module):
  """Per-pixel outputs at 1/4 resolution.

  representation: 'v1' uses branch ``branch`` (0 = 1x, the paper's HRNetV1; 1/2/3 = the 2x/4x/8x branches of
    Fig. 9, resized bilinearly to 1/4); 'v1h' widens branch 0 to ``15C`` by the mixing conv; 'v2' concatenates
    all branches resized to 1/4 (HRNetV2).
  mix: a 1x1 conv + BN + ReLU before the final conv (official seg ``last_layer`` / landmark ``head``); the
    official pose head has none (its final conv is ``final_layer``).
  final_conv_kernel: 1 or 3, as the official ``FINAL_CONV_KERNEL``.
  """
  num_outputs: int
  representation: Representation = "v1"
  branch: int = 0
  mix: bool = False
  final_conv_kernel: int = 1
  align_corners: bool = False
  bn_momentum: float = 0.1
  conv_init: str = "he"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, branches: Sequence[jax.Array], train: bool = False) -> jax.Array:
    if self.representation not in ("v1", "v1h", "v2"):
      raise ValueError(f"representation must be 'v1', 'v1h' or 'v2', got {self.representation!r}")
    if self.final_conv_kernel not in (1, 3):
      raise ValueError(f"final_conv_kernel must be 1 or 3, got {self.final_conv_kernel}")
    if not 0 <= self.branch < len(branches):
      raise ValueError(f"branch {self.branch} does not exist: the backbone gave {len(branches)} branch(es)")
    if self.representation == "v1h" and not self.mix:
      raise ValueError("representation 'v1h' widens by the mixing conv: set mix=True")
    conv, norm = layers.conv_and_norm(self.dtype, self.param_dtype, self.bn_momentum, train, self.conv_init)
    x = quarter_resolution(branches, self.representation, self.branch, self.align_corners)
    final = functools.partial(layers.conv3x3 if self.final_conv_kernel == 3 else layers.conv1x1, conv,
                              self.num_outputs, use_bias=True, kernel_init=DENSE_OUTPUT_INIT)
    if not self.mix:
      return float_output(final(name="final_layer")(x))
    width = 15 * branches[0].shape[-1] if self.representation == "v1h" else x.shape[-1]
    x = layers.conv1x1(conv, width, use_bias=True, name="last_layer_0")(x)
    x = nn.relu(norm(name="last_layer_1")(x))
    return float_output(final(name="last_layer_3")(x))


class HRFPNHead(nn.Module):
  """HRNetV2p, as MMDetection's HRFPN: V2's concatenation reduced to ``out_channels`` by a 1x1 conv, pooled
  (``pooling``: "avg" or "max") into ``num_levels`` levels (strides 4, 8, ... of the input), each refined by a 3x3
  conv of stride ``conv_stride`` (FCOS: 2, for strides 8 ... 128). ``representation`` "v1" or "v1h" builds the
  pyramid from the 1x branch alone, as the paper's Fig. 10(b) does (V1h: widened to 15C by a 1x1 conv + BN +
  ReLU first)."""
  out_channels: int = 256
  num_levels: int = 5
  conv_stride: int = 1
  pooling: str = "avg"
  align_corners: bool = False
  representation: Representation = "v2"
  bn_momentum: float = 0.1
  conv_init: str = "he"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, branches: Sequence[jax.Array], train: bool = False) -> list[jax.Array]:
    pools = {"avg": nn.avg_pool, "max": nn.max_pool}
    if self.pooling not in pools:
      raise ValueError(f"fpn_pooling must be one of {sorted(pools)}, got {self.pooling!r}")
    if self.representation not in ("v1", "v1h", "v2"):
      raise ValueError(f"fpn_representation must be 'v1', 'v1h' or 'v2', got {self.representation!r}")
    conv, norm = layers.conv_and_norm(self.dtype, self.param_dtype, self.bn_momentum, train, self.conv_init)
    x = quarter_resolution(branches, self.representation, 0, self.align_corners)
    if self.representation == "v1h":
      x = layers.conv1x1(conv, 15 * branches[0].shape[-1], use_bias=True, name="widen_conv")(x)
      x = nn.relu(norm(name="widen_norm")(x))
    x = layers.conv1x1(conv, self.out_channels, use_bias=True, name="reduction_conv")(x)
    levels = [x] + [pools[self.pooling](x, (2**k, 2**k), strides=(2**k, 2**k)) for k in range(1, self.num_levels)]
    return [float_output(layers.conv3x3(conv, self.out_channels, self.conv_stride, use_bias=True,
                                        name=f"fpn_convs_{k}")(level))
            for k, level in enumerate(levels)]
