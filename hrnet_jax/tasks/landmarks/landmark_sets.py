"""The landmark sets of facial-landmark detection: WFLW, 300W, COFW, AFLW, the synthetic shapes' vertices, and
your own (``data.keypoints=custom``): the count from the prepared dataset, flip pairs and NME normaliser from
``data.landmark_set``."""

from __future__ import annotations

import ml_collections

from hrnet_jax.heatmaps.keypoint_set import KeypointSpec, SYNTHETIC_SHAPES, check_index_pairs
from hrnet_jax.registry import Registry


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

LANDMARK_SETS = Registry("landmark set", {"wflw": WFLW, "300w": FACE_300W, "cofw": COFW, "aflw": AFLW,
                                          "synthetic_shapes": SYNTHETIC_SHAPES})

# ``data.keypoints`` naming no built-in set but ``data.landmark_set`` and the dataset's landmark count.
CUSTOM = "custom"
CUSTOM_DEFAULTS = {"flip_pairs": (),  # 0-based (left, right) pairs swapped by a horizontal flip
                   "nme_pair": ()}  # two landmarks whose distance normalises NME (outer eye corners); () box size


def landmark_spec(data: ml_collections.ConfigDict) -> KeypointSpec:
  """The landmark set ``data.keypoints`` names; ``custom`` takes the count the prepared dataset records."""
  if data.keypoints != CUSTOM:
    return LANDMARK_SETS[data.keypoints]
  from hrnet_jax.data import sources  # pylint: disable=import-outside-toplevel  (TensorFlow, only for this)
  count = sources.recorded_metadata(data.name, data.data_dir, data.manual_dir).get("landmark_count")
  if count is None:
    raise ValueError(f"data.keypoints=custom needs a dataset that records its landmark count ({data.name} does not; "
                     f"face_landmarks/custom prepared from your file does)")
  given = data.landmark_set
  flip_pairs = tuple(tuple(pair) for pair in given.flip_pairs)
  nme_pair = tuple(given.nme_pair) or None
  check_index_pairs((*flip_pairs, *([nme_pair] if nme_pair else [])), count, "data.landmark_set")
  return _landmarks(count, flip_pairs, nme_pair)
