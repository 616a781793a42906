"""The keypoint sets of top-down pose: COCO's 17 people keypoints, the synthetic shapes' vertices, and your own
(``data.keypoints=custom``): names and skeleton from the config or from the prepared dataset (its annotation
file's keypoint category), OKS sigmas from the config, flip pairs from the config or by the names' left/right."""

from __future__ import annotations

import re

import ml_collections

from hrnet_jax.heatmaps.keypoint_set import KeypointSpec, SYNTHETIC_SHAPES, check_index_pairs
from hrnet_jax.registry import Registry

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

KEYPOINT_SETS = Registry("keypoint set", {"coco": COCO, "synthetic_shapes": SYNTHETIC_SHAPES})

# ``data.keypoints`` naming no built-in set but ``data.keypoint_set`` (with the dataset's recorded names).
CUSTOM = "custom"
CUSTOM_DEFAULTS = {"names": (), "sigmas": (), "flip_pairs": (), "skeleton": (), "upper_body": ()}
_SIDES = {"left": "right", "right": "left", "l": "r", "r": "l"}


def mirrored_name(name: str) -> str:
  """``name`` with its left/right word swapped (``left_wing`` <-> ``right_wing``, ``L-eye`` <-> ``R-eye``)."""
  parts = re.split(r"([_\s.-])", name)
  swapped = [_SIDES.get(part.lower(), part) for part in parts]
  swapped = [new.upper() if old.isupper() else new.capitalize() if old[:1].isupper() else new
             for old, new in zip(parts, swapped)]
  return "".join(swapped)


def flip_pairs_by_name(names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
  """(left, right) index pairs of the names that are each other's mirror."""
  index = {name: i for i, name in enumerate(names)}
  return tuple((i, index[mirrored_name(name)]) for i, name in enumerate(names)
               if mirrored_name(name) in index and i < index[mirrored_name(name)])


def keypoint_spec(data: ml_collections.ConfigDict) -> KeypointSpec:
  """The keypoint set ``data.keypoints`` names; ``custom`` builds it from ``data.keypoint_set`` and the dataset."""
  if data.keypoints != CUSTOM:
    return KEYPOINT_SETS[data.keypoints]
  given = data.keypoint_set
  names, skeleton = tuple(given.names), tuple(tuple(limb) for limb in given.skeleton)
  if not names:
    from hrnet_jax.data import sources  # pylint: disable=import-outside-toplevel  (TensorFlow, only for this)
    recorded = sources.recorded_metadata(data.name, data.data_dir, data.manual_dir)
    if "keypoint_names" not in recorded:
      raise ValueError(f"data.keypoints=custom: give data.keypoint_set.names, or a dataset that records its keypoint "
                       f"names ({data.name} does not; coco_keypoints prepared from your file does)")
    names = tuple(recorded["keypoint_names"])
    skeleton = skeleton or tuple(tuple(limb) for limb in recorded["skeleton"])
  sigmas = tuple(float(s) for s in given.sigmas)
  if len(sigmas) != len(names):
    raise ValueError(f"data.keypoint_set.sigmas has {len(sigmas)} value(s) for {len(names)} keypoints "
                     f"({', '.join(names)}): give one OKS sigma per keypoint (COCO's run from 0.025 to 0.107)")
  flip_pairs = tuple(tuple(pair) for pair in given.flip_pairs) or flip_pairs_by_name(names)
  check_index_pairs((*flip_pairs, *skeleton), len(names), "data.keypoint_set")
  return KeypointSpec(names, flip_pairs, sigmas, skeleton, upper_body=tuple(given.upper_body))
