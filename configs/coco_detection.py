"""COCO object detection with HRNetV2p (Wang et al., TPAMI 2020): FCOS, Faster / Mask / Cascade (Mask) R-CNN and
CenterNet.

    python -m hrnet_jax.train --config configs/coco_detection.py:fcos_w32,schedule=2x --workdir /runs/fcos_w32 \\
        --config.data.data_dir=$TFDS_DATA_DIR --config.init_from=/weights/hrnetv2_w32_imagenet_pretrained.pth
    python -m hrnet_jax.train --config configs/coco_detection.py:tiny --workdir /tmp/det_tiny   # CPU, synthetic

FCOS follows MMDetection's ``configs/hrnet/fcos_hrnetv2p_w{18,32}_gn-head_4x4_{1x,2x}_coco.py`` (and
``..._mstrain_640-800_4x4_2x``): HRFPN with stride 2 (strides 8 ... 128, 256 channels), the GroupNorm head, images
resized to (1333, 800) keeping the ratio (multiscale: the short side 640 or 800), flipped, in BGR order with
the BGR mean and std, batch 16 (4 GPUs x 4), SGD lr 0.01, momentum 0.9, weight decay 1e-4 (none on conv biases,
whose rate is x2), gradient clipping at 35, a constant warm-up of 500 steps at 1/3 of the rate, x0.1 at epochs 8
and 11 of 12 (2x: 16 and 22 of 24); the backbone's BatchNorm frozen in inference mode (``norm_eval``, MMDetection's
HRNet default). Batches hold landscape images only, in an 800 x 1344 canvas, or portrait (and square) ones only, in
1344 x 800 (``data.orientation_buckets``, as MMDetection's ``GroupSampler``). Not as MMDetection: its size-divisor
padding of each batch to its largest image (here: the fixed canvas of the batch's orientation).

COCO val2017 box AP of MMDetection's models (single scale, 1333 x 800):

    config                 AP
    fcos_w18 (1x)          35.3
    fcos_w18 (2x)          38.2
    fcos_w18 (2x, ms)      38.3
    fcos_w32 (1x)          39.5
    fcos_w32 (2x)          40.8
    fcos_w32 (2x, ms)      41.9

``faster_rcnn_w18|w32|w40|w48`` (issue #20): MMDetection v2's ``configs/hrnet/faster_rcnn_hrnetv2p_w*_{1x,2x}_coco.py``:
HRFPN with stride 1 (strides 4 ... 64), the RPN (anchors of scale 8, ratios 0.5 / 1 / 2; 2000 per level before NMS in
training, 1000 at test; 1000 proposals), RoIAlign 7x7 on the first four levels and two shared fc layers of 1024;
images resized to (1333, 800) keeping the ratio, flipped, RGB; batch 16, SGD lr 0.02, momentum 0.9, weight decay
1e-4 on every parameter, no gradient clipping, a linear warm-up of 500 steps from 0.001 of the rate, x0.1 at epochs
8 and 11 of 12 (2x: 16 and 22 of 24); the backbone's BatchNorm frozen. MMDetection v2 conventions (no "+1" in box
widths, aligned RoIAlign, L1 box losses); not as MMDetection: RoIAlign samples 2 x 2 points per bin, not its
adaptive count (static shapes), and the fixed canvas of each orientation (800 x 1344 or 1344 x 800). COCO val2017
box AP of MMDetection v2's models (W48: the official HRNet-Object-Detection fork's, whose 2x steps at epochs 20 and
23):

    config                 1x     2x
    faster_rcnn_w18        36.9   38.9
    faster_rcnn_w32        40.2   41.4
    faster_rcnn_w40        41.2   42.1
    faster_rcnn_w48        40.9   41.5   (fork)

``cascade_rcnn_w18|w32|w40``: MMDetection v2's ``cascade_rcnn_hrnetv2p_w*_20e_coco.py``: Faster R-CNN's network
with three class-agnostic box heads at IoU 0.5 / 0.6 / 0.7 (delta stds halving each stage, losses weighted 1 / 0.5 /
0.25, smooth L1 with beta 1; the RPN's smooth L1 beta 1/9 on anchors inside the image; 2000 training proposals);
scores averaged over the stages at test; 20 epochs, x0.1 at 16 and 19. COCO val2017 box AP: W18 41.2, W32 43.3,
W40 43.8.

``mask_rcnn_w18|w32|w40``: MMDetection v2's ``mask_rcnn_hrnetv2p_w*_{1x,2x}_coco.py``: Faster R-CNN's network and
recipe with the FCN mask head (RoIAlign 14x14, four 3x3 convs of 256, a deconvolution, 28 x 28 masks per class,
binary cross-entropy on the positives), masks pasted at 0.5 for mask AP. ``cascade_mask_rcnn_w18|w32|w40``
(``cascade_mask_rcnn_hrnetv2p_w*_20e_coco.py``): Cascade R-CNN with a mask head per stage, whose probabilities are
averaged at test. Not as MMDetection: the objects' masks reach training sampled over their boxes at 112 x 112
(``data.mask_size``), not image-sized. COCO val2017 box / mask AP of MMDetection v2's models:

    config                   1x            2x            20e
    mask_rcnn_w18            37.7 / 34.2   39.8 / 36.0
    mask_rcnn_w32            41.2 / 37.1   42.5 / 37.8
    mask_rcnn_w40            42.1 / 37.5   42.8 / 38.2
    cascade_mask_rcnn_w18                                41.6 / 36.4
    cascade_mask_rcnn_w32                                44.3 / 38.6
    cascade_mask_rcnn_w40                                45.1 / 39.3

``centernet_w48``: CenterNet ("Objects as Points") on the HRNetV2-W48 representation at stride 4, 511 x 511
inputs; the paper (Table 11) reports 43.5 AP on COCO test-dev; no official code exists, so the recipe here is the
CenterNet paper's (Adam lr 1.25e-4 for batch 32 x 140 epochs, x0.1 at 90 and 120), not a reproduction.

``coco_dir``: the folder with the official files (annotations/instances_{train,val}2017.json and the image
folders). ``tiny``: hrnet_tiny on the synthetic objects (``synthetic_objects``, 128 x 128, 4 classes) for CPU runs
and tests.
"""

