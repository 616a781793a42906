"""The keypoint sets of top-down pose: COCO's 17 people keypoints, and the synthetic shapes' vertices."""

from __future__ import annotations

from hrnet_jax.heatmaps.keypoint_set import KeypointSpec, SYNTHETIC_SHAPES
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
