"""Small building blocks shared by the backbone and the heads.

Resizing follows PyTorch's semantics exactly, because the official HRNet numbers depend on it:
``jax.image.resize`` has no ``align_corners=True`` and antialiases when it downsamples, PyTorch does neither.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ModuleDef = Callable[..., nn.Module]

# Written out, never 'SAME': for stride-2 3x3 convs XLA's 'SAME' pads (0, 1) on even inputs, PyTorch pads (1, 1).
PAD_3X3 = ((1, 1), (1, 1))
PAD_1X1 = ((0, 0), (0, 0))

# How conv kernels start: 'he' is He-normal over fan_out (the official classification init); 'normal' is
# N(0, 0.001), the official pose, segmentation and landmark codes' init of every conv (what their from-scratch runs,
# e.g. the paper's Table 12, train from); 'pytorch' is ``nn.Conv2d``'s own default, kaiming_uniform(a=sqrt(5)), i.e.
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which the official OCR head keeps (its init_weights skips it).
CONV_INITS = {"he": nn.initializers.variance_scaling(2.0, "fan_out", "normal"), "normal": nn.initializers.normal(0.001),
              "pytorch": nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")}


_NHWC = ("NHWC", "HWIO", "NHWC")


def _forward_conv(x, w, strides, padding, precision):
  return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _channels_last_conv(x, w, strides, padding, precision):
  return _forward_conv(x, w, strides, padding, precision)


def _channels_last_conv_fwd(x, w, strides, padding, precision):
  return _forward_conv(x, w, strides, padding, precision), (x, w)


def _channels_last_conv_bwd(strides, padding, precision, residuals, dy):
  """Both gradients as forward NHWC/HWIO convolutions (what XLA's CPU backend rewrites them to, but only outside
  loops); the values are the same as JAX's own gradient."""
  x, w = residuals
  sizes = list(zip(x.shape[1:3], dy.shape[1:3], w.shape[:2], strides, padding))
  # Input gradient: the stride-dilated output gradient correlated with the flipped, transposed kernel.
  dx_padding = [(k - 1 - lo, n - (o - 1) * s + lo - 1) for n, o, k, s, (lo, _) in sizes]
  kernel_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  dx = jax.lax.conv_general_dilated(dy, kernel_t, (1, 1), dx_padding, lhs_dilation=strides, dimension_numbers=_NHWC,
                                    precision=precision)
  # Kernel gradient: input channels as the batch, the batch as the features, the output gradient as the kernel.
  dw_padding = [(lo, k + (o - 1) * s - n - lo) for n, o, k, s, (lo, _) in sizes]
  dw = jax.lax.conv_general_dilated(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1), dw_padding,
                                    rhs_dilation=strides, dimension_numbers=_NHWC, precision=precision)
  return dx.astype(x.dtype), dw.transpose(1, 2, 0, 3).astype(w.dtype)


_channels_last_conv.defvjp(_channels_last_conv_fwd, _channels_last_conv_bwd)


def loop_safe_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Sequence[tuple[int, int]],
                   lhs_dilation=None, rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                   precision=None) -> jax.Array:
  """``lax.conv_general_dilated`` for ``nn.Conv``, with a gradient that stays fast inside ``scan`` on CPU.

  XLA's CPU backend rewrites gradient convolutions into the channels-last form its fast kernels take only in the
  entry computation; inside a loop body they run on a naive loop nest (jax-ml/jax#12868: a scanned HRNet-W18
  train step measured 8x slower). On CPU the gradient is therefore written in that form here; other platforms
  keep JAX's own (cuDNN and TPU handle any layout).
  """
  expected = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  if (feature_group_count != 1 or any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
      or jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != expected):
    raise ValueError("loop_safe_conv takes NHWC inputs, HWIO kernels, one group and no dilation")
  strides, pads = tuple(window_strides), tuple(tuple(p) for p in padding)
  return jax.lax.platform_dependent(
      lhs, rhs, cpu=lambda x, w: _channels_last_conv(x, w, strides, pads, precision),
      default=lambda x, w: _forward_conv(x, w, strides, pads, precision))


