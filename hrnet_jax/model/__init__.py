"""The network: backbone, heads and layers, named variants, ``create_model``, and PyTorch weight conversion.

JAX and Flax only: nothing here imports TensorFlow, and the model knows tasks only through the task registry
(each task's ``ModelDefaults``).
"""

from hrnet_jax.model.backbone import FusionOptions, HRNetBackbone, HRNetSpec, StageSpec
from hrnet_jax.model.convert import WeightMismatchError, load_pytorch_weights
from hrnet_jax.model.factory import HRNet, ModelDefaults, count_parameters, create_model, output_count
from hrnet_jax.model.variants import VARIANTS, resolve_spec

__all__ = ["FusionOptions", "HRNet", "HRNetBackbone", "HRNetSpec", "ModelDefaults", "StageSpec", "VARIANTS",
           "WeightMismatchError", "count_parameters", "create_model", "load_pytorch_weights", "output_count",
           "resolve_spec"]
