"""Box ops, NMS and RoIAlign (issue #19) against NumPy transcriptions of torchvision's kernels, and against
torchvision itself where the ``[torch]`` extra is installed."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnet_jax import ops


def random_boxes(rng, count, extent=100.0, max_size=40.0):
  corner = rng.uniform(0, extent, (count, 2))
  return np.concatenate([corner, corner + rng.uniform(0.5, max_size, (count, 2))], 1).astype(np.float32)


def numpy_iou_parts(a, b):
  """Pairwise IoU, union and enclosing-box area, as torchvision computes them."""
  area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
  size = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
  inter = size[..., 0] * size[..., 1]
  union = area(a)[:, None] + area(b)[None] - inter
  hull = np.maximum(a[:, None, 2:], b[None, :, 2:]) - np.minimum(a[:, None, :2], b[None, :, :2])
  return inter / union, union, hull[..., 0] * hull[..., 1]


def numpy_iou(a, b):
  return numpy_iou_parts(a, b)[0]


def numpy_nms(boxes, scores, threshold, classes=None):
  """torchvision's CPU kernel: visit boxes by descending score; each kept one suppresses IoU > threshold."""
  order = np.argsort(-scores, kind="stable")
  suppressed = np.zeros(len(boxes), bool)
  keep = []
  for position, i in enumerate(order):
    if suppressed[position]:
      continue
    keep.append(i)
    later = order[position + 1:]
    overlap = numpy_iou(boxes[i:i + 1], boxes[later])[0] > threshold
    if classes is not None:
      overlap &= classes[later] == classes[i]
    suppressed[position + 1:] |= overlap
  return keep


def numpy_roi_align(features, boxes, size, scale, ratio, aligned):
  """``torchvision/csrc/ops/cpu/roi_align_kernel.cpp``, loop for loop, on [H, W, C] features."""
  height, width, channels = features.shape
  out = np.zeros((len(boxes), size, size, channels), np.float64)
  offset = 0.5 if aligned else 0.0
  for k, (x1, y1, x2, y2) in enumerate(boxes.astype(np.float64)):
    start_x, start_y = x1 * scale - offset, y1 * scale - offset
    roi_w, roi_h = x2 * scale - offset - start_x, y2 * scale - offset - start_y
    if not aligned:
      roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_w, bin_h = roi_w / size, roi_h / size
    grid_h = ratio if ratio > 0 else int(np.ceil(roi_h / size))  # adaptive: ceil(roi_height / pooled_height)
    grid_w = ratio if ratio > 0 else int(np.ceil(roi_w / size))
    for ph in range(size):
      for pw in range(size):
        total = np.zeros(channels)
        for iy in range(grid_h):
          for ix in range(grid_w):
            y = start_y + ph * bin_h + (iy + 0.5) * bin_h / grid_h
            x = start_x + pw * bin_w + (ix + 0.5) * bin_w / grid_w
            if y < -1.0 or y > height or x < -1.0 or x > width:
              continue
            y, x = max(y, 0.0), max(x, 0.0)
            y_low, x_low = int(y), int(x)
            y_high, x_high = y_low + 1, x_low + 1
            if y_low >= height - 1:
              y_high = y_low = height - 1
              y = float(y_low)
            if x_low >= width - 1:
              x_high = x_low = width - 1
              x = float(x_low)
            ly, lx = y - y_low, x - x_low
            total += ((1 - ly) * (1 - lx) * features[y_low, x_low] + (1 - ly) * lx * features[y_low, x_high]
                      + ly * (1 - lx) * features[y_high, x_low] + ly * lx * features[y_high, x_high])
        out[k, ph, pw] = total / max(grid_h * grid_w, 1)
  return out


