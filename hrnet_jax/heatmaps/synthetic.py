"""The synthetic shapes' polygon vertices as keypoints that mean the same thing in every image (tf.data), for the
tiny pose and landmark configs."""

from __future__ import annotations

import math

import tensorflow as tf

from hrnet_jax.heatmaps.keypoint_set import SYNTHETIC_SHAPES


def slot_vertices_by_sector(example: dict) -> dict:
  """Synthetic shapes: puts each polygon vertex in the slot of the 60-degree sector it points to from the
  polygon's center (clockwise from "up"), so that slots are learnable keypoints that a flip maps to 5 - k. A
  sector holds at most one vertex of a regular polygon of up to 6 vertices; a rare tie on a boundary is dropped."""
  points = tf.cast(example["keypoints"], tf.float32)
  labelled = points[:, 2] > 0
  center = tf.reduce_sum(points[:, :2] * tf.cast(labelled, tf.float32)[:, None], 0) / tf.maximum(
      tf.reduce_sum(tf.cast(labelled, tf.float32)), 1.0)
  offset = points[:, :2] - center
  angle = tf.math.floormod(tf.atan2(offset[:, 0], -offset[:, 1]), 2 * math.pi)  # image y points down
  count = SYNTHETIC_SHAPES.count
  slot = tf.where(labelled, tf.minimum(tf.cast(angle / (2 * math.pi / count), tf.int32), count - 1), count)
  slotted = tf.scatter_nd(slot[:, None], points, [count + 1, 3])[:count]
  occupancy = tf.scatter_nd(slot[:, None], tf.ones_like(slot), [count + 1])[:count]
  slotted = tf.where((occupancy > 1)[:, None], 0.0, slotted)
  return {**example, "keypoints": slotted}
