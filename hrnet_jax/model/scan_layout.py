"""The two layouts of an HRNet's variables: one entry per layer (the official names), or repeated layers stacked.

With ``scan_repeats`` the identical layers ``stage3_0`` ... ``stage3_3`` run as one ``nn.scan`` named
``stage3_0_to_3``, whose every variable has a leading axis of 4 (nested: ``branches_0_0_to_3`` inside it adds a
second axis). The name says which layers a stack holds, so converting between the layouts needs nothing but the
tree: checkpoints and PyTorch weights load into either model.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import numpy as np

_STACK = re.compile(r"^(?P<prefix>.+)_(?P<first>\d+)_to_(?P<last>\d+)$")


def stack_name(prefix: str, start: int, stop: int) -> str:
  """The name of the stack of layers ``{prefix}_{start}`` ... ``{prefix}_{stop - 1}``."""
  return f"{prefix}_{start}_to_{stop - 1}"


def _members(name: str) -> list[str] | None:
  match = _STACK.match(name)
  if match is None:
    return None
  return [f"{match['prefix']}_{k}" for k in range(int(match["first"]), int(match["last"]) + 1)]


def copies(path: tuple[str, ...]) -> int:
  """How many layers a module at ``path`` stands for (the product of the lengths of the stacks it is inside)."""
  count = 1
  for name in path:
    members = _members(name)
    count *= len(members) if members else 1
  return count


def _take(leaf: Any, index: int) -> Any:
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
  return leaf[index]


def unstack(tree: Mapping[str, Any]) -> dict[str, Any]:
  """One entry per layer: every stack is split into its layers (arrays or ShapeDtypeStructs)."""
  out = {}
  for name, value in tree.items():
    members = _members(name) if isinstance(value, Mapping) else None
    if members is None:
      out[name] = unstack(value) if isinstance(value, Mapping) else value
      continue
    for index, member in enumerate(members):
      out[member] = unstack(jax.tree.map(lambda leaf, i=index: _take(leaf, i), dict(value)))
  return out


def stack(tree: Mapping[str, Any], like: Mapping[str, Any]) -> dict[str, Any]:
  """``tree`` (either layout) in the layout of ``like`` (e.g. a model's variable shapes): where ``like`` has a
  stack and ``tree`` has its layers, they are stacked on a new leading axis."""
  out = {}
  for name, target in like.items():
    members = _members(name) if isinstance(target, Mapping) else None
    if name in tree or members is None:
      out[name] = stack(tree[name], target) if isinstance(target, Mapping) else tree[name]
      continue
    layers = [stack(tree[member], target) for member in members]
    out[name] = jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *layers)
  return out
