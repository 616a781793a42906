"""Keypoint sets as data, and reading keypoints back out of heatmaps (JAX; shared by pose and landmarks).

A ``KeypointSpec`` is everything the pipelines, the losses and the metrics need to know about a keypoint set: a
new dataset is a new spec, not new code. Decoding follows deep-high-resolution-net.pytorch exactly (argmax, the
quarter-pixel step toward the higher neighbour, flip test with the one-pixel shift) because those details move
COCO AP by tenths of a point.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

# The official boxes are measured in units of 200 pixels ("pixel_std"); kept so that scales read the same.
PIXEL_STD = 200.0


@dataclasses.dataclass(frozen=True)
class KeypointSpec:
  names: tuple[str, ...]
  flip_pairs: tuple[tuple[int, int], ...]  # (left, right) indices swapped by a horizontal flip
  sigmas: tuple[float, ...]  # per-keypoint OKS constants (COCO's kpt_oks_sigmas)
  skeleton: tuple[tuple[int, int], ...] = ()  # 0-based limbs, for drawing
  upper_body: tuple[int, ...] = ()  # for the half-body augmentation
  half_body_min_joints: int = 8  # half-body only when more than this many keypoints are labelled

  @property
  def count(self) -> int:
    return len(self.names)

  def flip_permutation(self) -> tuple[int, ...]:
    """Index map of a horizontal flip: keypoint i of the flipped image is keypoint perm[i] of the original."""
    permutation = list(range(self.count))
    for left, right in self.flip_pairs:
      permutation[left], permutation[right] = right, left
    return tuple(permutation)


COCO = KeypointSpec(
    names=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
           "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
           "right_knee", "left_ankle", "right_ankle"),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    sigmas=(.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089),
    # COCO's person skeleton (1-based in the annotation file).
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
              (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    upper_body=tuple(range(11)),
)

# The synthetic shapes' vertices, slotted by the 60-degree sector they point to (clockwise from "up"), so that a
# slot means the same thing in every image and a horizontal flip mirrors sector k onto sector 5 - k.
SYNTHETIC_SHAPES = KeypointSpec(
    names=tuple(f"sector{k}" for k in range(6)),
    flip_pairs=((0, 5), (1, 4), (2, 3)),
    sigmas=(0.05,) * 6,
    skeleton=((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)),
)

SPECS: dict[str, KeypointSpec] = {"coco": COCO, "synthetic_shapes": SYNTHETIC_SHAPES}


def get_spec(name: str) -> KeypointSpec:
  if name not in SPECS:
    raise ValueError(f"unknown keypoint set {name!r}; known: {', '.join(SPECS)}")
  return SPECS[name]


def flip_heatmaps(heatmaps: jax.Array, spec: KeypointSpec, shift: bool = True) -> jax.Array:
  """Heatmaps predicted on a flipped image ([B, H, W, K]) brought back to the original: mirrored, left/right
  channels swapped, and (``shift``, the official SHIFT_HEATMAP) moved one pixel right, because the flip maps
  pixel x to W - 1 - x in the image but the 1/4-resolution heatmap grid does not flip onto itself."""
  heatmaps = heatmaps[:, :, ::-1, :][..., jnp.asarray(spec.flip_permutation())]
  if shift:
    heatmaps = jnp.concatenate([heatmaps[:, :, :1], heatmaps[:, :, :-1]], axis=2)
  return heatmaps


def heatmap_maxima(heatmaps: jax.Array, refine: bool = True) -> tuple[jax.Array, jax.Array]:
  """Per keypoint: (x, y) in heatmap pixels [B, K, 2] and the peak value [B, K].

  As the official ``get_final_preds``: the argmax (0 where the peak is not positive), then a quarter pixel
  toward the higher neighbour in x and y when the peak is at least 2 pixels inside the map."""
  batch, height, width, count = heatmaps.shape
  flat = heatmaps.transpose(0, 3, 1, 2).reshape(batch, count, height * width)
  index = jnp.argmax(flat, axis=-1)
  maxvals = jnp.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
  x, y = index % width, index // width
  coords = jnp.stack([x, y], -1).astype(jnp.float32) * (maxvals > 0)[..., None]
  if not refine:
    return coords, maxvals
  px, py = (jnp.floor(coords[..., 0] + 0.5).astype(jnp.int32), jnp.floor(coords[..., 1] + 0.5).astype(jnp.int32))
  inside = (px > 1) & (px < width - 1) & (py > 1) & (py < height - 1)

  def at(dx, dy):
    xs, ys = jnp.clip(px + dx, 0, width - 1), jnp.clip(py + dy, 0, height - 1)
    return jnp.take_along_axis(flat, (ys * width + xs)[..., None], axis=-1)[..., 0]

  step = jnp.stack([jnp.sign(at(1, 0) - at(-1, 0)), jnp.sign(at(0, 1) - at(0, -1))], -1) * 0.25
  return coords + jnp.where(inside[..., None], step, 0.0), maxvals


def heatmap_to_image(coords: jax.Array, center: jax.Array, scale: jax.Array,
                     heatmap_size: tuple[int, int]) -> jax.Array:
  """Heatmap coordinates [B, K, 2] back to the original image (the official ``transform_preds``, rotation 0):
  the box ``center`` +- ``scale`` * 200 / 2 spans the heatmap (``heatmap_size`` is (height, width))."""
  height, width = heatmap_size
  pixels_per_cell = scale[:, None, 0:1] * PIXEL_STD / width
  return (coords - jnp.asarray([width / 2, height / 2])) * pixels_per_cell + center[:, None, :]


def predict_keypoints(apply: Callable[[jax.Array], jax.Array], images: jax.Array, spec: KeypointSpec,
                      flip_test: bool) -> jax.Array:
  """Heatmaps of ``images`` [B, H, W, 3], averaged with those of the mirrored images when ``flip_test``."""
  heatmaps = apply(images).astype(jnp.float32)
  if flip_test:
    heatmaps = 0.5 * (heatmaps + flip_heatmaps(apply(images[:, :, ::-1]).astype(jnp.float32), spec))
  return heatmaps
