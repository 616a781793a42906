"""Facial landmarks with HRNetV2-W18 (HRNet-Facial-Landmark-Detection): WFLW, 300W, COFW, AFLW; heatmap MSE, the
official decoding, NME by each dataset's normalisation, failure rate and AUC."""

from hrnet_jax.model.factory import ModelDefaults
from hrnet_jax.tasks.landmarks.landmark_sets import CUSTOM_DEFAULTS, landmark_spec
from hrnet_jax.tasks.spec import BatchKey, Recipe, TaskSpec


def _keys(data):
  size, count = data.input_size, landmark_spec(data).count
  train = {"image": BatchKey("float32", (size, size, 3)),
           "target": BatchKey("float32", (size // 4, size // 4, count)),
           "target_weight": BatchKey("float32", (count,))}
  evaluation = {**train, "center": BatchKey("float32", (2,)), "scale": BatchKey("float32", (2,)),
                "gt_landmarks": BatchKey("float32", (count, 2)), "box_size": BatchKey("float32")}
  return train, evaluation


# The official recipe (experiments/<dataset>/face_alignment_<dataset>_hrnet_w18.yaml; recipes.FaceCrop).
FACE_CROP = Recipe(
    "face_landmarks", make="hrnet_jax.tasks.landmarks.recipes:face_landmarks", keys=_keys,
    defaults={"keypoints": "wflw",  # the landmark set (landmark_sets.LANDMARK_SETS), or "custom" (landmark_spec)
              "landmark_set": CUSTOM_DEFAULTS,
              "input_size": 256,  # the square crop; heatmaps are 1/4 of it
              "sigma": 1.5,  # of the Gaussian targets, in heatmap pixels
              "scale_factor": 0.25, "rotation_factor": 30.0, "rotation_prob": 0.6, "flip": True,
              "box_padding": 1.25})

TASK = TaskSpec(
    name="landmarks",
    # HRNet-Facial-Landmark-Detection: the segmentation network with a heatmap output.
    model=ModelDefaults(head="v2", count_name="num_landmarks", count=98, fusion_upsample="bilinear",
                        bn_momentum=0.01, mix=True),
    task="hrnet_jax.tasks.landmarks.task:LandmarkTask",
    config={"flip_test": False},  # the official recipes evaluate without flip test; it is an option here
    recipes=(FACE_CROP,),
    builders={"face_landmarks": "hrnet_jax.tasks.landmarks.builder:FaceLandmarks"},
    predict="hrnet_jax.heatmaps.predict:predict_keypoints",
)
