"""Variables for a model from any source, by one path for every program: an Orbax checkpoint of this codebase (a
workdir, its ``best``, a step dir) or a PyTorch-layout file (official or timm ``.pth``/``.pt``/``.bin``,
``.safetensors``, ``.npz``).

- ``load_for_inference`` / ``load_variables`` (``evaluate``, ``predict``): every tensor must match the model exactly;
  one ``WeightMismatchError`` lists every difference and what the checkpoint looks like.
- ``init_from`` (``--config.init_from``): the same sources and the same strict backbone; head tensors that are
  missing or differ in shape (another class count, another task) start from the run's own fresh ones, checkpoint
  tensors of another head are ignored, and the log lists both.

Either way matching goes by the official PyTorch key of every tensor, one entry per layer, so either model layout
(``scan_repeats``) loads from either. Orbax arrays load directly, in their own layout and dtype (no round trip
through the PyTorch layout).
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import ml_collections
from absl import logging

from hrnet_jax import files, tasks
from hrnet_jax.engine import checkpointing
from hrnet_jax.model import convert

PYTORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".npz")


def _load(model: nn.Module, path: str, *, use_ema: bool, reinit_head: bool,
          fresh: Mapping[str, Any] | None) -> tuple[dict[str, Any], convert.LoadReport]:
  rule = {"strict": True, "reinit_head": reinit_head, "fresh": fresh}
  if path.endswith(PYTORCH_SUFFIXES):
    if not files.path(path).is_file():
      raise FileNotFoundError(f"no weights file {path}")
    return convert.convert_state_dict(model, path, **rule)
  state = convert.flax_state(checkpointing.read_variables(path, use_ema))
  return convert.match_variables(model, convert.model_variable_shapes(model), state, flax_layout=True, **rule)


def load_variables(model: nn.Module, path: str, use_ema: bool = False) -> dict[str, Any]:
  """Variables for ``model`` from ``path``, which must match it exactly (``use_ema``: an Orbax checkpoint's EMA
  parameters, when it has them)."""
  variables, report = _load(model, path, use_ema=use_ema, reinit_head=False, fresh=None)
  logging.info("loaded %s: %s", path, report.summary())
  return variables


def init_from(model: nn.Module, path: str, fresh: Mapping[str, Any]) -> dict[str, Any]:
  """``params`` and ``batch_stats`` for a new run from ``path``: the backbone must match; head tensors that are
  missing or differ come from ``fresh`` (the run's initial variables)."""
  variables, report = _load(model, path, use_ema=False, reinit_head=True, fresh=fresh)
  logging.info("init_from %s: %s", path, report.summary())
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def load_for_inference(config: ml_collections.ConfigDict, checkpoint: str) -> tuple[Any, nn.Module, dict[str, Any]]:
  """The task, its model and the checkpoint's variables for it (the EMA parameters when the config keeps an EMA):
  what ``evaluate``, ``predict`` and export start from."""
  task = tasks.create(config)
  model = task.create_model()
  return task, model, load_variables(model, checkpoint, use_ema=bool(config.ema_decay))
