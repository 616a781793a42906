"""Object detection: FCOS, CenterNet, Faster / Mask / Cascade (Mask) R-CNN losses on the padded ground truth,
detections (and 28 x 28 mask probabilities) inside the jitted eval step, COCO box and mask AP through pycocotools
(``coco_eval``; masks pasted into the original image and RLE-encoded on the host, batch by batch)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from hrnet_jax import coco_api
from hrnet_jax.model import factory
from hrnet_jax.tasks.base import ArrayCollector, Batch, Task, enlarged
from hrnet_jax.tasks.detection import centernet, coco_eval, draw, fcos, label_sets, masks, roi_head, rpn, two_stage
from hrnet_jax.tasks.spec import Serving

MASK_HEADS = ("mask_rcnn", "cascade_mask_rcnn")
TWO_STAGE = ("faster_rcnn", "cascade_rcnn", *MASK_HEADS)
HEADS = ("fcos", "centernet", *TWO_STAGE)


GROUND_TRUTH_KEYS = ("image_id", "gt_boxes", "gt_labels", "gt_crowd", "gt_areas", "gt_ids", "gt_present")


class DetectionCollector:
  """Each eval batch's detections become COCO result entries as they arrive; the stored ground truth is kept only
  when there is no annotation file to read it from."""

  def __init__(self, category_ids: tuple[int, ...], keep_ground_truth: bool):
    self.evaluator = coco_eval.DetectionEvaluator(category_ids)
    self.ground_truth = ArrayCollector() if keep_ground_truth else None

  def add(self, examples: dict[str, np.ndarray]) -> None:
    pasted = None
    if "masks" in examples:  # each valid detection's mask into its original image
      pasted = [masks.paste_masks(probabilities[valid], boxes[valid], *size)
                for probabilities, boxes, valid, size in zip(examples["masks"], examples["boxes"],
                                                             examples["valid"], examples["original_size"])]
    self.evaluator.add(examples["image_id"], examples["boxes"], examples["scores"], examples["labels"],
                       examples["valid"], pasted)
    if self.ground_truth is not None:
      self.ground_truth.add({key: examples[key] for key in GROUND_TRUTH_KEYS})

  def result(self) -> dict[str, Any]:
    return {"evaluator": self.evaluator,
            "ground_truth": None if self.ground_truth is None else self.ground_truth.result()}


class DetectionTask(Task):
  name = "detection"
  train_reads = ("image", "mask", "boxes", "labels", "box_valid", "image_size")
  eval_reads = ("image", "mask", "image_id", "scale", "image_size")

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.head = config.model.overrides.get("head", factory.model_defaults(self.name).head)
    if self.head not in HEADS:
      raise ValueError(f"detection trains head {' or '.join(HEADS)}, not {self.head!r} (model.overrides.head)")
    if (self.head in MASK_HEADS) != bool(config.data.masks):
      raise ValueError(f"head {self.head!r} {'needs' if self.head in MASK_HEADS else 'does not read'} the objects' "
                       f"masks: set data.masks={self.head in MASK_HEADS}")
    if self.head != "centernet":  # the module whose settings the losses and the test path read
      self.detector = self.create_model().head
    if self.head == "fcos":
      self.strides = fcos.pyramid_strides(self.detector.fpn_levels, self.detector.fpn_stride)
      if len(config.fcos.regress_ranges) != len(self.strides):
        raise ValueError(f"fcos.regress_ranges has {len(config.fcos.regress_ranges)} ranges for "
                         f"{len(self.strides)} pyramid levels")
    self._check_size(tuple(config.data.canvas))

  @staticmethod
  def _check_size(size: tuple[int, int]) -> None:
    if size[0] % 32 or size[1] % 32:  # the backbone's 1/32 branch must tile the image (MMDetection pads to 32)
      raise ValueError(f"detection images (data.canvas) must be multiples of 32 on each side, not {size}")

  def _points(self, images: jax.Array) -> list[np.ndarray]:
    """FCOS's locations for images of this shape (static under jit)."""
    height, width = images.shape[1:3]
    self._check_size((height, width))
    sizes = fcos.pyramid_sizes(height, width, self.detector.fpn_levels, self.detector.fpn_stride)
    return fcos.level_points(sizes, self.strides)

  @functools.cached_property
  def class_set(self) -> label_sets.ClassSet:
    return label_sets.class_set(self.config.data)

  def check_dataset(self, class_names: list[str] | None) -> None:
    """The model predicts the class set's classes, and each of the dataset's labels (``class_names``, from its
    metadata) is the class set's class of that label, under the same COCO ``category_id`` (a file may hold only the
    first few, as the fixture)."""
    name = self.config.data.classes
    if self.output_count() != self.class_set.count:
      raise ValueError(f"the model predicts {self.output_count()} classes but class set {name!r} has "
                       f"{self.class_set.count}; set model.overrides.num_classes")
    for label, dataset_name in enumerate(class_names or ()):
      expected = self.class_set.names[label] if label < self.class_set.count else None
      if dataset_name != expected:
        raise ValueError(f"the dataset's label {label} is {dataset_name!r} but class set {name!r} (data.classes) "
                         f"has {expected!r} there; the dataset's classes are {list(class_names)}")
    recorded = label_sets.recorded_classes(self.config.data) if class_names else None
    if recorded is not None and recorded.category_ids != self.class_set.category_ids[:recorded.count]:
      raise ValueError(f"the dataset's category_ids {list(recorded.category_ids)} are not class set {name!r}'s "
                       f"{list(self.class_set.category_ids[:recorded.count])}: results would carry the wrong ids; "
                       f"set data.classes=dataset")

  @staticmethod
  def _boxes_to_learn(batch: Batch) -> jax.Array:
    """[B, G]: the real, non-crowd boxes of decodable images."""
    return batch["box_valid"] & (batch["mask"][:, None] > 0)

  def model_inputs(self, batch: Batch, train: bool) -> dict[str, Any]:
    """A two-stage detector reads each image's size (its proposals are clipped to it), and in training the ground
    truth from which it samples the boxes its heads learn (Mask R-CNN: and their masks; at test the settings of
    the detections it masks)."""
    if self.head not in TWO_STAGE:
      return {}
    inputs = {"image_size": batch["image_size"]}
    if train:
      inputs.update(gt_boxes=batch["boxes"], gt_labels=batch["labels"], gt_valid=self._boxes_to_learn(batch))
      if self.head in MASK_HEADS:
        inputs["gt_masks"] = batch["gt_masks"]
    elif self.head in MASK_HEADS:
      inputs["test_options"] = self._test_options()
    return inputs

  def _test_options(self) -> tuple[float, float, int]:
    """The two-stage detectors' test settings: score threshold, NMS IoU, detections per image."""
    test = self.config.detection_test
    return test.score_threshold, test.iou_threshold, test.max_detections

  def loss(self, outputs: Any, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The head's losses summed. Images without a box to learn (or undecodable) count for nothing, as
    MMDetection leaves images without annotations out of training."""
    valid = self._boxes_to_learn(batch)
    if self.head in TWO_STAGE:
      return self._two_stage_loss(outputs, valid.any(-1)[:, None])
    if self.head == "fcos":
      options, points = self.config.fcos, self._points(batch["image"])
      targets = jax.vmap(lambda boxes, labels, keep: fcos.fcos_targets(
          points, self.strides, options.regress_ranges, boxes, labels, keep, self.output_count(),
          options.center_sampling, options.center_sample_radius))(batch["boxes"], batch["labels"], valid)
      losses = fcos.fcos_loss(outputs, targets, jnp.asarray(np.concatenate(points)), self.output_count(),
                              image_weight=valid.any(-1))
    else:
      size = outputs.heatmap.shape[1:3]
      targets = jax.vmap(lambda boxes, labels, keep: centernet.centernet_targets(
          boxes, labels, keep, size, self.output_count()))(batch["boxes"], batch["labels"], valid)
      losses = centernet.centernet_loss(outputs, targets)
    return sum(losses.values()), losses

  def _two_stage_loss(self, outputs: Any, learn: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The RPN's losses and each stage's weighted by its ``stage_loss_weights`` (Cascade: ``s1.loss_cls``, ...);
    ``learn`` [B, 1] leaves out images without a box to learn."""
    detector = self.detector
    only = lambda targets: targets._replace(valid=targets.valid & learn, positive=targets.positive & learn)
    losses = rpn.rpn_loss(outputs.rpn, only(outputs.rpn_targets), detector.rpn_box_beta)
    for stage, (found, weight) in enumerate(zip(outputs.stages, detector.stage_loss_weights)):
      prefix = f"s{stage}." if len(outputs.stages) > 1 else ""
      stage_losses = roi_head.roi_loss(found.logits, found.deltas, only(found.targets), detector.roi_box_beta)
      if found.mask_logits is not None:
        count = found.mask_logits.shape[1]
        stage_losses["loss_mask"] = masks.mask_loss(found.mask_logits, found.mask_targets,
                                                    found.targets.labels[:, :count],
                                                    (found.targets.positive & learn)[:, :count])
      losses.update({prefix + name: weight * value for name, value in stage_losses.items()})
    return sum(losses.values()), losses

  def detections(self, outputs: Any, batch: Batch) -> fcos.Detections:
    """Per image [B, max_detections, ...], boxes in the resized image's pixels."""
    test = self.config.detection_test
    if isinstance(outputs, two_stage.MaskDetections):  # made inside the network, to be masked there
      return outputs.detections
    if self.head in TWO_STAGE:
      return two_stage.detect(outputs, batch["image_size"], self._test_options(), self.detector.stage_stds[-1])
    if self.head == "fcos":
      points = self._points(batch["image"])
      return jax.vmap(lambda out, size: fcos.fcos_detections(
          out, points, (size[0], size[1]), test.pre_nms, test.score_threshold, test.iou_threshold,
          test.max_detections))(outputs, batch["image_size"].astype(jnp.float32))
    return jax.vmap(lambda out: centernet.centernet_detections(out, test.max_detections))(outputs)

  def serving(self) -> Serving:
    """Boxes after NMS, as in evaluation, in the pixels of the (resized, padded) input image (Mask R-CNN: and each
    box's 28 x 28 mask probabilities, to paste by its box)."""
    def run(apply, image, image_size):
      batch = {"image": image, "image_size": image_size.astype(jnp.int32)}
      inputs = self.model_inputs(batch, train=False)
      outputs = self.predict(lambda images: apply(images, **inputs), batch)
      found = self.detections(outputs, batch)._asdict()
      return {**found, "masks": outputs.masks} if isinstance(outputs, two_stage.MaskDetections) else found
    limit = self.config.detection_test.max_detections
    masks_output = ({"masks": f"[{limit}, {masks.MASK_SIZE}, {masks.MASK_SIZE}] mask probabilities of the "
                              "detection's class over its box"} if self.head in MASK_HEADS else {})
    return Serving(run, names=self.class_set.names,
                   inputs={"image_size": ((2,), "(height, width) of the image inside the padded input")},
                   outputs={"boxes": f"[{limit}, 4] x1, y1, x2, y2 in input pixels", "scores": f"[{limit}]",
                            "labels": f"[{limit}] int32 class index", "valid": f"[{limit}] bool: a detection",
                            **masks_output})

  def eval_sums(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    del outputs
    return {"count": jnp.sum(batch["mask"])}

  def eval_examples(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    found = self.detections(outputs, batch)
    scale = jnp.tile(batch["scale"], 2)[:, None]  # to the original image's pixels
    masked = {"masks": outputs.masks, "original_size": batch["original_size"]} if self.head in MASK_HEADS else {}
    return {"image_id": batch["image_id"], "boxes": found.boxes / scale, "scores": found.scores,
            "labels": found.labels, "valid": found.valid, **masked,
            **{key: batch[key] for key in GROUND_TRUTH_KEYS[1:]}}

  def example_collector(self) -> "DetectionCollector":
    return DetectionCollector(self.class_set.category_ids, keep_ground_truth=not self.config.data.annotation_file)

  def finalize(self, sums: dict[str, Any], collected: dict[str, Any]) -> dict[str, float]:
    if self.config.data.annotation_file:
      truth = coco_api.read(self.config.data.annotation_file, "data.annotation_file")
    else:
      truth = coco_eval.ground_truth(collected["ground_truth"], self.class_set.names, self.class_set.category_ids)
    iou_types = ("bbox",)
    if self.head in MASK_HEADS:
      if self.config.data.annotation_file:
        iou_types += ("segm",)
      else:
        logging.warning("mask AP needs the objects' masks from data.annotation_file (the synthetic objects': "
                        "python -m hrnet_jax.data.synthetic_images --dataset synthetic_objects writes it); box AP only")
    stats = collected["evaluator"].evaluate(truth, iou_types)
    long, short = self.config.data.image_scale
    logging.info("box AP %.4f%s (single scale, test size %s)", stats["bbox/AP"],
                 f", mask AP {stats['segm/AP']:.4f}" if "segm/AP" in stats else "", (long, short))
    # The protocol, stored beside the numbers it produced: one scale, no flip, the test size (long, short).
    return {**{key.replace("/", "_"): value for key, value in stats.items()}, "count": float(sums["count"]),
            "num_scales": 1.0, "flip_test": 0.0, "test_long_side": float(long), "test_short_side": float(short)}

  def preview(self, outputs: Any, batch: Batch) -> dict[str, jax.Array]:
    found = self.detections(outputs, batch)
    return {"boxes": found.boxes[:, :10], "scores": found.scores[:, :10], "labels": found.labels[:, :10],
            "valid": found.valid[:, :10]}

  def draw_preview(self, image: Image.Image, preview: dict[str, np.ndarray]) -> Image.Image:
    """The 10 best detections (those scoring at least ``detection_test.draw_threshold``): boxes and classes."""
    scale = max(1, 256 // max(image.size))
    valid = np.asarray(preview["valid"], bool)
    return draw.draw_boxes(enlarged(image), np.asarray(preview["boxes"])[valid] * scale,
                           np.asarray(preview["scores"])[valid],
                           [self.class_set.names[int(k)] for k in np.asarray(preview["labels"])[valid]],
                           self.config.detection_test.draw_threshold)

  def synthetic_batch(self, batch: int, size: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    count = self.config.data.max_objects
    corner = rng.uniform(0, 0.7, (batch, count, 2)) * np.array(size[::-1])
    extent = rng.uniform(0.05, 0.3, (batch, count, 2)) * np.array(size[::-1])
    return {"image": rng.standard_normal((batch, *size, 3), dtype=np.float32), "mask": np.ones((batch,), np.float32),
            "boxes": np.concatenate([corner, corner + extent], -1).astype(np.float32),
            "labels": rng.integers(0, self.output_count(), (batch, count), dtype=np.int32),
            "box_valid": np.arange(count)[None].repeat(batch, 0) < rng.integers(1, count + 1, (batch, 1)),
            "image_size": np.tile(np.asarray(size, np.int32), (batch, 1)),
            **({"gt_masks": (rng.uniform(size=(batch, count, self.config.data.mask_size,
                                               self.config.data.mask_size)) < 0.5).astype(np.uint8)}
               if self.config.data.masks else {})}
