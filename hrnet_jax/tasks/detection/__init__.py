"""Object detection on HRNetV2p (issues #19, #20): FCOS, CenterNet, Faster / Mask / Cascade (Mask) R-CNN; COCO box
and mask AP through pycocotools.

The network is the backbone with a detector head: ``fcos`` (the V2p pyramid of MMDetection's HRFPN + the FCOS head),
``faster_rcnn`` / ``cascade_rcnn`` (the pyramid + RPN + R-CNN box heads), ``mask_rcnn`` / ``cascade_mask_rcnn``
(with mask heads) or ``centernet`` (heads on the V2 representation at stride 4). ``head="v2p"`` gives the bare
pyramid.
"""

from hrnet_jax.model.factory import HeadSpec, ModelDefaults
from hrnet_jax.tasks.spec import BatchKey, Recipe, TaskSpec


def _keys(data):
  canvas, count = tuple(data.canvas), data.max_objects
  train = {"image": BatchKey("float32", (*canvas, 3)), "boxes": BatchKey("float32", (count, 4)),
           "labels": BatchKey("int32", (count,)), "box_valid": BatchKey("bool", (count,)),
           "image_size": BatchKey("int32", (2,))}
  if data.masks:
    train["gt_masks"] = BatchKey("uint8", (count, data.mask_size, data.mask_size))
  evaluation = {"image": train["image"], "image_id": BatchKey("int64"), "scale": BatchKey("float32", (2,)),
                "image_size": train["image_size"], "original_size": train["image_size"],
                "gt_boxes": BatchKey("float32", (count, 4)),
                "gt_labels": BatchKey("int32", (count,)), "gt_crowd": BatchKey("bool", (count,)),
                "gt_areas": BatchKey("float32", (count,)), "gt_ids": BatchKey("int64", (count,)),
                "gt_present": BatchKey("bool", (count,))}
  return train, evaluation


def _portrait(data):
  """The portrait images' canvas is the landscape one turned: (h, w) -> (w, h)."""
  portrait = data.copy_and_resolve_references()
  portrait.canvas = tuple(data.canvas)[::-1]
  return portrait


# MMDetection's COCO pipeline (recipes.Detection); the defaults fit the synthetic objects (128 x 128).
DETECTION = Recipe(
    "detection", make="hrnet_jax.tasks.detection.recipes:detection", keys=_keys, portrait=_portrait,
    defaults={"classes": "synthetic_objects",  # the class set (label_sets.CLASS_SETS), or "dataset": its own
              "image_scale": (128, 128),  # MMDetection's img_scale (long, short): COCO (1333, 800)
              "short_sides": (),  # training draws the short side from these (multi-scale); () uses image_scale's
              "canvas": (128, 128),  # every image is padded into this (h, w)
              # Batches of landscape images only (in canvas) or portrait ones only (in canvas turned, (w, h)), as
              # MMDetection's GroupSampler: COCO's canvas (800, 1344) instead of one of (1344, 1344) for both.
              "orientation_buckets": False,
              "max_objects": 8,  # the dataset's padded object count
              "flip": True,
              "bgr": False,  # channel order BGR (MMDetection's HRNet FCOS configs), else RGB
              "masks": False,  # each object's mask in training (Mask R-CNN), sampled over its box to
              "mask_size": 112})  # mask_size x mask_size

FPN_OPTIONS = ("fpn_channels", "fpn_levels", "fpn_stride", "fpn_pooling", "fpn_representation")
# What the two-stage detectors' configs may change (the rest is each detector's class: two_stage.py).
TWO_STAGE_OPTIONS = {"rpn_channels": 256, "roi_fc": 1024, "anchor_scales": (8.0,), "proposal_count": 1000,
                     "roi_samples": 512}
MASK_OPTIONS = {"mask_channels": 256}

TASK = TaskSpec(
    name="detection",
    model=ModelDefaults(
        head="fcos", count_name="num_classes", count=80,
        task_heads={"fcos": HeadSpec("hrnet_jax.tasks.detection.fcos:FCOSDetector",
                                     {"fcos_channels": 256, "fcos_convs": 4}, network_defaults={"fpn_stride": 2},
                                     shared=FPN_OPTIONS),
                    **{name: HeadSpec(f"hrnet_jax.tasks.detection.two_stage:{module}",
                                      {**TWO_STAGE_OPTIONS, "train_proposal_count": train_proposals},
                                      shared=FPN_OPTIONS)
                       for name, module, train_proposals in (("faster_rcnn", "FasterRCNN", 1000),
                                                             ("cascade_rcnn", "CascadeRCNN", 2000))},
                    **{name: HeadSpec(f"hrnet_jax.tasks.detection.two_stage:{module}",
                                      {**TWO_STAGE_OPTIONS, **MASK_OPTIONS, "train_proposal_count": train_proposals},
                                      shared=FPN_OPTIONS)
                       for name, module, train_proposals in (("mask_rcnn", "MaskRCNN", 1000),
                                                             ("cascade_mask_rcnn", "CascadeMaskRCNN", 2000))},
                    "centernet": HeadSpec("hrnet_jax.tasks.detection.centernet:CenterNetHead",
                                          {"centernet_channels": 64})}),
    task="hrnet_jax.tasks.detection.task:DetectionTask",
    config={"fcos": {"regress_ranges": ((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, 1e8)),
                     "center_sampling": False, "center_sample_radius": 1.5},
            # The test path (MMDetection's test_cfg): per level before NMS, score threshold, NMS IoU, per image;
            # and the least score of a box drawn (eval previews, predict's pictures).
            "detection_test": {"pre_nms": 1000, "score_threshold": 0.05, "iou_threshold": 0.5,
                               "max_detections": 100, "draw_threshold": 0.3},
            "data": {"annotation_file": ""}},  # COCO's ground truth; "" builds it from the eval examples
    recipes=(DETECTION,),
    builders={"synthetic_objects": "hrnet_jax.tasks.detection.builder:SyntheticObjects",
              "coco_instances": "hrnet_jax.tasks.detection.coco_builder:CocoInstances"},
    predict="hrnet_jax.tasks.detection.predict:predict_boxes",
)
