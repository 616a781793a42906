"""CenterNet ("Objects as Points", Zhou et al. 2019) on the HRNetV2 representation at stride 4.

The HRNet paper reports CenterNet with HRNetV2-W48 (Table 11) but no official code exists, so this follows the
CenterNet paper and its code (``xingyizhou/CenterNet``, ``ctdet``): three heads (3x3 conv of ``centernet_channels``,
ReLU, 1x1 conv) on the V2 concatenation for per-class centre heatmaps, box size and centre offset; Gaussian
targets whose radius is CornerNet's ``gaussian_radius`` as that code computes it (at IoU 0.7); the penalty-reduced
focal loss on the heatmaps and L1 losses at the centres (size weight 0.1, offset 1); peaks as 3x3 max-pool
survivors, the best ``max_detections`` over all classes.

Targets and detections are for one image (``jax.vmap`` them); the loss takes the batch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.model.heads import quarter_resolution
from hrnet_jax.tasks.detection.fcos import Detections

STRIDE = 4


class Outputs(NamedTuple):
  heatmap: jax.Array  # [B, H, W, C] logits
  size: jax.Array  # [B, H, W, 2] (w, h) in output pixels
  offset: jax.Array  # [B, H, W, 2] (x, y) of the centre within its pixel


class CenterNetHead(nn.Module):
  """The three CenterNet heads on the V2 representation of the backbone's branches."""
  num_outputs: int
  centernet_channels: int = 64
  prior: float = 0.1
  align_corners: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, branches: Sequence[jax.Array], train: bool = False) -> Outputs:
    del train
    x = quarter_resolution(branches, "v2", 0, self.align_corners)

    def head(features: int, name: str, bias: float = 0.0) -> jax.Array:
      conv = lambda f, k, n, **kw: nn.Conv(f, (k, k), padding=k // 2, dtype=self.dtype, param_dtype=self.param_dtype,
                                           name=n, **kw)
      y = nn.relu(conv(self.centernet_channels, 3, f"{name}_0")(x))
      return conv(features, 1, f"{name}_1", bias_init=nn.initializers.constant(bias))(y).astype(jnp.float32)

    return Outputs(head(self.num_outputs, "hm", -math.log((1 - self.prior) / self.prior)), head(2, "wh"),
                   head(2, "reg"))


def gaussian_radius(height: jax.Array, width: jax.Array, min_overlap: float = 0.7) -> jax.Array:
  """CornerNet's radius as CenterNet's code computes it (each root halved, not divided by 2a: the known quirk
  that every CenterNet model was trained with)."""
  b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
  r1 = (b1 + jnp.sqrt(b1**2 - 4 * c1)) / 2
  b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
  r2 = (b2 + jnp.sqrt(b2**2 - 16 * c2)) / 2
  a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
  r3 = (b3 + jnp.sqrt(b3**2 - 4 * a3 * c3)) / 2
  return jnp.minimum(jnp.minimum(r1, r2), r3)


class Targets(NamedTuple):
  heatmap: jax.Array  # [H, W, C]
  centres: jax.Array  # [G, 2] int32 (x, y) output pixel of each object
  size: jax.Array  # [G, 2]
  offset: jax.Array  # [G, 2]
  mask: jax.Array  # [G] bool


