"""Segmentation inference as HRNet's ``multi_scale_inference``: whole-image or sliding-window, multi-scale, flip.

The official code loops over one image at a time in Python. Here every step is a static-shape array program, so it
is jitted, batched and sharded like the rest of evaluation: an image of any size rides in a fixed canvas (padded
with black) with its true size beside it, and the per-scale resize, the window positions and the resize back are
computed per example on device.

Per scale ``s`` (the official steps): resize the image so that its long side is ``int(base_size * s + 0.5)``; run
the model on the whole image, or on windows of ``window`` pixels every ``stride * window`` pixels (the image padded
with black up to the window, the last window shifted back inside the image), each window's logits resized to the
window, averaged with the flipped pass, exponentiated, and averaged where windows overlap; resize to the original
size and add the scales up. The argmax of the sum is the prediction.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.model import layers
from hrnet_jax.model.normalization import NORMALIZED_BLACK

Apply = Callable[[jax.Array], jax.Array]  # images [N, H, W, 3] -> logits [N, h, w, K] (any resolution)


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
  """How to infer; the defaults are whole-image, single-scale, no flip (the official validation during training).

  mode: 'whole' runs the model on the (scaled) image; 'sliding' on ``window``-sized windows.
  pad_to_window: sliding mode pads an image smaller than the window up to it (the official base rule); False runs
    a scaled image that fits in the window whole and unpadded (HRNet's Cityscapes rule for scales <= 1).
  base_size: the long side at scale 1 (0: the canvas's long side).
  variable_size: images smaller than the canvas occur (so a scaled image's canvas is the scaled long side squared).
  flip_permutation: the class order of a flipped image's output (LIP swaps left and right parts); None: identity.
  """
  scales: tuple[float, ...] = (1.0,)
  flip: bool = False
  mode: str = "whole"
  window: tuple[int, int] = (0, 0)
  stride: float = 2 / 3
  pad_to_window: bool = True
  base_size: int = 0
  variable_size: bool = False
  align_corners: bool = False
  flip_permutation: tuple[int, ...] | None = None

  def __post_init__(self):
    if self.mode not in ("whole", "sliding"):
      raise ValueError(f"inference mode must be 'whole' or 'sliding', got {self.mode!r}")
    if self.mode == "sliding" and min(self.window) <= 0:
      raise ValueError(f"sliding-window inference needs a window (height, width), got {self.window}")
    if not self.scales or min(self.scales) <= 0:
      raise ValueError(f"inference scales must be positive, got {self.scales}")

  def describe(self) -> str:
    """The protocol in words, logged beside every mIoU."""
    where = "whole image" if self.mode == "whole" else f"sliding {self.window[0]}x{self.window[1]} windows"
    scales = "single scale" if self.scales == (1.0,) else "scales " + "/".join(f"{s:g}" for s in self.scales)
    return f"{where}, {scales}, flip {'on' if self.flip else 'off'}"


# The fields a config's ``test`` section sets (their defaults are the dataclass's); the others follow from the data,
# the model and the label set.
CONFIG_FIELDS = ("mode", "window", "stride", "pad_to_window", "base_size", "scales", "flip")


def config_defaults() -> dict[str, object]:
  """The ``test`` section of a segmentation config, with the defaults above."""
  defaults = InferenceOptions()
  return {name: getattr(defaults, name) for name in CONFIG_FIELDS}


def resized_size(height, width, long_side: int):
  """The official ``image_resize``: long side to ``long_side``, the other ``int(short * long_side / long + 0.5)``,
  in integer arithmetic (Python ints or integer arrays)."""
  longer = np.maximum(height, width) if isinstance(height, int) else jnp.maximum(height, width)
  shorter = np.minimum(height, width) if isinstance(height, int) else jnp.minimum(height, width)
  scaled_short = (2 * shorter * long_side + longer) // (2 * longer)
  taller = height > width
  if isinstance(height, int):
    return (long_side, int(scaled_short)) if taller else (int(scaled_short), long_side)
  return jnp.where(taller, long_side, scaled_short), jnp.where(taller, scaled_short, long_side)


def _taps(in_size: jax.Array, out_size: jax.Array, length: int, align_corners: bool):
  """Per output index: the two input indices and the upper weight of PyTorch's bilinear interpolation."""
  out = jnp.arange(length, dtype=jnp.float32)
  in_f, out_f = in_size.astype(jnp.float32), out_size.astype(jnp.float32)
  if align_corners:
    source = out * jnp.where(out_size > 1, (in_f - 1) / jnp.maximum(out_f - 1, 1), 0.0)
  else:
    source = jnp.maximum((out + 0.5) * (in_f / out_f) - 0.5, 0.0)
  lower = jnp.minimum(jnp.floor(source).astype(jnp.int32), in_size - 1)
  upper = jnp.minimum(lower + 1, in_size - 1)
  return lower, upper, source - lower


def resize_within(x: jax.Array, in_sizes: jax.Array, out_sizes: jax.Array, out_shape: tuple[int, int],
                  align_corners: bool, fill: float | tuple[float, ...] = 0.0) -> jax.Array:
  """Per example: the top-left ``in_sizes[b]`` region of ``x`` [B, H, W, C] resized bilinearly (as PyTorch) to
  ``out_sizes[b]``, at the top-left of an ``out_shape`` canvas filled with ``fill`` elsewhere."""
  def one(image, in_size, out_size):
    lower, upper, weight = _taps(in_size[0], out_size[0], out_shape[0], align_corners)
    image = image[lower] * (1 - weight)[:, None, None] + image[upper] * weight[:, None, None]
    lower, upper, weight = _taps(in_size[1], out_size[1], out_shape[1], align_corners)
    image = image[:, lower] * (1 - weight)[None, :, None] + image[:, upper] * weight[None, :, None]
    inside = (jnp.arange(out_shape[0])[:, None] < out_size[0]) & (jnp.arange(out_shape[1])[None, :] < out_size[1])
    return jnp.where(inside[..., None], image, jnp.asarray(fill, image.dtype))

  return jax.vmap(one)(x, in_sizes, out_sizes)


def probabilities(apply: Apply, images: jax.Array, options: InferenceOptions) -> jax.Array:
  """The official ``inference``: logits resized to the input, averaged with the flipped pass, exponentiated."""
  size = images.shape[1:3]
  if not options.flip:
    return jnp.exp(layers.resize_bilinear(apply(images), size, options.align_corners).astype(jnp.float32))
  logits = apply(jnp.concatenate([images, images[:, :, ::-1]]))  # one pass over both
  logits = layers.resize_bilinear(logits, size, options.align_corners).astype(jnp.float32)
  direct, flipped = jnp.split(logits, 2)
  flipped = flipped[:, :, ::-1]
  if options.flip_permutation is not None:
    flipped = flipped[..., np.asarray(options.flip_permutation)]
  return jnp.exp((direct + flipped) * 0.5)


def window_count(length: int, window: int, stride: int) -> int:
  """Windows along an axis of ``length`` (>= window) pixels: the official ``ceil((length - window) / stride) + 1``."""
  return -(-(length - window) // stride) + 1


def window_starts(length: jax.Array, window: int, stride: int, count: int) -> tuple[jax.Array, jax.Array]:
  """Start of each of ``count`` windows along an axis of ``length`` (>= window) pixels, the last shifted back inside
  the image, and whether the image needs it (a shorter image needs fewer windows than the canvas)."""
  index = jnp.arange(count)
  end = jnp.minimum(index * stride + window, length)
  return jnp.maximum(end - window, 0), index < (length - window + stride - 1) // stride + 1


def sliding_window(apply: Apply, images: jax.Array, sizes: jax.Array, options: InferenceOptions) -> jax.Array:
  """Window-averaged probabilities [B, H, W, K] of images [B, H, W, 3] valid in their top-left ``sizes`` [B, 2]."""
  (win_h, win_w), (height, width) = options.window, images.shape[1:3]
  black = jnp.asarray(NORMALIZED_BLACK, images.dtype)
  pad_h, pad_w = max(win_h - height, 0), max(win_w - width, 0)
  if pad_h or pad_w:  # the official pad_image, on the canvas
    images = jnp.pad(images - black, ((0, 0), (0, pad_h), (0, pad_w), (0, 0))) + black
    height, width = height + pad_h, width + pad_w
  stride_h, stride_w = int(win_h * options.stride), int(win_w * options.stride)
  rows, cols = window_count(height, win_h, stride_h), window_count(width, win_w, stride_w)
  padded = jnp.maximum(sizes, jnp.array([win_h, win_w]))
  row_starts, row_valid = jax.vmap(lambda n: window_starts(n, win_h, stride_h, rows))(padded[:, 0])
  col_starts, col_valid = jax.vmap(lambda n: window_starts(n, win_w, stride_w, cols))(padded[:, 1])
  corners = [(r, c) for r in range(rows) for c in range(cols)]

  def crops(image, row_start, col_start):
    return jnp.stack([jax.lax.dynamic_slice(image, (row_start[r], col_start[c], 0), (win_h, win_w, image.shape[-1]))
                      for r, c in corners])

  windows = jax.vmap(crops)(images, row_starts, col_starts)  # [B, rows * cols, win_h, win_w, 3]
  batch = images.shape[0]
  scores = probabilities(apply, windows.reshape(-1, win_h, win_w, images.shape[-1]), options)
  scores = scores.reshape(batch, len(corners), win_h, win_w, -1)

  def accumulate(window_scores, row_start, col_start, rv, cv):
    total = jnp.zeros((height, width, window_scores.shape[-1]), jnp.float32)
    count = jnp.zeros((height, width, 1), jnp.float32)
    for k, (r, c) in enumerate(corners):
      start = (row_start[r], col_start[c], 0)
      used = (rv[r] & cv[c]).astype(jnp.float32)
      region = jax.lax.dynamic_slice(total, start, (win_h, win_w, total.shape[-1]))
      total = jax.lax.dynamic_update_slice(total, region + used * window_scores[k], start)
      region = jax.lax.dynamic_slice(count, start, (win_h, win_w, 1))
      count = jax.lax.dynamic_update_slice(count, region + used, start)
    return total / jnp.maximum(count, 1.0)

  averaged = jax.vmap(accumulate)(scores, row_starts, col_starts, row_valid, col_valid)
  return averaged[:, :images.shape[1] - pad_h, :images.shape[2] - pad_w]


def segment(apply: Apply, images: jax.Array, sizes: jax.Array, options: InferenceOptions) -> jax.Array:
  """Scores [B, H, W, K] (the sum over scales of the official per-scale probabilities) of images [B, H, W, 3]
  valid in their top-left ``sizes`` [B, 2] and padded with black; the prediction is their argmax."""
  height, width = images.shape[1:3]
  base_size = options.base_size or max(height, width)
  black = NORMALIZED_BLACK
  total = None
  for scale in options.scales:
    long_side = int(base_size * scale + 0.5)
    canvas = (long_side, long_side) if options.variable_size else resized_size(height, width, long_side)
    scaled_sizes = jnp.stack(resized_size(sizes[:, 0], sizes[:, 1], long_side), axis=-1)
    # The official resize of the input is OpenCV's INTER_LINEAR: PyTorch's bilinear without align_corners.
    scaled = images if canvas == (height, width) and not options.variable_size else resize_within(
        images, sizes, scaled_sizes, canvas, align_corners=False, fill=black)
    fits = canvas[0] <= options.window[0] and canvas[1] <= options.window[1]
    if options.mode == "whole" or (fits and not options.pad_to_window):
      scores = probabilities(apply, scaled, options)
    else:
      scores = sliding_window(apply, scaled, scaled_sizes, options)
    scores = resize_within(scores, scaled_sizes, sizes, (height, width), options.align_corners)
    total = scores if total is None else total + scores
  return total