import os

from hrnet_jax.engine import config_lib

PAPER_AP = {("fcos_w18", "1x", False): 35.3, ("fcos_w18", "2x", False): 38.2, ("fcos_w18", "2x", True): 38.3,
            ("fcos_w32", "1x", False): 39.5, ("fcos_w32", "2x", False): 40.8, ("fcos_w32", "2x", True): 41.9,
            ("centernet_w48", "", False): 43.5,
            ("faster_rcnn_w18", "1x", False): 36.9, ("faster_rcnn_w18", "2x", False): 38.9,
            ("faster_rcnn_w32", "1x", False): 40.2, ("faster_rcnn_w32", "2x", False): 41.4,
            ("faster_rcnn_w40", "1x", False): 41.2, ("faster_rcnn_w40", "2x", False): 42.1,
            ("faster_rcnn_w48", "1x", False): 40.9, ("faster_rcnn_w48", "2x", False): 41.5,
            ("cascade_rcnn_w18", "20e", False): 41.2, ("cascade_rcnn_w32", "20e", False): 43.3,
            ("cascade_rcnn_w40", "20e", False): 43.8,
            ("mask_rcnn_w18", "1x", False): 37.7, ("mask_rcnn_w18", "2x", False): 39.8,
            ("mask_rcnn_w32", "1x", False): 41.2, ("mask_rcnn_w32", "2x", False): 42.5,
            ("mask_rcnn_w40", "1x", False): 42.1, ("mask_rcnn_w40", "2x", False): 42.8,
            ("cascade_mask_rcnn_w18", "20e", False): 41.6, ("cascade_mask_rcnn_w32", "20e", False): 44.3,
            ("cascade_mask_rcnn_w40", "20e", False): 45.1}
PAPER_MASK_AP = {("mask_rcnn_w18", "1x", False): 34.2, ("mask_rcnn_w18", "2x", False): 36.0,
                 ("mask_rcnn_w32", "1x", False): 37.1, ("mask_rcnn_w32", "2x", False): 37.8,
                 ("mask_rcnn_w40", "1x", False): 37.5, ("mask_rcnn_w40", "2x", False): 38.2,
                 ("cascade_mask_rcnn_w18", "20e", False): 36.4, ("cascade_mask_rcnn_w32", "20e", False): 38.6,
                 ("cascade_mask_rcnn_w40", "20e", False): 39.3}
TWO_STAGE = ("faster_rcnn", "cascade_rcnn", "mask_rcnn", "cascade_mask_rcnn")
VARIANTS = ("fcos_w18", "fcos_w32", "centernet_w48", "faster_rcnn_w18", "faster_rcnn_w32", "faster_rcnn_w40",
            "faster_rcnn_w48", "cascade_rcnn_w18", "cascade_rcnn_w32", "cascade_rcnn_w40", "mask_rcnn_w18",
            "mask_rcnn_w32", "mask_rcnn_w40", "cascade_mask_rcnn_w18", "cascade_mask_rcnn_w32",
            "cascade_mask_rcnn_w40")
SCHEDULES = {"1x": (12, (8, 11)), "2x": (24, (16, 22)), "20e": (20, (16, 19))}