def centernet_targets(boxes: jax.Array, labels: jax.Array, valid: jax.Array, output_size: tuple[int, int],
                      num_classes: int) -> Targets:
  """One image's targets from its boxes [G, 4] (input pixels, xyxy), labels [G] and valid [G]. Boxes are clipped
  to the output map; each draws a Gaussian of sigma ``(2r + 1) / 6`` within ``r`` of its integer centre into its
  class channel, values under float64's epsilon cut, overlaps combined by maximum (``draw_umich_gaussian``)."""
  height, width = output_size
  scaled = jnp.clip(boxes / STRIDE, 0, jnp.array([width - 1, height - 1] * 2, jnp.float32))  # as the official code
  extent = scaled[:, 2:] - scaled[:, :2]
  centre = (scaled[:, :2] + scaled[:, 2:]) / 2
  integer = jnp.floor(centre).astype(jnp.int32)
  radius = jnp.maximum(0, jnp.floor(gaussian_radius(jnp.ceil(extent[:, 1]), jnp.ceil(extent[:, 0]))))
  sigma = (2 * radius + 1) / 6
  ys, xs = jnp.arange(height)[:, None], jnp.arange(width)[None]
  valid = valid & (extent > 0).all(-1) & (integer >= 0).all(-1) & (integer < jnp.array([width, height])).all(-1)

  def draw(k, heatmap):
    dx, dy = xs - integer[k, 0], ys - integer[k, 1]
    gaussian = jnp.exp(-(dx * dx + dy * dy) / (2 * sigma[k] ** 2))
    window = (jnp.abs(dx) <= radius[k]) & (jnp.abs(dy) <= radius[k]) & (gaussian >= np.finfo(np.float64).eps)
    gaussian = jnp.where(window & valid[k], gaussian, 0.0)
    return heatmap.at[:, :, labels[k]].max(gaussian)

  heatmap = jax.lax.fori_loop(0, boxes.shape[0], draw, jnp.zeros((height, width, num_classes), jnp.float32))
  return Targets(heatmap, integer, extent, centre - integer, valid)


def _at_centres(map_: jax.Array, centres: jax.Array) -> jax.Array:
  """[B, H, W, K] read at [B, G, 2] (x, y) -> [B, G, K]."""
  return jax.vmap(lambda m, c: m[c[:, 1], c[:, 0]])(map_, centres)


def centernet_loss(outputs: Outputs, targets: Targets, size_weight: float = 0.1,
                   offset_weight: float = 1.0) -> dict[str, jax.Array]:
  """CenterNet's ``CtdetLoss`` of a batch: the penalty-reduced focal loss over the heatmaps (divided by the
  number of objects), and L1 on size and offset at the objects' centres (divided by the count of their values)."""
  probability = jnp.clip(jax.nn.sigmoid(outputs.heatmap), 1e-4, 1 - 1e-4)
  positive = targets.heatmap == 1
  positives = jnp.log(probability) * (1 - probability) ** 2
  negatives = jnp.log(1 - probability) * probability**2 * (1 - targets.heatmap) ** 4
  count = positive.sum()
  heat = -(jnp.where(positive, positives, 0.0).sum() + jnp.where(positive, 0.0, negatives).sum()) / jnp.maximum(
      count, 1)
  mask = targets.mask[..., None].astype(jnp.float32)
  l1 = lambda predicted, target: jnp.abs((_at_centres(predicted, targets.centres) - target) * mask).sum() / (
      2 * mask.sum() + 1e-4)
  return {"loss_heatmap": heat, "loss_size": size_weight * l1(outputs.size, targets.size),
          "loss_offset": offset_weight * l1(outputs.offset, targets.offset)}


def centernet_detections(outputs: Outputs, max_detections: int = 100) -> Detections:
  """One image's detections ([H, W, ...] outputs): heatmap peaks (equal to their 3x3 max-pool), the best
  ``max_detections`` over classes and positions, boxes in input pixels. A negative size (as an untrained head
  predicts) gives an empty box rather than one whose corners are swapped."""
  heat = jax.nn.sigmoid(outputs.heatmap)
  pooled = nn.max_pool(heat[None], (3, 3), strides=(1, 1), padding="SAME")[0]
  heat = jnp.where(pooled == heat, heat, 0.0)
  width, classes = heat.shape[1], heat.shape[2]
  scores, flat = jax.lax.top_k(heat.reshape(-1), max_detections)
  position, labels = flat // classes, flat % classes
  ys, xs = position // width, position % width
  centre = jnp.stack([xs, ys], -1) + outputs.offset[ys, xs]
  half = jnp.maximum(outputs.size[ys, xs], 0.0) / 2
  boxes = jnp.concatenate([centre - half, centre + half], -1) * STRIDE
  return Detections(boxes, scores, labels.astype(jnp.int32), jnp.ones(max_detections, bool))
