"""Semantic segmentation (HRNet-Semantic-Segmentation): per-pixel cross-entropy with an ignore label (optionally
class-weighted and OHEM), and mIoU from a confusion matrix with the official inference protocol."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from PIL import Image

from hrnet_jax.model import factory, layers
from hrnet_jax.tasks.base import Batch, Task, enlarged
from hrnet_jax.tasks.segmentation import draw, inference, label_sets, ocr
from hrnet_jax.tasks.spec import Serving


class SegmentationTask(Task):
  name = "segmentation"
  train_reads = ("image", "label", "mask")
  eval_reads = ("image", "image_size", "label", "label_size", "mask")
  ignore_label = label_sets.IGNORE_LABEL

  @property
  def label_set(self) -> label_sets.LabelSet:
    return label_sets.label_set(self.config.data)

  @property
  def align_corners(self) -> bool:
    return bool(factory.option_default(self.name, self.config.model.overrides, "align_corners"))

  def check_dataset(self, class_names: list[str] | None) -> None:
    del class_names  # labels are images; their classes are the label set's
    outputs = self.output_count()
    if outputs != self.label_set.num_classes:
      raise ValueError(f"the model predicts {outputs} classes but label set {self.config.data.labels!r} has "
                       f"{self.label_set.num_classes}; set model.overrides.num_classes to match")

  def inference_options(self) -> inference.InferenceOptions:
    test = self.config.test
    options = {name: tuple(test[name]) if name in ("window", "scales") else test[name]
               for name in inference.CONFIG_FIELDS}
    return inference.InferenceOptions(
        **options, variable_size=self.config.data.variable_size, align_corners=self.align_corners,
        flip_permutation=tuple(self.label_set.flip_permutation().tolist()) if test.flip else None)

  def _logits_at_label_size(self, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    # The head predicts at 1/4; the loss is computed at the label's resolution, as the official code.
    return layers.resize_bilinear(outputs, labels.shape[1:3], self.align_corners).astype(jnp.float32)

  def loss(self, outputs: jax.Array | ocr.OCROutputs, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy (class-weighted and OHEM as configured) of the logits at the label's resolution; an OCR
    model's auxiliary output adds ``aux_loss_weight`` times its plain cross-entropy (official BALANCE_WEIGHTS)."""
    labels = batch["label"]
    logits = self._logits_at_label_size(ocr.main_output(outputs), labels)
    # ``mask`` is 0 for examples whose image could not be decoded: none of their pixels count.
    valid = (labels != self.ignore_label) & (batch["mask"][:, None, None] > 0)
    targets = jnp.where(valid, labels, 0)
    weights = self.config.class_weights and self.label_set.class_weights
    pixel_weight = (jnp.asarray(weights, jnp.float32)[targets] if weights else jnp.ones(targets.shape)) * valid
    per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits, targets) * pixel_weight
    ohem = self.config.ohem
    if ohem.enabled:
      loss = ohem_loss(logits, targets, per_pixel, valid, ohem.threshold, ohem.min_kept)
    else:
      loss = weighted_mean(per_pixel, pixel_weight)
    accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * valid) / jnp.maximum(jnp.sum(valid), 1)
    metrics = {"pixel_accuracy": accuracy}
    if isinstance(outputs, ocr.OCROutputs):
      aux_logits = self._logits_at_label_size(outputs.aux, labels)
      aux_pixels = optax.softmax_cross_entropy_with_integer_labels(aux_logits, targets) * pixel_weight
      # The official OhemCrossEntropy computes the auxiliary term unreduced and the training loop takes the mean of
      # the sum, so with OHEM it is the mean over every pixel (ignored ones count as 0), not over the valid ones.
      metrics["aux_loss"] = jnp.mean(aux_pixels) if ohem.enabled else weighted_mean(aux_pixels, pixel_weight)
      loss = self.config.aux_loss_weight * metrics["aux_loss"] + loss
    return loss, metrics

  def predict(self, apply: Callable[[jax.Array], Any], batch: Batch) -> jax.Array:
    # An OCR model is evaluated by its OCR output (the official TEST.OUTPUT_INDEX = -1).
    return inference.segment(lambda images: ocr.main_output(apply(images)), batch["image"], batch["image_size"],
                             self.inference_options())

  def serving(self) -> Serving:
    """The evaluation's inference (the config's ``test`` protocol) on whole images of the export's size."""
    def run(apply, image):
      sizes = jnp.broadcast_to(jnp.asarray(image.shape[1:3], jnp.int32), (image.shape[0], 2))
      scores = self.predict(apply, {"image": image, "image_size": sizes})
      return {"labels": jnp.argmax(scores, -1).astype(jnp.int32), "scores": scores}
    protocol = self.inference_options().describe()
    return Serving(run, inputs={}, names=self.label_set.class_names, outputs={
        "labels": "[H, W] int32 the class of each pixel (argmax of scores)",
        "scores": f"[H, W, classes] the official inference's class scores ({protocol})"})

  def label_scores(self, scores: jax.Array, batch: Batch, label_shape: tuple[int, int]) -> jax.Array:
    """Scores resized from each image's size to its label's (LIP evaluates a resized image on the original)."""
    return inference.resize_within(scores, batch["image_size"], batch["label_size"], label_shape,
                                                self.align_corners)

  def eval_sums(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    labels = batch["label"]
    predictions = jnp.argmax(self.label_scores(outputs, batch, labels.shape[1:3]), -1)
    valid = (labels != self.ignore_label) & (batch["mask"][:, None, None] > 0)
    return {"confusion": confusion_matrix(labels, predictions, valid, outputs.shape[-1])}

  def preview(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    """The predicted label map at the label's size."""
    scores = self.label_scores(outputs, batch, batch["label"].shape[1:3])
    return {"labels": jnp.argmax(scores, -1).astype(jnp.uint8)}

  def draw_preview(self, image: Image.Image, preview: dict[str, np.ndarray]) -> Image.Image:
    image = enlarged(image)
    labels = Image.fromarray(preview["labels"]).resize(image.size, Image.NEAREST)
    return draw.overlay(image, np.asarray(labels), self.label_set.palette)

  def finalize(self, sums: dict[str, Any], examples: dict[str, Any]) -> dict[str, float]:
    del examples
    confusion = np.asarray(sums["confusion"], np.int64)
    per_class = iou_per_class(confusion)
    names = self.label_set.class_names if len(self.label_set.class_names) == len(per_class) else [
        str(k) for k in range(len(per_class))]
    options = self.inference_options()
    metrics = {"miou": 100 * float(np.nanmean(per_class)),
               "pixel_accuracy": 100 * float(np.trace(confusion) / max(confusion.sum(), 1)),
               # The protocol, stored beside the numbers it produced.
               "flip_test": float(options.flip), "num_scales": float(len(options.scales))}
    metrics.update({f"iou/{name}": 100 * float(v) for name, v in zip(names, per_class)})
    logging.info("mIoU %.2f (%s)\n%s", metrics["miou"], options.describe(),
                 iou_table(names, per_class, confusion.sum(1)))
    return metrics


  def synthetic_batch(self, batch: int, size: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"image": rng.standard_normal((batch, *size, 3), dtype=np.float32), "mask": np.ones((batch,), np.float32),
            "label": rng.integers(0, self.output_count(), (batch, *size), dtype=np.int32)}


def weighted_mean(pixel_losses: jax.Array, pixel_weight: jax.Array) -> jax.Array:
  """PyTorch's weighted cross-entropy mean: the class weights of the valid pixels also normalise."""
  return jnp.sum(pixel_losses) / jnp.maximum(jnp.sum(pixel_weight), 1e-12)


def ohem_loss(logits: jax.Array, targets: jax.Array, pixel_losses: jax.Array, valid: jax.Array, threshold: float,
              min_kept: int) -> jax.Array:
  """HRNet's ``OhemCrossEntropy``: the mean loss of the valid pixels whose target probability is below
  max(``threshold``, the ``min_kept``-th smallest target probability), over the whole batch."""
  probability = jnp.take_along_axis(jax.nn.softmax(logits, -1), targets[..., None], -1)[..., 0]
  ordered = jnp.sort(jnp.where(valid, probability, jnp.inf).reshape(-1))
  count = jnp.sum(valid)
  kth = ordered[jnp.clip(jnp.minimum(min_kept, count - 1), 0, ordered.shape[0] - 1)]
  kept = valid & (probability < jnp.maximum(kth, threshold))
  return jnp.sum(pixel_losses * kept) / jnp.maximum(jnp.sum(kept), 1)


def confusion_matrix(labels: jax.Array, predictions: jax.Array, valid: jax.Array, num_classes: int) -> jax.Array:
  """Counts (label, prediction) pairs over valid pixels; rows are labels. Exact in int32 up to 2^31 pixels."""
  index = jnp.where(valid, labels * num_classes + predictions, 0)
  counts = jnp.bincount(index.reshape(-1), weights=valid.reshape(-1).astype(jnp.int32), length=num_classes**2)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
  """Intersection over union per class; NaN for a class absent from both labels and predictions."""
  confusion = confusion.astype(np.float64)
  intersection = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - intersection
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(union > 0, intersection / union, np.nan)


def iou_table(names, per_class: np.ndarray, pixels: np.ndarray) -> str:
  """The per-class IoU table of the log."""
  width = max(len(name) for name in names)
  lines = [f"{'class':<{width}}  {'IoU':>6}  {'pixels':>12}"]
  lines += [f"{name:<{width}}  {100 * iou:6.2f}  {count:12d}" for name, iou, count in zip(names, per_class, pixels)]
  return "\n".join(lines)
