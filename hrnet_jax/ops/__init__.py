"""Detection operations in JAX with static shapes and torchvision's semantics: box arithmetic, NMS, RoIAlign."""

from hrnet_jax.ops.boxes import (aligned_box_iou, aligned_generalized_box_iou, box_area, box_iou, clip_boxes,
                                 decode_deltas, decode_distances, encode_deltas, encode_distances,
                                 generalized_box_iou)
from hrnet_jax.ops.nms import batched_nms, nms
from hrnet_jax.ops.roi_align import multilevel_roi_align, roi_align, roi_levels

__all__ = ["aligned_box_iou", "aligned_generalized_box_iou", "batched_nms", "box_area", "box_iou", "clip_boxes",
           "decode_deltas", "decode_distances", "encode_deltas", "encode_distances", "generalized_box_iou",
           "multilevel_roi_align", "nms", "roi_align", "roi_levels"]