def relu_kept(x: jax.Array) -> jax.Array:
  """ReLU for a value with several consumers (a residual block's or a fusion's output): on CPU, written so that
  XLA keeps it in memory instead of recomputing it inside each consumer.

  A block's output feeds the next block's conv and its residual sum. XLA's CPU fusion treats ``max(x, 0)`` as
  free to duplicate (one full-size operand), so each later block's sum, and each weight gradient's transpose,
  recomputed the whole chain of BN, sums and ReLUs back to the stage's start: quadratic in the depth, 40% of the
  W18 train step. ``where(x <= 0, 0, x)`` reads two full-size operands, which fusion does not duplicate into a
  consumer it cannot fuse with (the conv). Same values as ``nn.relu`` (NaN stays NaN) and the same gradient except
  at a NaN input (passed through, where ``nn.relu``'s is 0); other platforms keep ``nn.relu``, their fusion
  decisions are cost-modelled.
  """
  return jax.lax.platform_dependent(x, cpu=lambda v: jnp.where(v <= 0, jnp.zeros_like(v), v), default=nn.relu)


def conv_and_norm(dtype: Any, param_dtype: Any, bn_momentum: float, train: bool, conv_init: str = "he",
                  in_loops: bool = False) -> tuple[ModuleDef, ModuleDef]:
  """Returns (conv, norm) constructors configured the way every HRNet layer uses them.

  ``bn_momentum`` is PyTorch's convention (weight of the new batch); Flax's momentum is its complement.
  BatchNorm statistics are always float32, whatever the compute dtype. ``conv_init``: a key of ``CONV_INITS``.
  ``in_loops``: the convs will run inside ``scan`` (``loop_safe_conv``).
  """
  if conv_init not in CONV_INITS:
    raise ValueError(f"conv_init must be one of {sorted(CONV_INITS)}, got {conv_init!r}")
  conv = functools.partial(
      nn.Conv, use_bias=False, dtype=dtype, param_dtype=param_dtype, kernel_init=CONV_INITS[conv_init],
      conv_general_dilated=loop_safe_conv if in_loops else None)
  norm = functools.partial(
      nn.BatchNorm, use_running_average=not train, momentum=1.0 - bn_momentum, epsilon=1e-5, use_fast_variance=False,
      dtype=dtype, param_dtype=param_dtype)
  return conv, norm


def conv3x3(conv: ModuleDef, features: int, stride: int = 1, **kwargs) -> nn.Module:
  return conv(features, (3, 3), strides=(stride, stride), padding=PAD_3X3, **kwargs)


def conv1x1(conv: ModuleDef, features: int, stride: int = 1, **kwargs) -> nn.Module:
  return conv(features, (1, 1), strides=(stride, stride), padding=PAD_1X1, **kwargs)


@functools.lru_cache(maxsize=None)
def interpolation_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
  """The (out_size, in_size) matrix of 1-D linear interpolation exactly as ``torch.nn.functional.interpolate``."""
  out_index = np.arange(out_size, dtype=np.float64)
  if align_corners:
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    source = out_index * scale
  else:
    source = np.maximum((out_index + 0.5) * (in_size / out_size) - 0.5, 0.0)
  lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  upper_weight = source - lower
  matrix = np.zeros((out_size, in_size), dtype=np.float64)
  np.add.at(matrix, (np.arange(out_size), lower), 1.0 - upper_weight)
  np.add.at(matrix, (np.arange(out_size), upper), upper_weight)
  return matrix.astype(np.float32)


def resize_bilinear(x: jax.Array, size: tuple[int, int], align_corners: bool) -> jax.Array:
  """Bilinear resize of NHWC ``x`` to ``size`` (H, W), identical to PyTorch's ``interpolate(mode='bilinear')``.

  Written as two small matmuls rather than a gather: exact, differentiable, and fast on matrix units.
  """
  in_h, in_w = x.shape[1:3]
  out_h, out_w = size
  if (in_h, in_w) == (out_h, out_w):
    return x
  rows = jnp.asarray(interpolation_matrix(in_h, out_h, align_corners), x.dtype)
  cols = jnp.asarray(interpolation_matrix(in_w, out_w, align_corners), x.dtype)
  precision = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,nhwc->nowc", rows, x, precision=precision)
  return jnp.einsum("pw,nowc->nopc", cols, x, precision=precision)


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
  """Nearest-neighbour upsampling by an integer factor, by broadcast and reshape (no gather)."""
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
  return x.reshape(n, h * factor, w * factor, c)
