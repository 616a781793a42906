"""PyTorch state_dict <-> Flax variables for HRNet, strict by default.

Flax submodules carry the official names with ``_`` before indices, so a Flax path maps to a PyTorch key by
a rule: ``('backbone', 'stage2_0', 'fuse_layers_1_0_0_0', 'kernel')`` -> ``stage2.0.fuse_layers.1.0.0.0.weight``.
Layouts: conv OIHW <-> HWIO, linear (out, in) <-> (in, out), BN weight/bias/running_mean/running_var <->
scale/bias/mean/var; ``num_batches_tracked`` has no Flax counterpart and is dropped. A model built with
``scan_repeats`` stacks its repeated layers (``scan_layout``): both directions go through the one-entry-per-layer
layout, so the same files load into either. ``match_variables`` is the one matching rule (strict, or with the head
re-initialised) for PyTorch files and, arrays left in the Flax layout, this codebase's own checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax import compilation, files
from hrnet_jax.model import checkpoint_inspect, scan_layout

# Wrappers the official training scripts save around the network (DataParallel, the segmentation FullModel).
_WRAPPER_PREFIXES = ("module.", "model.")
_OPENMMLAB_BACKBONE = "backbone."  # OpenMMLab's models hold the HRNet under this name
# MMDetection's names of its HRNet detectors' HRFPN neck and FCOS head (mmcv's ``ConvModule`` holds its conv as
# ``.conv`` and its GroupNorm as ``.gn``; ``Scale`` its factor as ``.scale``) -> the keys ``torch_key`` gives ours.
_MMDETECTION_KEYS = (
    (re.compile(r"^neck\.(reduction_conv|fpn_convs\.\d+)\.conv\.(weight|bias)$"), r"neck.\1.\2"),
    (re.compile(r"^bbox_head\.(cls|reg)_convs\.(\d+)\.conv\.weight$"), r"bbox_head.\1_convs.\2.weight"),
    (re.compile(r"^bbox_head\.(cls|reg)_convs\.(\d+)\.gn\.(weight|bias)$"), r"bbox_head.\1_gn.\2.\3"),
    (re.compile(r"^bbox_head\.conv_(cls|reg|centerness)\.(weight|bias)$"), r"bbox_head.fcos_\1.\2"),
    (re.compile(r"^bbox_head\.scales\.(\d+)\.scale$"), r"bbox_head.scales.\1.weight"),
)
# Keys that belong to a training wrapper, not to the network.
_IGNORED_KEY = re.compile(r"(^|\.)num_batches_tracked$|^loss\.")
# The official landmark code names the V2 head ``head``; the segmentation code, ``last_layer``; the OCR code loads
# that head (of a V2 checkpoint) as its ``aux_head``.
_KEY_ALIASES = {"head.": "last_layer.", "last_layer.": "aux_head."}
_LEAF_TO_TORCH = {("params", "kernel"): "weight", ("params", "bias"): "bias", ("params", "scale"): "weight",
                  ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}
# Top-level Flax modules that have no counterpart in the official (flat) PyTorch models.
_CONTAINERS = ("backbone", "head")


class WeightMismatchError(ValueError):
  """A checkpoint does not fit the model; the message lists every difference."""


@dataclasses.dataclass
class LoadReport:
  """What ``convert_state_dict`` did: keys loaded, and those re-initialised because the head differed."""
  loaded: list[str]
  reinitialized: list[str]
  ignored: list[str]

  def summary(self) -> str:
    lines = [f"loaded {len(self.loaded)} tensors",
             f"re-initialised {len(self.reinitialized)}: {', '.join(self.reinitialized) or 'none'}"]
    if self.ignored:
      lines.append(f"ignored {len(self.ignored)} checkpoint keys: {', '.join(self.ignored)}")
    return "; ".join(lines)


def torch_key(collection: str, path: tuple[str, ...]) -> str:
  """The official PyTorch key of a Flax variable at ``path`` in ``collection``."""
  if (collection, path[-1]) not in _LEAF_TO_TORCH:
    raise WeightMismatchError(f"{collection} {'/'.join(path)} is no variable an HRNet layer has: the checkpoint is "
                              f"of another model, or of an older version of this one")
  modules = path[1:-1] if path[0] in _CONTAINERS else path[:-1]
  prefix = re.sub(r"_(\d+)", r".\1", ".".join(modules))
  return f"{prefix}.{_LEAF_TO_TORCH[(collection, path[-1])]}"


def to_torch_layout(array: np.ndarray) -> np.ndarray:
  if array.ndim == 4:
    return np.transpose(array, (3, 2, 0, 1))  # HWIO -> OIHW
  return array.T if array.ndim == 2 else array  # Dense (in, out) -> Linear (out, in)


def to_flax_layout(array: np.ndarray) -> np.ndarray:
  if array.ndim == 4:
    return np.transpose(array, (2, 3, 1, 0))  # OIHW -> HWIO
  return array.T if array.ndim == 2 else array


def read_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Reads a state_dict from a mapping, ``.pth``/``.pt`` (needs torch), ``.safetensors`` or ``.npz``, on a local
  disk or remote storage (copied to a local temporary file first: those readers take local files only)."""
  if isinstance(source, Mapping):
    state = dict(source)
  else:
    if not files.path(source).exists():
      raise FileNotFoundError(f"no checkpoint at {os.fspath(source)}")
    with files.local_file(source) as path:
      state = _read_file(path, os.fspath(source))
  for wrapper_key in ("state_dict", "model", "model_state"):  # training checkpoints wrap the weights
    if wrapper_key in state and isinstance(state[wrapper_key], Mapping):
      state = dict(state[wrapper_key])
  return {k: _to_numpy(v) for k, v in state.items()}


