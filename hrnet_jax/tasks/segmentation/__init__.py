"""Semantic segmentation with HRNetV2 (HRNet-Semantic-Segmentation): Cityscapes, PASCAL-Context, LIP.

Per-pixel cross-entropy with an ignore label (class weights and OHEM optional), mIoU with the official inference
protocol (whole image or sliding windows, multi-scale, flip: the ``test`` section), label sets as data.
"""

from hrnet_jax.model.factory import HeadSpec, ModelDefaults
from hrnet_jax.tasks.segmentation import inference
from hrnet_jax.tasks.spec import BatchKey, Recipe, TaskSpec


def _keys(data):
  crop, canvas = tuple(data.crop_size), tuple(data.eval_canvas)
  label_canvas = tuple(data.label_canvas or canvas)
  train = {"image": BatchKey("float32", (*crop, 3)), "label": BatchKey("int32", crop)}
  evaluation = {"image": BatchKey("float32", (*canvas, 3)), "image_size": BatchKey("int32", (2,)),
                "original_size": BatchKey("int32", (2,)), "label": BatchKey("int32", label_canvas),
                "label_size": BatchKey("int32", (2,))}
  return train, evaluation


# The defaults fit the synthetic shapes' masks (64x64); every dataset's config sets its own (configs.py).
SEGMENTATION = Recipe(
    "segmentation", make="hrnet_jax.tasks.segmentation.recipes:segmentation", keys=_keys,
    defaults={"labels": "synthetic_shapes",  # the label set (label_sets.LABEL_SETS), or "dataset": the dataset's own
              "crop_size": (48, 48),  # training crops (h, w)
              "base_size": 64,  # the long side at scale 1 of the random scale 0.5 + k / 10
              "scale_steps": 16,  # k uniform in 0..scale_steps (16: scales 0.5 to 2.1)
              "resize_to_crop_first": False,  # LIP resizes every training image to the crop first
              "flip": True,
              "ignore_background": False,  # PASCAL-Context 59: class 0 (background) is ignored
              "eval_image_size": (),  # resize eval images to this (h, w) first; () keeps them
              "eval_canvas": (64, 64),  # eval images are padded into this (h, w)
              "label_canvas": (),  # eval labels are padded into this; () is eval_canvas
              "variable_size": False})  # eval images of several sizes

TASK = TaskSpec(
    name="segmentation",
    # HRNet-Semantic-Segmentation (pytorch-v1.1): bilinear everywhere, BN momentum 0.01.
    model=ModelDefaults(head="v2", count_name="num_classes", count=19, fusion_upsample="bilinear", bn_momentum=0.01,
                        mix=True,
                        # HRNetV2 + OCR (ocr.py); its options' defaults are the official MODEL.OCR ones.
                        task_heads={"ocr": HeadSpec("hrnet_jax.tasks.segmentation.ocr:OCRHead",
                                                    {"ocr_mid_channels": 512, "ocr_key_channels": 256,
                                                     "ocr_dropout": 0.05},
                                                    network_defaults={"align_corners": True, "bn_momentum": 0.1})}),
    task="hrnet_jax.tasks.segmentation.task:SegmentationTask",
    config={"class_weights": False,  # the label set's official cross-entropy weights (Cityscapes)
            "ohem": {"enabled": False, "threshold": 0.9, "min_kept": 131072},
            # An OCR model's loss: this times the auxiliary output's cross-entropy, plus the OCR output's (the
            # official LOSS.BALANCE_WEIGHTS [0.4, 1]; OHEM applies to the OCR output only).
            "aux_loss_weight": 0.4,
            # The evaluation protocol (inference.InferenceOptions), stated beside every mIoU.
            "test": inference.config_defaults()},
    recipes=(SEGMENTATION,),
    builders={"semantic_segmentation": "hrnet_jax.tasks.segmentation.builder:SemanticSegmentation"},
    predict="hrnet_jax.tasks.segmentation.predict:predict_label_maps",
)
