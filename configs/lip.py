"""LIP human parsing with HRNetV2-W48 (HRNet-Semantic-Segmentation, ``experiments/lip``):

    python -m hrnet_jax.train --config configs/lip.py --workdir /runs/lip \\
        --config.data.data_dir=$TFDS_DATA_DIR --config.init_from=hrnetv2_w48_imagenet_pretrained.pth

Recipe (``seg_hrnet_w48_473x473_sgd_lr7e-3_wd5e-4_bs_40_epoch150.yaml``): SGD lr 0.007, momentum 0.9, weight decay
5e-4, poly 0.9, 150 epochs (30,462 images / 40), batch 40; every image resized to 473x473, then random scale
0.5-1.6 (scale factor 11), crop 473x473 and flip, which swaps the left/right arm, leg and shoe labels.

Evaluation (the official testval): the image resized to 473x473, the prediction resized back to the original label
(in a 1024x1024 canvas), flip test averaging the flipped pass with its left/right channels swapped. mIoU of the
paper (Table 10): 55.90 (with flip test).

``ocr_w48`` (``seg_hrnet_ocr_w48_473x473_sgd_lr7e-3_wd5e-4_bs_40_epoch150.yaml``): the same recipe with the OCR head,
align_corners=True, BatchNorm momentum 0.1 and the loss 0.4 x CE(aux) + CE(OCR); 56.48 with flip test (the official
HRNet-OCR README, which notes that it reproduced with PyTorch 0.4.1).

``tiny``: hrnet_tiny on the synthetic shapes' masks at 64x64.
"""

from hrnet_jax.engine import config_lib
from hrnet_jax.tasks.segmentation.configs import segmentation_config, tiny_segmentation, use_ocr

PAPER_MIOU = {"w48": 55.90, "ocr_w48": 56.48}


def get_config(arg=None):
  options = config_lib.parse_arg(arg, positional="variant", variant="w48", tiny=False)
  config_lib.check_choice("variant", options.variant, PAPER_MIOU)
  config = segmentation_config(
      model="hrnet_w48", dataset="lip", labels="lip", crop=(473, 473), base_size=473, eval_canvas=(473, 473),
      batch=40, epochs=150, learning_rate=0.007, weight_decay=5e-4)
  config.data.resize_to_crop_first = True
  config.data.scale_steps = 11
  config.data.eval_image_size = (473, 473)
  config.data.label_canvas = (1024, 1024)
  config.test.flip = True
  if options.variant == "ocr_w48":
    use_ocr(config)
  if options.tiny:
    tiny_segmentation(config)
  return config
