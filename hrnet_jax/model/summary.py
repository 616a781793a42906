"""Parameter count, multiply-accumulates and a per-stage breakdown of any variant and task (``python -m
hrnet_jax.summary`` prints them).

Two MAC counts are printed, because they differ by a few percent and papers use the first:
- ``MACs``: every conv/linear kernel tap at every output position, the convention of PyTorch's flop counters and
  of the official GMACs table (padding taps included);
- ``XLA``: half the FLOPs of XLA's cost analysis of the jitted forward, which skips multiplications by the zero
  padding and also counts elementwise ops (BatchNorm, ReLU, additions, resizes).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.model import scan_layout
from hrnet_jax.model.factory import create_model


@dataclasses.dataclass
class ModelSummary:
  name: str
  task: str
  input_shape: tuple[int, ...]
  params: int
  macs: int
  xla_macs: float
  stage_params: dict[str, int]
  stage_macs: dict[str, int]

  def table(self) -> str:
    lines = [f"{self.name} ({self.task}) at {self.input_shape[1]}x{self.input_shape[2]}",
             f"  parameters  {self.params:,}",
             f"  MACs        {self.macs / 1e9:.3f} G  (every kernel tap, as PyTorch counters and the paper)",
             f"  XLA         {self.xla_macs / 1e9:.3f} G  (XLA cost analysis / 2: no padding taps, + elementwise)",
             f"  {'part':<14}{'params':>14}{'GMACs':>10}"]
    for part in dict.fromkeys([*self.stage_macs, *self.stage_params]):  # network order (the order of calls)
      lines.append(f"  {part:<14}{self.stage_params[part]:>14,}{self.stage_macs.get(part, 0) / 1e9:>10.3f}")
    return "\n".join(lines)


def _part_of(path: tuple[str, ...]) -> str:
  """Which part of the network a module path belongs to: stem, stage1, transition2, stage3, head, ..."""
  if not path:
    return "other"
  if path[0] != "backbone":
    return path[0]
  if len(path) < 2:
    return "stem"
  name = path[1]
  if name.startswith("layer1_"):
    return "stage1"
  match = re.match(r"(stage\d|transition\d)", name)
  return match.group(1) if match else "stem"


def conv_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
  """Multiply-accumulates of every Conv and Dense (all kernel taps), grouped by network part."""
  per_module: dict[tuple[str, ...], int] = {}

  def count(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name == "__call__" and isinstance(module, (nn.Conv, nn.Dense)):
      taps = int(np.prod(module.kernel_size)) if isinstance(module, nn.Conv) else 1
      # By path: nn.scan traces its body more than once, and a scanned layer stands for several.
      per_module[module.path] = int(np.prod(out.shape)) * args[0].shape[-1] * taps * scan_layout.copies(module.path)
    return out

  with nn.intercept_methods(count):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(input_shape, jnp.float32))
  macs: dict[str, int] = collections.defaultdict(int)
  for path, module_macs in per_module.items():
    macs[_part_of(path)] += module_macs
  return dict(macs)


def summarize(name: str, task: str = "classification", size: tuple[int, int] = (224, 224),
              **overrides: Any) -> ModelSummary:
  # The same network; XLA's count below would see a scanned layer once.
  model = create_model(name, task=task, **{**overrides, "scan_repeats": False})
  input_shape = (1, *size, 3)
  images = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), images)
  stage_params: dict[str, int] = collections.defaultdict(int)
  for path, leaf in flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"])).items():
    stage_params[_part_of(path[:-1])] += leaf.size
  stage_macs = conv_macs(model, input_shape)
  cost = jax.jit(model.apply).lower(variables, images).cost_analysis()
  return ModelSummary(name=name, task=task, input_shape=input_shape, params=sum(stage_params.values()),
                      macs=sum(stage_macs.values()), xla_macs=float(cost["flops"]) / 2,
                      stage_params=dict(stage_params), stage_macs=stage_macs)
