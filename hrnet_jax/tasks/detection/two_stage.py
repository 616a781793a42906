"""Faster / Mask R-CNN and Cascade (Mask) R-CNN on HRNetV2p (issue #20), as MMDetection v2's
``{faster,mask,cascade,cascade_mask}_rcnn_hrnetv2p`` configs: the backbone's branches -> the V2p pyramid (HRFPN,
stride 1: strides 4 ... 64, 256 channels) -> the RPN (``rpn``) -> proposals in the graph -> RoIAlign 7x7 on the
pyramid's first four levels (aligned, sampling ratio 2) -> the box head (``roi_head``), once (Faster) or in three
stages (Cascade).

Training needs the ground truth inside the network, to sample the RoIs the box heads see: the task hands it over as
``gt_boxes``, ``gt_labels``, ``gt_valid`` (``DetectionTask.model_inputs``) with each image's ``image_size``. The
network then returns predictions beside their sampled targets (``TrainOutputs``), and inference the last stage's
RoIs with their head outputs (``RoIOutputs``), which ``roi_head.detections`` turns into boxes.

Cascade R-CNN (Cai and Vasconcelos, CVPR 2018; MMDetection's ``CascadeRoIHead``): stage ``i`` assigns at IoU
``stage_ious[i]`` (0.5, 0.6, 0.7) with its own delta stds and class-agnostic deltas; its sampled RoIs, moved by its
deltas (those that were ground truth dropped), are the next stage's proposals. Losses are weighted 1, 0.5, 0.25. At
test each stage moves the RoIs by the deltas of its best class; the logits are averaged over the stages and the last
stage's deltas give the boxes.

Mask R-CNN (He et al., ICCV 2017; MMDetection's ``FCNMaskHead``, ``masks``): with ``with_mask`` each stage also has
a mask head on RoIAlign 14x14 features. In training it sees the stage's sampled slots that can be positive (the
first quarter: the sampler puts positives first), learning each positive's mask (``gt_masks``, box-aligned) of its
class. At test the detections are made inside the network (``test_options``: score threshold, NMS IoU, count) and
each gets the mask probabilities of its class, averaged over the stages as ``merge_aug_masks``
(``MaskDetections``).

Not as MMDetection: RoIAlign's sampling ratio is 2, not its adaptive 0 (a static cost per RoI; ``ops.roi_align``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax import ops
from hrnet_jax.model.heads import HRFPNHead
from hrnet_jax.ops import anchors as anchor_ops
from hrnet_jax.tasks.detection import masks, roi_head, rpn
from hrnet_jax.tasks.detection.fcos import Detections, pyramid_strides

ROI_LEVELS = 4  # SingleRoIExtractor's featmap_strides (4, 8, 16, 32)
ROI_SIZE = 7
TEST_OPTIONS = (0.05, 0.5, 100)  # MMDetection's test_cfg.rcnn: score threshold, NMS IoU, detections per image
CASCADE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))


class StageOutputs(NamedTuple):
  logits: jax.Array  # [B, S, C + 1]
  deltas: jax.Array  # [B, S, C * 4], or [B, S, 4] class-agnostic
  targets: roi_head.RoITargets
  mask_logits: jax.Array | None = None  # [B, M, 28, 28, C] of the first M sampled slots (those that can be positive)
  mask_targets: jax.Array | None = None  # [B, M, 28, 28]


class TrainOutputs(NamedTuple):
  rpn: rpn.RPNOutputs
  rpn_targets: rpn.RPNTargets
  stages: tuple[StageOutputs, ...]


class RoIOutputs(NamedTuple):
  rois: jax.Array  # [B, P, 4] the last stage's RoIs, input pixels
  valid: jax.Array  # [B, P]
  logits: jax.Array  # [B, P, C + 1] averaged over the stages
  deltas: jax.Array  # [B, P, C * 4] or [B, P, 4]: the last stage's


class MaskDetections(NamedTuple):
  detections: Detections  # [B, D, ...] in input pixels
  masks: jax.Array  # [B, D, 28, 28] each detection's mask probabilities of its class


def detect(outputs: RoIOutputs, image_size: jax.Array, test_options: tuple[float, float, int],
           stds: tuple[float, ...]) -> Detections:
  """Each image's detections [B, count, ...] from the last stage's RoIs (``roi_head.detections``) with the test
  settings (score threshold, NMS IoU, count)."""
  score_threshold, iou_threshold, count = test_options
  return jax.vmap(lambda rois, valid, logits, deltas, size: roi_head.detections(
      rois, valid, logits, deltas, size, score_threshold, iou_threshold, count, stds))(*outputs, image_size)


def inside_image(anchors: jax.Array, image_size: jax.Array, border: float) -> jax.Array:
  """Anchors [N, 4] lying within the image (h, w) grown by ``border`` pixels (``anchor_inside_flags``)."""
  height, width = image_size[0].astype(anchors.dtype), image_size[1].astype(anchors.dtype)
  return ((anchors[:, 0] >= -border) & (anchors[:, 1] >= -border) & (anchors[:, 2] < width + border)
          & (anchors[:, 3] < height + border))


class TwoStageDetector(nn.Module):
  """The detector on the backbone's branches; ``num_outputs`` classes (background excluded). The defaults are
  Faster R-CNN's (``CascadeRCNN`` sets the three stages)."""
  num_outputs: int
  fpn_channels: int = 256
  fpn_levels: int = 5
  fpn_stride: int = 1
  fpn_pooling: str = "avg"
  fpn_representation: str = "v2"  # Fig. 10(b): "v1" / "v1h" pyramids from the 1x branch
  align_corners: bool = False
  bn_momentum: float = 0.1
  rpn_channels: int = 256
  anchor_scales: tuple[float, ...] = rpn.ANCHOR_SCALES
  anchor_ratios: tuple[float, ...] = rpn.ANCHOR_RATIOS
  anchor_border: float = -1.0  # RPN training: anchors outside the image grown by this are not sampled; < 0: all
  rpn_train_pre_nms: int = 2000  # per level, before the proposals' NMS
  rpn_test_pre_nms: int = 1000
  train_proposal_count: int = 1000  # per image, after NMS
  proposal_count: int = 1000
  roi_samples: int = 512
  roi_fc: int = 1024
  stage_ious: tuple[float, ...] = (0.5,)
  stage_stds: tuple[tuple[float, ...], ...] = (roi_head.BOX_STDS,)
  stage_loss_weights: tuple[float, ...] = (1.0,)
  class_agnostic: bool = False
  rpn_box_beta: float = 0.0  # smooth L1's beta of the box losses; 0: L1
  roi_box_beta: float = 0.0
  with_mask: bool = False
  mask_channels: int = 256
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def strides(self) -> tuple[int, ...]:
    return pyramid_strides(self.fpn_levels, self.fpn_stride)

  def _names(self, head: str) -> list[str]:
    return [head] if len(self.stage_ious) == 1 else [f"{head}_{i}" for i in range(len(self.stage_ious))]

  def _box_heads(self) -> list[roi_head.BoxHead]:
    return [roi_head.BoxHead(self.num_outputs, self.roi_fc, self.class_agnostic, dtype=self.dtype,
                             param_dtype=self.param_dtype, name=name) for name in self._names("bbox_head")]

  def _mask_heads(self) -> list[masks.MaskHead | None]:
    if not self.with_mask:
      return [None] * len(self.stage_ious)
    return [masks.MaskHead(self.num_outputs, self.mask_channels, dtype=self.dtype, param_dtype=self.param_dtype,
                           name=name) for name in self._names("mask_head")]

  @nn.compact
  def __call__(self, branches, train: bool = False, image_size: jax.Array | None = None,
               gt_boxes: jax.Array | None = None, gt_labels: jax.Array | None = None,
               gt_valid: jax.Array | None = None, gt_masks: jax.Array | None = None,
               test_options: tuple[float, float, int] = TEST_OPTIONS) -> TrainOutputs | RoIOutputs | MaskDetections:
    levels = HRFPNHead(self.fpn_channels, self.fpn_levels, self.fpn_stride, self.fpn_pooling, self.align_corners,
                       self.fpn_representation, self.bn_momentum, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="neck")(branches, train)
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
        self.train_proposal_count if train else self.proposal_count))(
        *jax.lax.stop_gradient((predicted.logits, predicted.deltas)), image_size)
    pools = {size: jax.vmap(lambda features, boxes, size=size: ops.multilevel_roi_align(
        features, boxes, size, strides[:ROI_LEVELS], sampling_ratio=2, aligned=True))
        for size in (ROI_SIZE, masks.MASK_ROI_SIZE)}
    pool = pools[ROI_SIZE]
    features = levels[:ROI_LEVELS]
    heads, mask_heads = self._box_heads(), self._mask_heads()
    if not train:
      outputs = self._test(heads, pool, features, found, image_size)
      if not self.with_mask:
        return outputs
      return self._test_masks(mask_heads, pools[masks.MASK_ROI_SIZE], features, outputs, image_size, test_options)
    if gt_boxes is None or gt_labels is None or gt_valid is None or (self.with_mask and gt_masks is None):
      raise ValueError("training a two-stage detector needs gt_boxes, gt_labels and gt_valid (Mask R-CNN: and "
                       "gt_masks)")
    rpn_key, *stage_keys = jax.random.split(self.make_rng("sampling"), 1 + len(heads))
    all_anchors = jnp.concatenate(anchors)

    def anchors_to_sample(size):
      valid = anchor_ops.anchor_valid(sizes, strides, per_location, size)
      return valid & inside_image(all_anchors, size, self.anchor_border) if self.anchor_border >= 0 else valid

    rpn_targets = jax.vmap(lambda key, valid, boxes, keep: rpn.rpn_targets(key, all_anchors, valid, boxes, keep))(
        jax.random.split(rpn_key, batch), jax.vmap(anchors_to_sample)(image_size), gt_boxes, gt_valid)
    proposals, proposal_valid, stages = found.boxes, found.valid, []
    for stage, head in enumerate(heads):
      iou, stds = self.stage_ious[stage], self.stage_stds[stage]
      targets = jax.vmap(lambda key, boxes, valid, gts, labels, keep: roi_head.roi_targets(
          key, boxes, valid, gts, labels, keep, self.num_outputs, iou, self.roi_samples, stds=stds))(
          jax.random.split(stage_keys[stage], batch), proposals, proposal_valid, gt_boxes, gt_labels, gt_valid)
      logits, deltas = head(pool(features, targets.rois))
      stages.append(StageOutputs(logits, deltas, targets))
      if mask_heads[stage] is not None:
        stages[-1] = stages[-1]._replace(**self._train_masks(mask_heads[stage], pools[masks.MASK_ROI_SIZE],
                                                             features, targets, gt_boxes, gt_masks))
      if stage + 1 < len(heads):  # refine_bboxes: the sampled RoIs moved, those from the ground truth dropped
        labels = jnp.where(targets.labels == self.num_outputs, jnp.argmax(logits[..., :-1], -1), targets.labels)
        moved = jax.vmap(lambda d, rois, size: roi_head.decode_rois(d, rois, size, stds))(
            roi_head.class_deltas(deltas, labels), targets.rois, image_size)
        proposals, proposal_valid = jax.lax.stop_gradient(moved), targets.valid & ~targets.from_gt
    return TrainOutputs(predicted, rpn_targets, tuple(stages))

  def _test(self, heads, pool, features, found, image_size) -> RoIOutputs:
    rois, logit_sum = found.boxes, 0.0
    for stage, head in enumerate(heads):
      logits, deltas = head(pool(features, rois))
      logit_sum = logit_sum + logits
      if stage + 1 < len(heads):  # regress_by_class with each RoI's best class
        best = roi_head.class_deltas(deltas, jnp.argmax(logits[..., :-1], -1))
        rois = jax.vmap(lambda d, r, size: roi_head.decode_rois(d, r, size, self.stage_stds[stage]))(
            best, rois, image_size)
    return RoIOutputs(rois, found.valid, logit_sum / len(heads), deltas)

  def _train_masks(self, head, pool, features, targets, gt_boxes, gt_masks) -> dict[str, jax.Array]:
    """The mask head on the first slots (every positive is among them) and their targets."""
    count = int(self.roi_samples * roi_head.POSITIVE_FRACTION)
    rois, matched = targets.rois[:, :count], targets.matched[:, :count]
    wanted = jax.vmap(masks.mask_targets)(gt_masks, gt_boxes, matched, jax.lax.stop_gradient(rois))
    return {"mask_logits": head(pool(features, rois)), "mask_targets": wanted}

  def _test_masks(self, heads, pool, features, outputs, image_size, test_options) -> MaskDetections:
    found = detect(outputs, image_size, test_options, self.stage_stds[-1])
    pooled = pool(features, found.boxes)
    probabilities = sum(jax.nn.sigmoid(masks.class_masks(head(pooled), found.labels)) for head in heads)
    return MaskDetections(found, probabilities / len(heads))


