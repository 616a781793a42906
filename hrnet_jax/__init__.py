"""HRNet (Wang et al., TPAMI 2020) in JAX/Flax: models, weight import, training for every task.

The package's map: ``model/`` (the network and weight conversion), ``engine/`` (training, checkpoints, sharding,
configs), ``data/`` (what every task's input shares; the only place besides the tasks' own data modules that
imports TensorFlow), ``tasks/<name>/`` (one folder per task, found through one registry, ``tasks.TASKS``),
``heatmaps/`` (what the heatmap tasks, pose and landmarks, share), and the programs (``python -m hrnet_jax.train``,
``evaluate``, ``predict``, ``benchmark``, ``summary``, ``draw``).
"""

import os

# TensorFlow's C++ INFO lines (the oneDNN banner at import) stay out of every run's output; its warnings (e.g. why
# an image could not be decoded) still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# pylint: disable=wrong-import-position
from hrnet_jax.model import (FusionOptions, HRNet, HRNetBackbone, HRNetSpec, StageSpec, VARIANTS, WeightMismatchError,
                             create_model, load_pytorch_weights)
from hrnet_jax.tasks import TASKS

__all__ = ["FusionOptions", "HRNet", "HRNetBackbone", "HRNetSpec", "StageSpec", "TASKS", "VARIANTS",
           "WeightMismatchError", "create_model", "load_pytorch_weights"]
