"""Cityscapes semantic segmentation with HRNetV2 (HRNet-Semantic-Segmentation, ``experiments/cityscapes``):

    python -m hrnet_jax.train --config configs/cityscapes.py:w48 --workdir /runs/cityscapes_w48 \\
        --config.data.data_dir=$TFDS_DATA_DIR --config.init_from=hrnetv2_w48_imagenet_pretrained.pth
    python -m hrnet_jax.train --config configs/cityscapes.py:tiny --workdir /tmp/seg_tiny   # CPU, synthetic

Recipe (``seg_hrnet_<variant>_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml``): SGD lr 0.01, momentum 0.9, weight
decay 5e-4 on every parameter, poly 0.9, 484 epochs (2975 images / 12 = 247 steps an epoch), batch 12, random
scale 0.5-2.1 of the 2048 long side, crop 512x1024, flip; class-weighted cross-entropy (``ohem`` optional:
threshold 0.9, 131,072 pixels kept per 3 images as the official per-GPU batch, so 524,288 per 12).

val mIoU of the official models (whole image, single scale, no flip; the official README):

    variant        params   mIoU
    w48            65.9M    81.1
    w18_small_v2   3.9M     76.2
    w18_small_v1   1.5M     70.3
    ocr_w48        70.4M    81.6   HRNetV2-W48 + OCR (HRNet-OCR branch; test set: 82.3 train+val, multi-scale + flip)

``ocr_w48`` (``seg_hrnet_ocr_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml``): the same recipe and class
weights with the OCR head, align_corners=True, BatchNorm momentum 0.1 and the loss 0.4 x CE(aux) + CE(OCR).

Test-time options, logged beside every mIoU: ``--config.test.scales='(0.5,0.75,1.0,1.25,1.5,1.75)'`` and
``--config.test.flip=true`` (the official Cityscapes rule: scales up to 1 run whole, larger ones in 1024x2048
windows). ``tiny``: hrnet_tiny on the synthetic shapes' masks at 64x64, with these loss options (``ocr_w48,tiny``:
with a small OCR head).
"""

from hrnet_jax.engine import config_lib
from hrnet_jax.tasks.segmentation.configs import segmentation_config, tiny_segmentation, use_ocr

PAPER_MIOU = {"w48": 81.1, "w18_small_v2": 76.2, "w18_small_v1": 70.3, "ocr_w48": 81.6}


def get_config(arg=None):
  options = config_lib.parse_arg(arg, positional="variant", variant="w48", tiny=False)
  config_lib.check_choice("variant", options.variant, PAPER_MIOU)
  config = segmentation_config(
      model=f"hrnet_{options.variant.removeprefix('ocr_')}", dataset="cityscapes", labels="cityscapes",
      crop=(512, 1024), base_size=2048, eval_canvas=(1024, 2048), batch=12, epochs=484, learning_rate=0.01,
      weight_decay=5e-4)
  config.class_weights = True
  config.ohem.min_kept = 131072 * 4
  config.test.update(mode="sliding", window=(1024, 2048), stride=1.0, pad_to_window=False, base_size=2048)
  config.eval_batch_size = 4
  if options.variant.startswith("ocr_"):
    use_ocr(config)
  if options.tiny:
    tiny_segmentation(config)
    config.ohem.min_kept = 2048
  return config
