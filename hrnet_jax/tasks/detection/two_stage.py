"""Faster R-CNN on HRNetV2p (issue #20), as MMDetection v2's ``faster_rcnn_hrnetv2p`` configs: the backbone's
branches -> the V2p pyramid (HRFPN, stride 1: strides 4 ... 64, 256 channels) -> the RPN (``rpn``) -> proposals in
the graph -> RoIAlign 7x7 on the pyramid's first four levels (aligned, sampling ratio 2) -> the box head
(``roi_head``).

Training needs the ground truth inside the network, to sample the RoIs the box head sees: the task hands it over as
``gt_boxes``, ``gt_labels``, ``gt_valid`` (``DetectionTask.model_inputs``) with each image's ``image_size``. The
network then returns predictions beside their sampled targets (``TrainOutputs``), and inference the RoIs with their
head outputs (``RoIOutputs``), which ``roi_head.detections`` turns into boxes.

Not as MMDetection: RoIAlign's sampling ratio is 2, not its adaptive 0 (static shapes; ``ops.roi_align``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax import ops
from hrnet_jax.model.heads import HRFPNHead
from hrnet_jax.ops import anchors as anchor_ops
from hrnet_jax.tasks.detection import roi_head, rpn

ROI_LEVELS = 4  # SingleRoIExtractor's featmap_strides (4, 8, 16, 32)
ROI_SIZE = 7


class TrainOutputs(NamedTuple):
  rpn: rpn.RPNOutputs
  rpn_targets: rpn.RPNTargets
  roi_logits: jax.Array  # [B, S, C + 1]
  roi_deltas: jax.Array  # [B, S, C * 4]
  roi_targets: roi_head.RoITargets


class RoIOutputs(NamedTuple):
  rois: jax.Array  # [B, P, 4] the proposals, input pixels
  valid: jax.Array  # [B, P]
  logits: jax.Array  # [B, P, C + 1]
  deltas: jax.Array  # [B, P, C * 4]


class FasterRCNN(nn.Module):
  """The detector on the backbone's branches; ``num_outputs`` classes (background excluded)."""
  num_outputs: int
  fpn_channels: int = 256
  fpn_levels: int = 5
  fpn_stride: int = 1
  fpn_pooling: str = "avg"
  align_corners: bool = False
  rpn_channels: int = 256
  anchor_scales: tuple[float, ...] = rpn.ANCHOR_SCALES
  anchor_ratios: tuple[float, ...] = rpn.ANCHOR_RATIOS
  rpn_train_pre_nms: int = 2000  # per level, before the proposals' NMS
  rpn_test_pre_nms: int = 1000
  proposal_count: int = 1000  # per image, after NMS
  roi_samples: int = 512
  roi_fc: int = 1024
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def strides(self) -> tuple[int, ...]:
    return tuple(4 * self.fpn_stride * 2**k for k in range(self.fpn_levels))

  @nn.compact
  def __call__(self, branches, train: bool = False, image_size: jax.Array | None = None,
               gt_boxes: jax.Array | None = None, gt_labels: jax.Array | None = None,
               gt_valid: jax.Array | None = None) -> TrainOutputs | RoIOutputs:
    levels = HRFPNHead(self.fpn_channels, self.fpn_levels, self.fpn_stride, self.fpn_pooling, self.align_corners,
                       dtype=self.dtype, param_dtype=self.param_dtype, name="neck")(branches, train)
    per_location = len(self.anchor_scales) * len(self.anchor_ratios)
    predicted = rpn.RPNHead(per_location, self.rpn_channels, dtype=self.dtype, param_dtype=self.param_dtype,
                            name="rpn_head")(levels)
    sizes, strides = [level.shape[1:3] for level in levels], self.strides()
    anchors = anchor_ops.anchor_grid(sizes, strides, self.anchor_scales, self.anchor_ratios)
    batch = levels[0].shape[0]
    if image_size is None:  # the whole input is image
      image_size = jnp.tile(jnp.asarray([[branches[0].shape[1] * 4, branches[0].shape[2] * 4]]), (batch, 1))
    found = jax.vmap(lambda logits, deltas, size: rpn.proposals(
        logits, deltas, anchors, size, self.rpn_train_pre_nms if train else self.rpn_test_pre_nms,
        self.proposal_count))(*jax.lax.stop_gradient((predicted.logits, predicted.deltas)), image_size)
    head = roi_head.BoxHead(self.num_outputs, self.roi_fc, dtype=self.dtype, param_dtype=self.param_dtype,
                            name="bbox_head")
    pool = jax.vmap(lambda features, boxes: ops.multilevel_roi_align(
        features, boxes, ROI_SIZE, strides[:ROI_LEVELS], sampling_ratio=2, aligned=True))
    if not train:
      return RoIOutputs(found.boxes, found.valid, *head(pool(levels[:ROI_LEVELS], found.boxes)))
    if gt_boxes is None or gt_labels is None or gt_valid is None:
      raise ValueError("training a two-stage detector needs gt_boxes, gt_labels and gt_valid")
    rpn_keys, roi_keys = jnp.split(jax.random.split(self.make_rng("sampling"), 2 * batch), 2)
    all_anchors = jnp.concatenate(anchors)
    anchor_valid = jax.vmap(lambda size: anchor_ops.anchor_valid(sizes, strides, per_location, size))(image_size)
    rpn_targets = jax.vmap(lambda key, valid, boxes, keep: rpn.rpn_targets(key, all_anchors, valid, boxes, keep))(
        rpn_keys, anchor_valid, gt_boxes, gt_valid)
    roi_targets = jax.vmap(lambda key, proposals, valid, boxes, labels, keep: roi_head.roi_targets(
        key, proposals, valid, boxes, labels, keep, self.num_outputs, num_samples=self.roi_samples))(
        roi_keys, found.boxes, found.valid, gt_boxes, gt_labels, gt_valid)
    logits, deltas = head(pool(levels[:ROI_LEVELS], roi_targets.rois))
    return TrainOutputs(predicted, rpn_targets, logits, deltas, roi_targets)
