"""HRNet (Wang et al., TPAMI 2020) in JAX/Flax: models, weight import, training for every task."""

from hrnet_jax.convert import WeightMismatchError, load_pytorch_weights
from hrnet_jax.hrnet import FusionOptions, HRNetBackbone, HRNetSpec, StageSpec
from hrnet_jax.models import HRNet, TASKS, VARIANTS, create_model

__all__ = ["FusionOptions", "HRNet", "HRNetBackbone", "HRNetSpec", "StageSpec", "TASKS", "VARIANTS",
           "WeightMismatchError", "create_model", "load_pytorch_weights"]