def _read_file(path: str, name: str) -> dict[str, Any]:
  """The tensors of the local file ``path`` (``name``: where the user's file is, for messages)."""
  suffix = os.path.splitext(path)[1]
  if suffix in (".pth", ".pt", ".bin"):
    try:
      import torch  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError(f"reading {name} needs PyTorch: pip install 'hrnet_jax[torch]'") from e
    return torch.load(path, map_location="cpu", weights_only=True)
  if suffix == ".safetensors":
    from safetensors import SafetensorError  # pylint: disable=import-outside-toplevel
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    try:
      return load_file(path)
    except SafetensorError as error:
      raise ValueError(f"{name} is not a readable safetensors file ({error}): damaged or cut short?") from None
  if suffix == ".npz":
    with np.load(path) as archive:
      return {k: archive[k] for k in archive.files}
  raise ValueError(f"unknown checkpoint format {suffix!r} for {name}; expected .pth, .pt, .safetensors or .npz")


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor; bfloat16 has no NumPy equivalent, so go through float32
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def _normalize_keys(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
  """Strips wrapper prefixes and reads OpenMMLab's layout (``openmmlab_layout``); returns the state and the keys
  it ignored."""
  for prefix in _WRAPPER_PREFIXES:
    if state and all(k.startswith(prefix) or _IGNORED_KEY.search(k) for k in state):
      state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
  state, ignored = openmmlab_layout(state)
  ignored += sorted(k for k in state if _IGNORED_KEY.search(k))
  return {k: v for k, v in state.items() if not _IGNORED_KEY.search(k)}, ignored


def openmmlab_layout(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
  """An OpenMMLab checkpoint (mmpose, mmseg, mmdet: the HRNet under ``backbone.``, official names below it, beside
  ``keypoint_head.``, ``decode_head.``, ``neck.``, ...) as the official backbone's keys, plus MMDetection's HRFPN
  neck and FCOS head under this codebase's names (``_MMDETECTION_KEYS``); its other modules' keys, which no head
  here is named as, are returned apart (ignored: load with ``reinit_head``). Other checkpoints pass unchanged."""
  if not any(k.startswith(_OPENMMLAB_BACKBONE) for k in state):
    return state, []
  renamed, ignored = {}, []
  for key, value in state.items():
    if key.startswith(_OPENMMLAB_BACKBONE):
      renamed[key[len(_OPENMMLAB_BACKBONE):]] = value
      continue
    ours = next((pattern.sub(name, key) for pattern, name in _MMDETECTION_KEYS if pattern.match(key)), None)
    if ours is None:
      ignored.append(key)
    else:
      renamed[ours] = value
  return renamed, sorted(ignored)


def _apply_aliases(state: Mapping[str, Any], expected: Mapping[str, Any]) -> Mapping[str, Any]:
  """Renames a head the model knows under another name (``_KEY_ALIASES``), when the model has no head by the
  checkpoint's name and has one by the other."""
  for alias, name in _KEY_ALIASES.items():
    if (any(k.startswith(alias) for k in state) and any(k.startswith(name) for k in expected)
        and not any(k.startswith(alias) for k in expected)):
      state = {name + k[len(alias):] if k.startswith(alias) else k: v for k, v in state.items()}
  return state


def model_variable_shapes(model: nn.Module, input_shape: tuple[int, ...] = (1, 64, 64, 3)) -> dict[str, Any]:
  """The model's variables as ShapeDtypeStructs (in its own layout), without allocating or computing anything."""
  return flax.core.unfreeze(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(input_shape, jnp.float32)))


def expected_torch_shapes(model: nn.Module) -> dict[str, tuple[tuple[str, tuple[str, ...]], tuple[int, ...]]]:
  """PyTorch key -> ((collection, flax path one entry per layer), PyTorch shape) for every variable of ``model``."""
  return _torch_shapes(model_variable_shapes(model))


def torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
  """The PyTorch shape of a Flax variable's shape (conv HWIO -> OIHW, linear (in, out) -> (out, in))."""
  if len(flax_shape) == 4:
    return tuple(flax_shape[i] for i in (3, 2, 0, 1))
  return tuple(flax_shape[::-1]) if len(flax_shape) == 2 else tuple(flax_shape)


def _torch_shapes(variable_shapes: Mapping[str, Any]) -> dict[str, tuple[tuple[str, tuple[str, ...]], tuple[int, ...]]]:
  expected = {}
  for collection, tree in variable_shapes.items():
    for path, leaf in flax.traverse_util.flatten_dict(scan_layout.unstack(tree)).items():
      expected[torch_key(collection, path)] = ((collection, path), torch_shape(leaf.shape))
  return expected


def convert_state_dict(model: nn.Module, source: str | os.PathLike | Mapping[str, Any], *, strict: bool = True,
                       reinit_head: bool = False, rng: jax.Array | None = None,
                       fresh: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], LoadReport]:
  """Converts an official/timm PyTorch state_dict into Flax variables for ``model``.

  strict: every model variable must come from the checkpoint with its exact shape, and every checkpoint
    tensor must be used; all differences are reported in one ``WeightMismatchError``.
  reinit_head: keep the backbone from the checkpoint and take the head's variables that are missing or differ in
    shape (e.g. a new class count) from ``fresh`` (variables of ``model``, either layout), or from a fresh
    initialisation with ``rng``; the report says which.
  """
  layout = model_variable_shapes(model)  # traced once: the keys to expect and the layout to return
  state, ignored = _normalize_keys(read_state_dict(source))
  return match_variables(model, layout, state, flax_layout=False, strict=strict, reinit_head=reinit_head, rng=rng,
                         fresh=fresh, ignored=ignored)


