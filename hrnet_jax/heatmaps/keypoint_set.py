"""Keypoint sets as data: everything the recipes, the losses and the metrics of a heatmap task need to know about
the points it predicts (names, flip pairs, OKS constants, skeleton, NME rule). A new dataset is a new
``KeypointSpec``, not new code. The sets of each task live in its folder (``tasks/pose/keypoint_sets.py``,
``tasks/landmarks/landmark_sets.py``); the synthetic shapes' set, which both use for their tiny configs, lives here.
"""

from __future__ import annotations

import dataclasses

# The official boxes are measured in units of 200 pixels ("pixel_std"); kept so that scales read the same.
PIXEL_STD = 200.0


def check_index_pairs(pairs, count: int, where: str) -> None:
  """Each of ``pairs`` (flip pairs, limbs, an NME pair given in a config) is two indices of ``count`` points."""
  for pair in pairs:
    if len(pair) != 2 or not all(0 <= i < count for i in pair):
      raise ValueError(f"{where}: {list(pair)} is not a pair of indices 0..{count - 1}")


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


# The synthetic shapes' vertices, slotted by the 60-degree sector they point to (clockwise from "up"), so that a
# slot means the same thing in every image and a horizontal flip mirrors sector k onto sector 5 - k.
SYNTHETIC_SHAPES = KeypointSpec(
    names=tuple(f"sector{k}" for k in range(6)),
    flip_pairs=((0, 5), (1, 4), (2, 3)),
    sigmas=(0.05,) * 6,
    skeleton=((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)),
)
