"""PASCAL-Context semantic segmentation with HRNetV2-W48 (HRNet-Semantic-Segmentation, ``experiments/pascal_ctx``):

    python -m hrnet_jax.train --config configs/pascal_context.py:59 --workdir /runs/pascal_context_59 \\
        --config.data.data_dir=$TFDS_DATA_DIR --config.init_from=hrnetv2_w48_imagenet_pretrained.pth
    python -m hrnet_jax.evaluate --config configs/pascal_context.py:59 --checkpoint /runs/pascal_context_59 \\
        --config.test.scales='(0.5,0.75,1.0,1.25,1.5,1.75)' --config.test.flip=true
    python -m hrnet_jax.train --config configs/pascal_context.py:ocr_w48_59 --workdir /runs/pascal_context_ocr_59 ...

Recipe: SGD lr 0.004, momentum 0.9, weight decay 1e-4, poly 0.9, 200 epochs (4998 images / 16), batch 16, random
scale 0.5-2.1 of the 520 long side, crop 520x520 (59 classes; the paper) or 480x480 (60 classes; the official
yaml), flip. The 59-class benchmark ignores background; the 60-class one counts it as a class.

Evaluation is the official ``testval``: each image at its own size (up to 500x500, in a 512x512 canvas), its long
side scaled to 520 x scale, in 520x520 (480x480) windows every 2/3 of a window. mIoU of the paper (Table 8,
multi-scale and flip testing; OCR: the official HRNet-OCR README, scales 0.5-2.0 and flip):

    benchmark     mIoU
    59            54.0
    60            48.3
    ocr_w48_59    56.2
    ocr_w48_60    50.1

``ocr_w48_<59|60>`` (``seg_hrnet_ocr_w48_cls<59|60>_520x520_sgd_lr1e-3_wd1e-4_bs_16_epoch200.yaml``): SGD lr 0.001
with the OCR head's parameters at 10x (the official NONBACKBONE_MULT), weight decay 1e-4, 200 epochs, batch 16, crop
520x520 for both class counts, align_corners=True, BatchNorm momentum 0.1, loss 0.4 x CE(aux) + CE(OCR).

``tiny``: hrnet_tiny on the synthetic shapes' masks at 64x64, evaluated in 48x48 sliding windows.
"""

from hrnet_jax.engine import config_lib
from hrnet_jax.tasks.segmentation.configs import segmentation_config, tiny_segmentation, use_ocr

PAPER_MIOU = {"59": 54.0, "60": 48.3, "ocr_w48_59": 56.2, "ocr_w48_60": 50.1}
CROP = {"59": 520, "60": 480, "ocr_w48_59": 520, "ocr_w48_60": 520}


def get_config(arg=None):
  options = config_lib.parse_arg(arg, positional="benchmark", benchmark="59", tiny=False)
  config_lib.check_choice("PASCAL-Context benchmark", options.benchmark, PAPER_MIOU)
  classes = int(options.benchmark[-2:])
  ocr = options.benchmark.startswith("ocr_")
  crop = CROP[options.benchmark]
  config = segmentation_config(
      model="hrnet_w48", dataset="pascal_context", labels=f"pascal_context_{classes}", crop=(crop, crop),
      base_size=520, eval_canvas=(512, 512), batch=16, epochs=200, learning_rate=0.001 if ocr else 0.004,
      weight_decay=1e-4)
  config.data.ignore_background = classes == 59
  config.data.variable_size = True
  config.test.update(mode="sliding", window=(crop, crop), stride=2 / 3, pad_to_window=True, base_size=520)
  if ocr:
    use_ocr(config, head_lr_multiplier=10.0)
  if options.tiny:
    tiny_segmentation(config)
  return config