class FasterRCNN(TwoStageDetector):
  """Faster R-CNN: one class-specific box head at IoU 0.5 (the ``TwoStageDetector`` defaults)."""


class CascadeRCNN(TwoStageDetector):
  """Cascade R-CNN: three class-agnostic box heads at IoU 0.5 / 0.6 / 0.7, as MMDetection v2's
  ``cascade_rcnn_r50_fpn``: 2000 training proposals, RPN anchors inside the image, smooth L1 losses."""
  anchor_border: float = 0.0
  train_proposal_count: int = 2000
  stage_ious: tuple[float, ...] = (0.5, 0.6, 0.7)
  stage_stds: tuple[tuple[float, ...], ...] = CASCADE_STDS
  stage_loss_weights: tuple[float, ...] = (1.0, 0.5, 0.25)
  class_agnostic: bool = True
  rpn_box_beta: float = 1.0 / 9.0
  roi_box_beta: float = 1.0


class MaskRCNN(TwoStageDetector):
  """Mask R-CNN: Faster R-CNN with the FCN mask head (MMDetection v2's ``mask_rcnn_r50_fpn``)."""
  with_mask: bool = True


class CascadeMaskRCNN(CascadeRCNN):
  """Cascade Mask R-CNN: a mask head beside each of Cascade R-CNN's three box heads."""
  with_mask: bool = True