def flax_state(variables: Mapping[str, Any]) -> dict[str, Any]:
  """Flax ``variables`` (either layout) by their official PyTorch keys, arrays left in the Flax layout: what
  ``match_variables(..., flax_layout=True)`` reads (no transposes, no dtype change)."""
  return {torch_key(collection, path): leaf for collection in ("params", "batch_stats")
          for path, leaf in flax.traverse_util.flatten_dict(
              scan_layout.unstack(flax.core.unfreeze(variables.get(collection, {})))).items()}


def match_variables(model: nn.Module, layout: Mapping[str, Any], state: Mapping[str, Any], *, flax_layout: bool,
                    strict: bool = True, reinit_head: bool = False, rng: jax.Array | None = None,
                    fresh: Mapping[str, Any] | None = None,
                    ignored: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], LoadReport]:
  """``model``'s variables (in its ``layout``) from ``state``, tensors by official PyTorch key, in the PyTorch
  layout or (``flax_layout``) already in Flax's; see ``convert_state_dict`` for the other arguments. Matching and
  every message are in PyTorch keys and shapes, whichever layout the arrays are in."""
  expected = _torch_shapes(layout)
  state = _apply_aliases(state, expected)
  shape_of = (lambda k: torch_shape(np.shape(state[k]))) if flax_layout else (lambda k: tuple(np.shape(state[k])))
  missing = sorted(k for k in expected if k not in state)
  unexpected = sorted(k for k in state if k not in expected)
  mismatched = sorted(k for k in expected if k in state and shape_of(k) != expected[k][1])

  ignored = list(ignored)
  reinitialized = []
  if reinit_head:
    in_head = lambda k: expected[k][0][1][0] == "head"
    reinitialized = sorted(k for k in missing + mismatched if in_head(k))
    missing = [k for k in missing if not in_head(k)]
    mismatched = [k for k in mismatched if not in_head(k)]
    ignored += [k for k in unexpected if _belongs_to_a_head(k)]
    unexpected = [k for k in unexpected if not _belongs_to_a_head(k)]
  if strict and (missing or unexpected or mismatched):
    shapes = {k: _Shape(shape_of(k)) for k in state}
    raise WeightMismatchError(_mismatch_message(shapes, missing, unexpected, mismatched, expected, model))

  if fresh is None and (reinitialized or (not strict and missing)):
    # Variables do not depend on the input size; the smallest size every option accepts keeps this cheap.
    fresh = compilation.run_once(model.init, rng if rng is not None else jax.random.key(0),
                                 jnp.zeros((1, 32, 32, 3), jnp.float32))
  fresh = {c: scan_layout.unstack(v) for c, v in flax.core.unfreeze(fresh).items()} if fresh is not None else None
  variables: dict[str, dict] = {}
  loaded = []
  param_dtype = model_param_dtype(model)
  for key, ((collection, path), shape) in expected.items():
    if key in state and shape_of(key) == shape:
      value = state[key] if flax_layout else to_flax_layout(state[key])
      value = jnp.asarray(value, dtype=jnp.float32 if collection == "batch_stats" else param_dtype)
      loaded.append(key)
    else:
      value = jnp.asarray(_get_path(fresh[collection], path))
    variables.setdefault(collection, {})[path] = value
  report = LoadReport(loaded=loaded, reinitialized=reinitialized, ignored=ignored + unexpected)
  return {c: scan_layout.stack(flax.traverse_util.unflatten_dict(v), layout[c]) for c, v in variables.items()}, report


