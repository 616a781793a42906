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
  sigmas: tuple[float, ...] = ()  # per-keypoint OKS constants (COCO's kpt_oks_sigmas), for pose AP
  skeleton: tuple[tuple[int, int], ...] = ()  # 0-based limbs, for drawing
  upper_body: tuple[int, ...] = ()  # for the half-body augmentation
  half_body_min_joints: int = 8  # half-body only when more than this many keypoints are labelled
  # Landmark NME normalisation: the distance between these two ground-truth landmarks (inter-ocular), or, when
  # None, the face's box size (AFLW).
  nme_pair: tuple[int, int] | None = None

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



def _landmarks(count: int, flip_pairs: tuple[tuple[int, int], ...], nme_pair: tuple[int, int] | None,
               one_based: bool = False) -> KeypointSpec:
  shift = 1 if one_based else 0
  return KeypointSpec(names=tuple(f"landmark{i}" for i in range(count)),
                      flip_pairs=tuple((a - shift, b - shift) for a, b in flip_pairs), nme_pair=nme_pair)


# HRNet-Facial-Landmark-Detection's MATCHED_PARTS (WFLW's 0-based there, the others 1-based) and its NME rules
# (compute_nme): outer eye corners for WFLW (60, 72), 300W (36, 45) and COFW's (8, 9); AFLW uses the box size.
WFLW = _landmarks(98, tuple((i, 32 - i) for i in range(16)) + (
    (33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47),
    (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73), (55, 59), (56, 58),
    (76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93), (96, 97)), (60, 72))
FACE_300W = _landmarks(68, (
    (1, 17), (2, 16), (3, 15), (4, 14), (5, 13), (6, 12), (7, 11), (8, 10), (18, 27), (19, 26), (20, 25), (21, 24),
    (22, 23), (32, 36), (33, 35), (37, 46), (38, 45), (39, 44), (40, 43), (41, 48), (42, 47), (49, 55), (50, 54),
    (51, 53), (62, 64), (61, 65), (68, 66), (59, 57), (60, 56)), (36, 45), one_based=True)
COFW = _landmarks(29, ((1, 2), (5, 7), (3, 4), (6, 8), (9, 10), (11, 12), (13, 15), (17, 18), (14, 16), (19, 20),
                       (23, 24)), (8, 9), one_based=True)
AFLW = _landmarks(19, ((1, 6), (2, 5), (3, 4), (7, 12), (8, 11), (9, 10), (13, 15), (16, 18)), None, one_based=True)

SPECS: dict[str, KeypointSpec] = {"coco": COCO, "synthetic_shapes": SYNTHETIC_SHAPES, "wflw": WFLW,
                                  "300w": FACE_300W, "cofw": COFW, "aflw": AFLW}


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


def heatmap_maxima(heatmaps: jax.Array, refine: bool = True, margin: int = 2) -> tuple[jax.Array, jax.Array]:
  """Per keypoint: (x, y) in heatmap pixels [B, K, 2] and the peak value [B, K].

  As the official ``get_final_preds``: the argmax (0 where the peak is not positive), then a quarter pixel
  toward the higher neighbour in x and y when the peak is at least ``margin`` pixels from the left/top edge and
  2 from the right/bottom (the pose code; the facial-landmark code's ``decode_preds`` uses margin 1)."""
  batch, height, width, count = heatmaps.shape
  flat = heatmaps.transpose(0, 3, 1, 2).reshape(batch, count, height * width)
  index = jnp.argmax(flat, axis=-1)
  maxvals = jnp.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
  x, y = index % width, index // width
  coords = jnp.stack([x, y], -1).astype(jnp.float32) * (maxvals > 0)[..., None]
  if not refine:
    return coords, maxvals
  px, py = (jnp.floor(coords[..., 0] + 0.5).astype(jnp.int32), jnp.floor(coords[..., 1] + 0.5).astype(jnp.int32))
  inside = (px >= margin) & (px < width - 1) & (py >= margin) & (py < height - 1)

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


def landmarks_to_image(heatmaps: jax.Array, center: jax.Array, scale: jax.Array) -> jax.Array:
  """Landmarks [B, K, 2] in image pixels, as HRNet-Facial-Landmark-Detection's ``decode_preds``: argmax and
  quarter step (margin 1), +0.5, mapped back through the box, truncated to an integer and +1 (its 1-based
  ``transform_pixel``); a landmark whose peak is not positive decodes from heatmap position -1."""
  coords, maxvals = heatmap_maxima(heatmaps, margin=1)
  coords = jnp.where((maxvals > 0)[..., None], coords, -1.0)
  return jnp.trunc(heatmap_to_image(coords + 0.5, center, scale, heatmaps.shape[1:3])) + 1


def normalised_error(predicted: jax.Array, truth: jax.Array, labelled: jax.Array, box_size: jax.Array,
                     spec: KeypointSpec) -> jax.Array:
  """Per face: the mean distance over labelled landmarks divided by the spec's normaliser (the official
  ``compute_nme``: inter-ocular distance of two ground-truth landmarks, or the box size)."""
  if spec.nme_pair is not None:
    first, second = spec.nme_pair
    norm = jnp.linalg.norm(truth[:, first] - truth[:, second], axis=-1)
  else:
    norm = box_size
  distance = jnp.sum(jnp.linalg.norm(predicted - truth, axis=-1) * labelled, -1)
  return distance / (norm * jnp.maximum(jnp.sum(labelled, -1), 1.0))


def heatmap_mse(outputs: jax.Array, batch: dict[str, jax.Array], factor: float) -> jax.Array:
  """``factor`` x the mean over keypoints and pixels of (weight x (prediction - target))^2 per example, averaged
  over the examples whose ``mask`` is 1. Pose (JointsMSELoss with target weights): factor 0.5; facial landmarks
  (MSELoss): factor 1, weights 1 for every labelled landmark."""
  weight = batch["target_weight"][:, None, None, :]
  squared = (weight * (outputs.astype(jnp.float32) - batch["target"])) ** 2
  per_example = factor * jnp.mean(squared, axis=(1, 2, 3))
  mask = batch["mask"].astype(jnp.float32)
  return jnp.sum(mask * per_example) / jnp.maximum(jnp.sum(mask), 1.0)


def predict_keypoints(apply: Callable[[jax.Array], jax.Array], images: jax.Array, spec: KeypointSpec,
                      flip_test: bool) -> jax.Array:
  """Heatmaps of ``images`` [B, H, W, 3], averaged with those of the mirrored images when ``flip_test``."""
  heatmaps = apply(images).astype(jnp.float32)
  if flip_test:
    heatmaps = 0.5 * (heatmaps + flip_heatmaps(apply(images[:, :, ::-1]).astype(jnp.float32), spec))
  return heatmaps
