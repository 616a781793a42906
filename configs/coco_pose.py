"""COCO keypoints, top-down HRNetV1 (Sun et al., CVPR 2019; deep-high-resolution-net.pytorch):

    python -m hrnet_jax.train --config configs/coco_pose.py:w32_256x192,coco_dir=/data/coco --workdir /runs/w32 \\
        --config.data.data_dir=$TFDS_DATA_DIR --config.init_from=/weights/hrnetv2_w32_imagenet_pretrained.pth
    python -m hrnet_jax.train --config configs/coco_pose.py:tiny --workdir /tmp/pose_tiny   # CPU, synthetic

Recipe (``experiments/coco/hrnet/w*_*_adam_lr1e-3.yaml``): Adam lr 1e-3, no weight decay, 210 epochs, x0.1 at
epochs 170 and 200, batch 128 (4 GPUs x 32), random scale 0.65-1.35 (sigma 0.35), rotation N(0, 45 deg) clipped
to +-90 with probability 0.6, half-body with probability 0.3, flip; Gaussian targets sigma 2 (256x192) or 3
(384x288) at 1/4 resolution. Evaluation: flip test with the heatmap shift, person boxes from the detector (human
AP 56.4, ``boxes=gt`` for ground-truth boxes), rescoring and OKS-NMS 0.9, ``COCOeval``.

COCO val2017 AP of the official models (ImageNet-pretrained, detector boxes, flip test; paper Table 1):

    config          params  GFLOPs  AP
    w32_256x192     28.5M   7.1     74.4
    w32_384x288     28.5M   16.0    75.8
    w48_256x192     63.6M   14.6    75.1
    w48_384x288     63.6M   32.9    76.3

``coco_dir``: the folder with the official files (annotations/, val2017/, and the detector boxes at
person_detection_results/COCO_val2017_detections_AP_H_56_person.json, from the official repository's release);
the dataset itself is built once into ``data.data_dir`` (``python -m hrnet_jax.data.prepare coco_keypoints``).
``tiny``: hrnet_tiny on the synthetic shapes (the 6 polygon vertices as keypoints) at 64x64, for CPU runs and tests.
"""

import os

from hrnet_jax.engine import config_lib

PAPER_AP = {"w32_256x192": 74.4, "w32_384x288": 75.8, "w48_256x192": 75.1, "w48_384x288": 76.3}
DETECTIONS = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def get_config(arg=None):
  options = config_lib.parse_arg(arg, positional="variant", variant="w32_256x192", tiny=False, boxes="detector", batch=128,
                                 coco_dir="data/coco")
  config_lib.check_choice("variant", options.variant, PAPER_AP)
  config_lib.check_choice("boxes", options.boxes, ("detector", "gt"))
  width, size = options.variant.split("_")
  height, input_width = (int(s) for s in size.split("x"))
  config = config_lib.base_config("pose", "topdown_pose")  # the recipe's augmentation defaults are the official ones
  config.model.name = f"hrnet_{width}"
  config.model.overrides = {"num_keypoints": 17}
  config.data.update(name="coco_keypoints", train_split="train", eval_split="validation", manual_dir=options.coco_dir,
                     keypoints="coco")
  config.data.labelled_only = True  # the official sets leave out instances without labelled keypoints
  config.data.input_size = (height, input_width)
  config.data.sigma = 3.0 if height == 384 else 2.0
  config.data.annotation_file = os.path.join(options.coco_dir, "annotations", "person_keypoints_val2017.json")
  config.data.detections = os.path.join(options.coco_dir, DETECTIONS) if options.boxes == "detector" else ""
  config.data.image_dir = os.path.join(options.coco_dir, "val2017")
  config.flip_test = True  # with the heatmap shift
  config.global_batch_size = options.batch
  config.eval_batch_size = 256
  config.num_epochs = 210
  config.optimizer.update(name="adam", learning_rate=1e-3, weight_decay=0.0)
  config.schedule.update(name="step", warmup_epochs=0.0, milestones=(170, 200), decay_factor=0.1)
  config.log_every = 100
  config.eval_every = 0
  config.checkpoint_every = 1000
  config.best_metric = "eval/AP"
  if options.tiny:
    config.model.name = "hrnet_tiny"
    config.model.overrides = {"num_keypoints": 6, "fixed_stage1": False}  # the tiny stage 1, not 4x64
    config.data.update(name="synthetic_shapes", keypoints="synthetic_shapes", labelled_only=False,
                       input_size=(64, 64), sigma=1.0, annotation_file="", detections="")
    # A vertex's slot is the direction it points to, which a rotation would change under the label.
    config.data.rotation_prob = 0.0
    config.global_batch_size = 32
    config.eval_batch_size = 128
    config.num_epochs = 4
    config.schedule.milestones = (3,)
    config.log_every = 20
    config.checkpoint_every = 200
  return config