def load_pytorch_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Any], *, strict: bool = True,
                         reinit_head: bool = False, rng: jax.Array | None = None) -> dict[str, Any]:
  """Flax variables (``params``, ``batch_stats``) for ``model`` from an official or timm PyTorch checkpoint.

  ``source`` is a path (``.pth``/``.pt`` via torch, ``.safetensors``, ``.npz``) or a mapping name -> array.
  See ``convert_state_dict`` for ``strict`` and ``reinit_head``; what was loaded is logged.
  """
  variables, report = convert_state_dict(model, source, strict=strict, reinit_head=reinit_head, rng=rng)
  logging.info("load_pytorch_weights: %s", report.summary())
  return variables


def to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The PyTorch state_dict (official key names and layouts) of Flax ``variables`` (either layout)."""
  state = {}
  for collection in ("params", "batch_stats"):
    tree = scan_layout.unstack(flax.core.unfreeze(variables.get(collection, {})))
    for path, leaf in flax.traverse_util.flatten_dict(tree).items():
      state[torch_key(collection, path)] = to_torch_layout(np.asarray(leaf, dtype=np.float32))
  return state


def model_param_dtype(model: nn.Module) -> Any:
  backbone = getattr(model, "backbone", model)
  return getattr(backbone, "param_dtype", jnp.float32)


def _get_path(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
  for part in path:
    tree = tree[part]
  return tree


def _belongs_to_a_head(key: str) -> bool:
  return key.split(".")[0] in checkpoint_inspect.HEAD_PREFIXES


def _mismatch_message(state, missing, unexpected, mismatched, expected, model) -> str:
  def listing(title, keys, show):
    shown = "\n".join(f"    {show(k)}" for k in keys[:20])
    more = f"\n    ... and {len(keys) - 20} more" if len(keys) > 20 else ""
    return f"  {len(keys)} {title}:\n{shown}{more}" if keys else ""

  parts = [
      listing("missing from the checkpoint", missing, lambda k: f"{k} {list(expected[k][1])}"),
      listing("unexpected in the checkpoint", unexpected, lambda k: f"{k} {list(state[k].shape)}"),
      listing("with different shapes", mismatched,
              lambda k: f"{k}: checkpoint {list(state[k].shape)}, model {list(expected[k][1])}"),
  ]
  found = checkpoint_inspect.describe(state)
  wanted = checkpoint_inspect.describe({k: _Shape(shape) for k, (_, shape) in expected.items()})
  return (f"checkpoint does not match the model:\n  the checkpoint looks like: {found}\n  the model is: {wanted}\n"
          + "\n".join(p for p in parts if p) +
          "\n  (reinit_head=True keeps the backbone and re-initialises a head of another size or task)")


@dataclasses.dataclass(frozen=True)
class _Shape:
  shape: tuple[int, ...]