def test_box_iou_and_generalized_iou_equal_numpy():
  rng = np.random.default_rng(0)
  a, b = random_boxes(rng, 13), random_boxes(rng, 7)
  iou, union, hull = numpy_iou_parts(a, b)
  np.testing.assert_allclose(ops.box_iou(a, b), iou, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(ops.generalized_box_iou(a, b), iou - (hull - union) / hull, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(ops.aligned_box_iou(a[:7], b), jnp.diagonal(ops.box_iou(a[:7], b)))
  chex.assert_trees_all_close(ops.aligned_generalized_box_iou(a[:7], b),
                              jnp.diagonal(ops.generalized_box_iou(a[:7], b)))
  assert float(ops.aligned_generalized_box_iou(a[:1], a[:1])[0]) == 1.0
  far = np.array([[0, 0, 1, 1]], np.float32), np.array([[3, 0, 4, 1]], np.float32)
  assert float(ops.generalized_box_iou(*far)[0, 0]) == pytest.approx(0 - (4 - 2) / 4)


def test_delta_and_distance_coders_invert_each_other_and_match_the_formula():
  rng = np.random.default_rng(1)
  anchors, boxes = random_boxes(rng, 20), random_boxes(rng, 20)
  weights = (10.0, 10.0, 5.0, 5.0)  # torchvision's R-CNN weights = 1 / MMDetection's stds (0.1, 0.1, 0.2, 0.2)
  deltas = ops.encode_deltas(boxes, anchors, weights)
  anchor_size = anchors[:, 2:] - anchors[:, :2]
  anchor_centre = anchors[:, :2] + 0.5 * anchor_size
  box_size = boxes[:, 2:] - boxes[:, :2]
  expected = np.concatenate([10 * (boxes[:, :2] + 0.5 * box_size - anchor_centre) / anchor_size,
                             5 * np.log(box_size / anchor_size)], 1)
  np.testing.assert_allclose(deltas, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ops.decode_deltas(deltas, anchors, weights), boxes, rtol=1e-5, atol=1e-4)
  huge = ops.decode_deltas(jnp.array([[0.0, 0.0, 100.0, 100.0]]), jnp.array([[0.0, 0.0, 2.0, 2.0]]))
  np.testing.assert_allclose(huge, [[1 - 62.5, 1 - 62.5, 1 + 62.5, 1 + 62.5]], rtol=1e-5)  # clamped at log(1000/16)
  points = rng.uniform(0, 100, (20, 2)).astype(np.float32)
  distances = ops.encode_distances(points, boxes)
  np.testing.assert_allclose(distances[:, 0], points[:, 0] - boxes[:, 0], rtol=1e-6)
  np.testing.assert_allclose(distances[:, 3], boxes[:, 3] - points[:, 1], rtol=1e-6)
  np.testing.assert_allclose(ops.decode_distances(points, distances), boxes, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(ops.clip_boxes(jnp.array([[-5.0, 3.0, 120.0, 90.0]]), 80, 100),
                                [[0.0, 3.0, 100.0, 80.0]])


def clustered(rng, count):
  """Boxes in a few tight clusters (so every threshold suppresses something) with tied scores."""
  centres = rng.uniform(20, 80, (4, 2))[rng.integers(0, 4, count)] + rng.normal(0, 3, (count, 2))
  sizes = rng.uniform(8, 20, (count, 2))
  boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
  scores = rng.choice(np.linspace(0.1, 0.9, 9), count).astype(np.float32)  # ~7 boxes share each score
  return boxes, scores


def kept(indices, valid):
  return [int(i) for i in np.asarray(indices)[np.asarray(valid)]]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_keeps_what_greedy_nms_keeps_in_its_order(threshold):
  rng = np.random.default_rng(int(threshold * 10))
  boxes, scores = clustered(rng, 60)
  expected = numpy_nms(boxes, scores, threshold)
  assert 4 <= len(expected) < 60
  indices, valid = ops.nms(boxes, scores, threshold, max_outputs=60)
  assert kept(indices, valid) == expected
  assert np.asarray(indices)[~np.asarray(valid)].tolist() == [0] * (60 - len(expected))
  indices, valid = ops.nms(boxes, scores, threshold, max_outputs=3)  # the first three, in order
  assert kept(indices, valid) == expected[:3]
  classes = rng.integers(0, 3, 60)
  indices, valid = ops.batched_nms(boxes, scores, classes, threshold, max_outputs=60)
  assert kept(indices, valid) == numpy_nms(boxes, scores, threshold, classes)


def test_nms_edge_cases_and_one_compile_for_any_number_of_candidates():
  box = np.array([[10, 10, 30, 30]], np.float32)
  same = np.repeat(box, 5, 0)
  indices, valid = ops.nms(same, np.full(5, 0.5, np.float32), 0.5, max_outputs=4)
  assert kept(indices, valid) == [0]  # identical boxes and scores: the first one, the rest suppressed
  indices, valid = ops.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5, max_outputs=3)
  chex.assert_shape((indices, valid), (3,))
  assert not np.asarray(valid).any()
  traces = []

  @jax.jit
  def candidates(boxes, scores, count):
    traces.append(1)
    return ops.nms(boxes, scores, 0.5, 10, valid=jnp.arange(boxes.shape[0]) < count)

  rng = np.random.default_rng(3)
  boxes, scores = clustered(rng, 30)
  for count in (0, 7, 30):
    assert kept(*candidates(boxes, scores, count)) == numpy_nms(boxes[:count], scores[:count], 0.5)[:10]
  assert len(traces) == 1


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_equals_the_torchvision_kernel(aligned):
  rng = np.random.default_rng(4)
  features = rng.normal(size=(12, 16, 3)).astype(np.float32)
  boxes = np.array([[8, 4, 40, 30],  # inside (input pixels, stride 4: scale 1/4)
                    [-10, -6, 20, 18],  # partly outside, top-left
                    [50, 30, 90, 70],  # partly outside, bottom-right
                    [22.3, 17.9, 23.1, 18.4],  # tiny (< 1 feature pixel)
                    [70, 60, 80, 70]], np.float32)  # wholly outside: zeros
  got = ops.roi_align(features, boxes, 4, spatial_scale=0.25, sampling_ratio=2, aligned=aligned)
  chex.assert_shape(got, (5, 4, 4, 3))
  np.testing.assert_allclose(got, numpy_roi_align(features, boxes, 4, 0.25, 2, aligned), rtol=1e-5, atol=1e-5)
  assert not np.asarray(got[4]).any()
  # Adaptive sampling (ratio 0: ceil(bin size) per axis, here 1 to 3; an empty box pools nothing).
  boxes = np.concatenate([boxes, [[10, 10, 10, 10]]]).astype(np.float32)
  adaptive = ops.roi_align(features, boxes, 4, spatial_scale=0.25, sampling_ratio=0, aligned=aligned, max_samples=3)
  np.testing.assert_allclose(adaptive, numpy_roi_align(features, boxes, 4, 0.25, 0, aligned), rtol=1e-5, atol=1e-5)


def test_multilevel_roi_align_pools_each_box_from_the_level_of_its_size():
  rng = np.random.default_rng(5)
  strides = (4, 8, 16, 32)
  features = [rng.normal(size=(128 // s, 128 // s, 2)).astype(np.float32) for s in strides]
  boxes = np.array([[0, 0, 50, 50], [0, 0, 112, 112], [10, 10, 240, 240], [0, 0, 500, 500], [5, 5, 7, 7]],
                   np.float32)
  levels = ops.roi_levels(boxes, 4)
  assert levels.tolist() == [0, 1, 2, 3, 0]  # sqrt(area) / 56: 0.9, 2, 4.1, 8.9 (clipped at the last), 0.04
  got = ops.multilevel_roi_align(features, boxes, 7, strides)
  for k, level in enumerate(levels.tolist()):
    chex.assert_trees_all_close(got[k], ops.roi_align(features[level], boxes[k:k + 1], 7, 1 / strides[level])[0],
                                rtol=1e-5, atol=1e-6)  # float32 sums fused differently


def test_box_ops_nms_and_roi_align_equal_torchvision():
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  rng = np.random.default_rng(6)
  a, b = random_boxes(rng, 20), random_boxes(rng, 9)
  np.testing.assert_allclose(ops.box_iou(a, b), torchvision.ops.box_iou(torch.tensor(a), torch.tensor(b)),
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(ops.generalized_box_iou(a, b),
                             torchvision.ops.generalized_box_iou(torch.tensor(a), torch.tensor(b)), rtol=1e-5,
                             atol=1e-6)
  boxes, scores = clustered(rng, 80)
  scores = scores + rng.uniform(0, 1e-3, 80).astype(np.float32)  # torch's sort does not promise an order for ties
  classes = rng.integers(0, 3, 80)
  for threshold in (0.3, 0.5, 0.7):
    expected = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), threshold).tolist()
    assert kept(*ops.nms(boxes, scores, threshold, 80)) == expected
    expected = torchvision.ops.batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(classes),
                                           threshold).tolist()
    assert kept(*ops.batched_nms(boxes, scores, classes, threshold, 80)) == expected
  features = rng.normal(size=(12, 16, 3)).astype(np.float32)
  rois = np.concatenate([random_boxes(rng, 6, extent=60), [[-10, -6, 20, 18], [22.3, 17.9, 23.1, 18.4]]]).astype(
      np.float32)
  for aligned in (True, False):
    expected = torchvision.ops.roi_align(torch.tensor(features).permute(2, 0, 1)[None], [torch.tensor(rois)],
                                         (7, 7), 0.25, 2, aligned).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ops.roi_align(features, rois, 7, 0.25, 2, aligned), expected, rtol=1e-5, atol=1e-5)
