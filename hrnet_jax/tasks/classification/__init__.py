"""Image classification (HRNet-Image-Classification): softmax cross-entropy, top-1/top-5 accuracy.

Recipes: ``imagenet`` (the official random-resized crop / shorter side 256, center 224) and
``synthetic_classification`` (the synthetic shapes' 4 classes).
"""

from hrnet_jax.data.synthetic import IMAGE_SIZE
from hrnet_jax.model.factory import ModelDefaults
from hrnet_jax.tasks.spec import BatchKey, Recipe, TaskSpec


def _keys(size: int):
  example = {"image": BatchKey("float32", (size, size, 3)), "label": BatchKey("int32")}
  return example, example


SYNTHETIC = Recipe(
    "synthetic_classification", make="hrnet_jax.tasks.classification.recipes:synthetic_classification",
    keys=lambda data: _keys(data.image_size or IMAGE_SIZE),
    defaults={"image_size": 0})  # the square size the 64x64 images are resized to; 0 keeps them (tests use 32)

IMAGENET = Recipe(
    "imagenet", make="hrnet_jax.tasks.classification.recipes:imagenet", keys=lambda data: _keys(data.image_size),
    defaults={"image_size": 224,  # the crop
              "eval_resize": 0,  # the shorter side before the eval center crop; 0: image_size / 0.875 (256 at 224)
              "crop_area": (0.08, 1.0), "crop_ratio": (3 / 4, 4 / 3)})  # the random-resized-crop ranges

TASK = TaskSpec(
    name="classification",
    # HRNet-Image-Classification: nearest fusion upsampling, stage 1 from the YAML.
    model=ModelDefaults(head="classification", count_name="num_classes", count=1000),
    task="hrnet_jax.tasks.classification.task:ClassificationTask",
    config={"label_smoothing": 0.0},
    recipes=(SYNTHETIC, IMAGENET),
    predict="hrnet_jax.tasks.classification.predict:predict_top_classes",
)