def get_config(arg=None):
  options = config_lib.parse_arg(arg, positional="variant", variant="fcos_w32", schedule="1x", multiscale=False,
                                 tiny=False, coco_dir="data/coco")
  config_lib.check_choice("variant", options.variant, VARIANTS)
  config_lib.check_choice("schedule", options.schedule, SCHEDULES)
  head, width = options.variant.rsplit("_", 1)
  config = config_lib.base_config("detection", "detection")
  config.model.name = f"hrnet_{width}"
  config.model.overrides = {"head": head, "num_classes": 80, "norm_eval": head != "centernet"}
  config.data.update(name="coco_instances", train_split="train", eval_split="validation",
                     manual_dir=options.coco_dir, classes="coco", image_scale=(1333, 800), canvas=(800, 1344),
                     orientation_buckets=True, max_objects=100)
  config.data.annotation_file = os.path.join(options.coco_dir, "annotations", "instances_val2017.json")
  config.eval_batch_size = 16
  config.log_every = 50
  config.eval_every = 0
  config.checkpoint_every = 2000
  config.best_metric = "eval/bbox_AP"
  if head == "fcos":
    epochs, milestones = SCHEDULES[options.schedule]
    config.data.bgr = True
    config.data.short_sides = (640, 800) if options.multiscale else ()
    config.global_batch_size = 16
    config.num_epochs = epochs
    config.optimizer.update(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4,
                            weight_decay_mask="no_layer_bias", bias_lr_multiplier=2.0, grad_clip_norm=35.0)
    # 117266: the train2017 images with annotations (the train split): 500 warm-up steps at batch 16, as
    # MMDetection's (the warm-up is set in epochs, so another global batch size scales its steps).
    config.schedule.update(name="step", warmup_epochs=500 * 16 / 117266, warmup="constant", warmup_ratio=1 / 3,
                           milestones=milestones, decay_factor=0.1)
  elif head in TWO_STAGE:
    cascade = head.startswith("cascade")
    if cascade and options.schedule not in ("1x", "20e"):
      raise ValueError(f"Cascade R-CNN's configs train 20 epochs (schedule=20e), not schedule={options.schedule}")
    epochs, milestones = SCHEDULES["20e" if cascade else options.schedule]
    config.data.masks = head.endswith("mask_rcnn")
    if config.data.masks:
      config.best_metric = "eval/segm_AP"
    config.global_batch_size = 16
    config.num_epochs = epochs
    config.optimizer.update(name="sgd", learning_rate=0.02, momentum=0.9, weight_decay=1e-4, weight_decay_mask="all",
                            grad_clip_norm=0.0)
    config.schedule.update(name="step", warmup_epochs=500 * 16 / 117266, warmup="linear", warmup_ratio=0.001,
                           milestones=milestones, decay_factor=0.1)
  else:
    config.data.update(image_scale=(512, 512), canvas=(512, 512), orientation_buckets=False)
    config.global_batch_size = 32
    config.num_epochs = 140
    config.optimizer.update(name="adam", learning_rate=1.25e-4, weight_decay=0.0)
    config.schedule.update(name="step", warmup_epochs=0.0, milestones=(90, 120), decay_factor=0.1)
  if options.tiny:
    config.model.name = "hrnet_tiny"
    config.model.overrides = {
        "fcos": {"head": head, "num_classes": 4, "fpn_channels": 32, "fcos_channels": 32},
        # Anchors of scale 2 (8 ... 128 pixels) for objects of 8 to 60; fewer proposals and RoIs for the CPU.
        **{two_stage: {"head": head, "num_classes": 4, "fpn_channels": 32, "rpn_channels": 32, "roi_fc": 128,
                       "anchor_scales": (2.0,), "proposal_count": 200, "train_proposal_count": 200,
                       "roi_samples": 128, **({"mask_channels": 32} if two_stage.endswith("mask_rcnn") else {})}
           for two_stage in TWO_STAGE},
        "centernet": {"head": head, "num_classes": 4, "centernet_channels": 32}}[head]
    config.data.update(name="synthetic_objects", classes="synthetic_objects", image_scale=(128, 128),
                       canvas=(128, 128), orientation_buckets=False, max_objects=8, short_sides=(), bgr=False,
                       annotation_file="", mask_size=56)
    config.global_batch_size = 16
    config.eval_batch_size = 64
    config.num_epochs = 4
    # Adam from scratch, without the COCO FCOS recipe's bias and warm-up details (nor its frozen BatchNorm).
    config.optimizer.update(name="adam", learning_rate=1e-3, weight_decay=0.0, grad_clip_norm=35.0,
                            weight_decay_mask="kernels", bias_lr_multiplier=1.0)
    config.schedule.update(name="cosine", warmup_epochs=0.1, warmup="linear", warmup_ratio=0.0, milestones=())
    config.log_every = 20
    config.checkpoint_every = 200
    config.best_metric = "eval/bbox_AP"  # mask AP needs data.annotation_file, which the synthetic data lacks
  return config
