"""Orbax checkpoints: the latest few for resuming, and the best by an eval metric, kept apart.

Orbax's ``max_to_keep`` with a ``best_fn`` keeps the best *k* and may delete the latest step, which breaks resume.
So there are two managers: ``DIR/checkpoints`` keeps the last ``keep`` steps, ``DIR/best`` keeps one, written only
when the metric improves. Checkpoints are written asynchronously; restoring takes the target's shardings, so a
checkpoint written on 8 devices restores on 1 and the reverse.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


def host_copy(tree: Any) -> Any:
  """Replicated arrays as host NumPy arrays (this process's replica), other leaves unchanged.

  Saving jax.Arrays makes Orbax compile a device copy for every distinct array shape the first time: 14 s for
  the tiny model's 551 arrays on CPU, once per process (measured; NumPy: 0.4 s). The state is replicated, so
  the local replica is the whole array; restoring still places it on the target's shardings.
  """
  def to_host(x):
    if isinstance(x, jax.Array) and x.sharding.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return x
  return jax.tree.map(to_host, tree)


class Checkpointer:
  """Latest-k and best-by-metric checkpoints of a train state under ``workdir``."""

  def __init__(self, workdir: str, *, keep: int = 2, best_metric: str | None = None, best_mode: str = "max",
               async_save: bool = True):
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    self.workdir = os.path.abspath(workdir)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
    self.latest = ocp.CheckpointManager(os.path.join(self.workdir, "checkpoints"), options=options)
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.best = None
    if best_metric:
      best_options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=async_save)
      self.best = ocp.CheckpointManager(os.path.join(self.workdir, "best"), options=best_options)
    self._best_record_path = os.path.join(self.workdir, "best", "best.json")

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def save(self, step: int, state: Any) -> bool:
    """Saves ``state`` at ``step`` (asynchronously) unless that step is already saved."""
    if step in self.latest.all_steps():
      return False
    return self.latest.save(step, args=ocp.args.StandardSave(host_copy(state)), force=True)

  def restore(self, abstract_state: Any, step: int | None = None) -> Any:
    """Restores onto the shardings of ``abstract_state`` (a tree of ``jax.ShapeDtypeStruct``)."""
    step = self.latest.latest_step() if step is None else step
    try:
      return self.latest.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except ValueError as error:  # Orbax lists the whole tree difference: its first 300 characters name the problem
      orbax = str(error).splitlines()[0]
      raise ValueError(
          f"the checkpoint at step {step} in {self.latest.directory} does not fit this run's model (was it written "
          "with other model options, such as model.scan_repeats or model.overrides?). Resume with the options it "
          "was written with, or start another --workdir with --config.init_from=<this workdir>, which loads what "
          f"fits into either layout. Orbax: {orbax[:300]}{' ...' if len(orbax) > 300 else ''}") from error

  def best_record(self) -> dict[str, Any] | None:
    if not os.path.exists(self._best_record_path):
      return None
    with open(self._best_record_path) as f:
      return json.load(f)

  def maybe_save_best(self, step: int, state: Any, metrics: dict[str, float]) -> bool:
    """Saves ``state`` as the best checkpoint if ``metrics[best_metric]`` beats the best so far."""
    if self.best is None:
      return False
    if self.best_metric not in metrics:
      raise KeyError(f"best_metric {self.best_metric!r} is not among the eval metrics {sorted(metrics)}")
    value = float(metrics[self.best_metric])
    record = self.best_record()
    if record is not None:
      better = value > record["value"] if self.best_mode == "max" else value < record["value"]
      if not better or step == record["step"]:
        return False
    self.best.save(step, args=ocp.args.StandardSave(host_copy(state)), force=True)
    self.best.wait_until_finished()
    if jax.process_index() == 0:
      with open(self._best_record_path, "w") as f:
        json.dump({"step": step, "metric": self.best_metric, "value": value}, f)
    logging.info("new best %s = %.4f at step %d", self.best_metric, value, step)
    return True

  def wait(self) -> None:
    self.latest.wait_until_finished()
    if self.best is not None:
      self.best.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self.latest.close()
    if self.best is not None:
      self.best.close()


def find_item_dir(path: str) -> str:
  """The directory holding a saved state, given a workdir, a ``checkpoints`` dir or a step dir."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    path = os.path.join(path, "checkpoints")
  steps = [int(d) for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []
  if steps:
    path = os.path.join(path, str(max(steps)))
  if os.path.isdir(os.path.join(path, "default")):
    path = os.path.join(path, "default")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no Orbax checkpoint at {path}")
  return path


def read_variables(path: str, use_ema: bool = False) -> dict[str, Any]:
  """``params`` (the EMA copy when ``use_ema`` and the checkpoint has one) and ``batch_stats`` of an Orbax
  checkpoint written by this codebase, as host arrays."""
  state = ocp.StandardCheckpointer().restore(find_item_dir(path))
  missing = [k for k in ("params", "batch_stats") if k not in state]
  if missing:
    raise ValueError(f"{path} is not an hrnet_jax train state: it has no {', '.join(missing)}")
  params = state["ema_params"] if use_ema and state.get("ema_params") else state["params"]
  return {"params": params, "batch_stats": state["batch_stats"]}
