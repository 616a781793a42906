"""What the segmentation configs (``configs/cityscapes.py``, ``pascal_context.py``, ``lip.py``) share: the official
recipe, and its switch to a CPU-sized run on the synthetic shapes."""

from __future__ import annotations

import ml_collections

from hrnet_jax.engine import config_lib
from hrnet_jax.tasks.segmentation.label_sets import LABEL_SETS


def segmentation_config(*, model: str, dataset: str, labels: str, crop: tuple[int, int], base_size: int,
                        eval_canvas: tuple[int, int], batch: int, epochs: int, learning_rate: float,
                        weight_decay: float) -> ml_collections.ConfigDict:
  """The HRNet-Semantic-Segmentation recipe: SGD (momentum 0.9, decay on every parameter), poly 0.9 per step, random
  scale 0.5-2.1 / crop / flip, cross-entropy ignoring 255, whole-image single-scale evaluation during training."""
  config = config_lib.base_config("segmentation")
  config.model.name = model
  config.model.overrides = {"num_classes": LABEL_SETS[labels].num_classes}
  config.data.update(name=f"semantic_segmentation/{dataset}", train_split="train", eval_split="validation",
                     labels=labels, crop_size=crop, base_size=base_size, eval_canvas=eval_canvas)
  config.global_batch_size = batch
  config.eval_batch_size = 8
  config.num_epochs = epochs
  config.optimizer.update(name="sgd", learning_rate=learning_rate, momentum=0.9, nesterov=False,
                          weight_decay=weight_decay, weight_decay_mask="all")
  config.schedule.update(name="poly", warmup_epochs=0.0, power=0.9)
  config.log_every = 50
  config.checkpoint_every = 1000
  config.best_metric = "eval/miou"
  return config


def use_ocr(config: ml_collections.ConfigDict, head_lr_multiplier: float = 1.0) -> ml_collections.ConfigDict:
  """``config`` with HRNetV2 + OCR as the official ``HRNet-OCR`` branch builds and trains it: the OCR head (widths
  512/256; its network defaults: align_corners=True, BatchNorm momentum 0.1), the loss 0.4 x CE(auxiliary) +
  CE(OCR) (``aux_loss_weight``), and (PASCAL-Context) the head's learning rate x ``head_lr_multiplier``."""
  config.model.overrides.update(head="ocr")
  config.aux_loss_weight = 0.4
  config.optimizer.head_lr_multiplier = head_lr_multiplier
  return config


def tiny_segmentation(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` switched to hrnet_tiny on the synthetic shapes' masks (5 classes, 64x64), for a CPU in minutes;
  the dataset's flip and loss options stay, and so does an OCR head (at widths 32/16)."""
  head = config.model.overrides.get("head")
  config.model.name = "hrnet_tiny"
  config.model.overrides = {"num_classes": LABEL_SETS["synthetic_shapes"].num_classes}
  config.optimizer.head_lr_multiplier = 1.0  # the tiny learning rate is for the whole network
  if head == "ocr":
    config.model.overrides.update(head="ocr", ocr_mid_channels=32, ocr_key_channels=16)
  config.data.update(name="synthetic_shapes", train_split="train", eval_split="validation", labels="synthetic_shapes",
                     crop_size=(48, 48), base_size=64, eval_image_size=(), eval_canvas=(64, 64), label_canvas=(),
                     variable_size=False, resize_to_crop_first=False, ignore_background=False)
  config.class_weights = False
  config.test.update(window=(48, 48), base_size=0)
  config.global_batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 2
  config.optimizer.learning_rate = 0.1
  config.log_every = 20
  config.checkpoint_every = 200
  return config
