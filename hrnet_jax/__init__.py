"""HRNet (Wang et al., TPAMI 2020) in JAX/Flax: models, weight import, training for every task.

The package's map: ``model/`` (the network and weight conversion), ``engine/`` (training, checkpoints, sharding,
configs), ``data/`` (what every task's input shares; the only place besides the tasks' own data modules that
imports TensorFlow), ``tasks/<name>/`` (one folder per task, found through one registry, ``tasks.TASKS``),
``heatmaps/`` (what the heatmap tasks, pose and landmarks, share), and the programs (``python -m hrnet_jax.train``,
``evaluate``, ``predict``, ``benchmark``, ``summary``, ``draw``).
"""

from hrnet_jax.model import (FusionOptions, HRNet, HRNetBackbone, HRNetSpec, StageSpec, VARIANTS, WeightMismatchError,
                             create_model, load_pytorch_weights)
from hrnet_jax.tasks import TASKS

__all__ = ["FusionOptions", "HRNet", "HRNetBackbone", "HRNetSpec", "StageSpec", "TASKS", "VARIANTS",
           "WeightMismatchError", "create_model", "load_pytorch_weights"]
