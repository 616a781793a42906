"""Orbax checkpoints: the latest few for resuming, and the best by an eval metric, kept apart.

Orbax's ``max_to_keep`` with a ``best_fn`` keeps the best *k* and may delete the latest step, which breaks resume.
So there are two managers: ``DIR/checkpoints`` keeps the last ``keep`` steps, ``DIR/best`` keeps one, written only
when the metric improves. Checkpoints are written asynchronously; restoring takes the target's shardings, so a
checkpoint written on 8 devices restores on 1 and the reverse.

A checkpoint is trusted only once it restores: resuming takes the newest step that does, and moves each newer,
damaged one aside (``DIR/damaged_checkpoints``), named in the log; when none restores the run stops and says so;
one written with other model options is an error, never mistaken for damage. A save that fails stops the run
(``poll`` after every step, which waits for nothing) with the step, the error and the last good checkpoint, and its
temporary directory is removed.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from hrnet_jax import files


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


class CheckpointSaveError(OSError):
  """A checkpoint could not be written (disk full, permission, a remote store's error)."""


class ModelMismatchError(ValueError):
  """A checkpoint holds another model's variables (other options, another variant or task)."""

  def __init__(self, step: int, directory: str, differences: list[str]):
    self.step, self.directory, self.differences = step, directory, differences
    shown = "; ".join(differences[:3]) + (f"; ... ({len(differences)} in all)" if len(differences) > 3 else "")
    super().__init__(f"the checkpoint at step {step} in {directory} holds another model ({shown})")


def _first_line(error: BaseException) -> str:
  """What went wrong, briefly: the operating system's reason where TensorStore gives one (its messages run long)."""
  text = str(error).strip()
  system = re.search(r"os_error_code='(\d+)'", text)
  if system:
    return f"{os.strerror(int(system.group(1)))}, os error {system.group(1)}"
  lines = text.splitlines()
  text = lines[0] if lines else type(error).__name__
  return text[:200] + (" ..." if len(text) > 200 else "")


def _damage(error: BaseException) -> BaseException | None:
  """The storage error behind ``error`` (TensorStore's DATA_LOSS, OUT_OF_RANGE, NOT_FOUND, ... are ``ValueError``;
  the file system's ``OSError``), which Orbax may wrap in a plain ``Exception``; None for any other error."""
  while error is not None:
    if isinstance(error, (ValueError, OSError)):
      return error
    error = error.__cause__ or error.__context__
  return None


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _saved_shapes(item_dir: files.PathLike) -> dict[str, tuple[int, ...]] | None:
  """Every saved array's path and shape, from the checkpoint's tree metadata; None when it cannot be read."""
  try:
    metadata = ocp.StandardCheckpointer().metadata(item_dir).item_metadata
    leaves = jax.tree_util.tree_flatten_with_path(dict(metadata))[0]
  except Exception:  # pylint: disable=broad-except  (missing or unreadable: a damaged checkpoint)
    return None
  return {_path_name(path): tuple(leaf.shape) for path, leaf in leaves}


def _differences(saved: dict[str, tuple[int, ...]], abstract_state: Any) -> list[str]:
  """How the saved arrays differ from the ones ``abstract_state`` expects: missing, unexpected, other shapes."""
  wanted = {_path_name(path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
  differences = [f"{name} is missing" for name in wanted if name not in saved]
  differences += [f"{name} is not in this model" for name in saved if name not in wanted]
  differences += [f"{name} has shape {list(saved[name])}, this model {list(wanted[name])}"
                  for name in wanted if name in saved and saved[name] != wanted[name]]
  return differences


class Checkpointer:
  """Latest-k and best-by-metric checkpoints of a train state under ``workdir``."""

  def __init__(self, workdir: str, *, keep: int = 2, best_metric: str | None = None, best_mode: str = "max",
               async_save: bool = True):
    if best_mode not in ("max", "min"):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    self.workdir = files.path(workdir)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
    self.latest = ocp.CheckpointManager(self.workdir / "checkpoints", options=options)
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.best = None
    if best_metric:
      best_options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=async_save)
      self.best = ocp.CheckpointManager(self.workdir / "best", options=best_options)
    self._best_record_path = self.workdir / "best" / "best.json"

    self._saving: int | None = None  # the step whose asynchronous save has not been checked yet
    self._failed = False

  def last_good(self) -> str:
    """Where the newest saved checkpoint is, in words (for messages)."""
    step = self.latest.latest_step()
    return f"step {step} in {self.latest.directory}" if step is not None else "none (no checkpoint was written yet)"

  def save(self, step: int, state: Any) -> bool:
    """Saves ``state`` at ``step`` (asynchronously) unless that step is already saved."""
    if step in self.latest.all_steps():
      return False
    self.wait()  # Orbax would wait for the previous save too: a failure is then named by its own step
    self._saving = step
    try:
      return self.latest.save(step, args=ocp.args.StandardSave(host_copy(state)), force=True)
    except Exception as error:  # pylint: disable=broad-except  (a write that fails at once)
      self._save_failed(error)

  def poll(self) -> None:
    """Raises ``CheckpointSaveError`` if the last asynchronous save has failed; waits for nothing."""
    if self._saving is None or self.latest.is_saving_in_progress():
      return
    try:
      self.latest.wait_until_finished()  # returns at once: raises what the save raised
    except Exception as error:  # pylint: disable=broad-except
      self._save_failed(error)
    self._saving = None

  def _save_failed(self, error: BaseException):
    step, self._saving, self._failed = self._saving, None, True
    self._remove_temporary()
    self.latest.reload()
    raise CheckpointSaveError(f"saving the checkpoint of step {step} failed ({_first_line(error)}); the last good "
                              f"checkpoint is {self.last_good()}") from error

  def _remove_temporary(self, settle: bool = False) -> None:
    """Removes what failed saves left (Orbax writes a step into ``<step>.orbax-checkpoint-tmp*`` first). With
    ``settle``, until nothing reappears for two rounds (0.4 s; 5 s at most): the writes of a failed save's other
    arrays end on their own after the first one fails. Process 0's work: the folder is shared by every process."""
    if jax.process_index() != 0:
      return
    empty_rounds = 0
    for _ in range(25 if settle else 1):
      found = list(files.path(self.latest.directory).glob("*.orbax-checkpoint-tmp*"))
      for temporary in found:
        try:
          temporary.rmtree()
        except OSError:  # removed meanwhile, or by the failed save's last writes: the next round sees
          pass
      empty_rounds = 0 if found else empty_rounds + 1
      if not settle or empty_rounds == 2:
        return
      time.sleep(0.2)

  def restore_latest(self, abstract_state: Any) -> tuple[Any, int]:
    """(state, step) from the newest checkpoint that restores onto ``abstract_state`` (a tree of
    ``jax.ShapeDtypeStruct`` with the target's shardings); (None, 0) when there is none.

    Damage is what TensorStore and the file system report (``_damage``): each damaged checkpoint
    newer than a good one is moved aside and named in the log. When none restores, nothing is moved and the error
    names them all: starting again from step 0 is the user's decision, never a silent one. A checkpoint written for
    another model raises ``ModelMismatchError``; any other error is raised as it is.
    """
    damaged = []
    for step in sorted(self.latest.all_steps(), reverse=True):
      saved = _saved_shapes(files.path(self.latest.directory) / str(step) / "default")
      if saved is None:
        damaged.append((step, "its tree metadata (_METADATA) cannot be read"))
        continue
      differences = _differences(saved, abstract_state)
      if differences:
        raise ModelMismatchError(step, str(self.latest.directory), differences)
      try:
        state = self.latest.restore(step, args=ocp.args.StandardRestore(abstract_state))
      except Exception as error:  # pylint: disable=broad-except
        damage = _damage(error)
        if damage is None:
          raise
        damaged.append((step, _first_line(damage)))
        continue
      for newer, reason in damaged:
        self._move_aside(newer, reason)
      return state, step
    if damaged:
      reasons = "; ".join(f"step {step}: {reason}" for step, reason in damaged)
      raise ValueError(f"no checkpoint in {self.latest.directory} can be restored ({reasons}); to start again from "
                       "step 0, move that folder away")
    return None, 0

  def _move_aside(self, step: int, reason: str) -> None:
    source = files.path(self.latest.directory) / str(step)
    if jax.process_index() == 0:
      target = self.workdir / "damaged_checkpoints" / str(step)
      suffix = 1
      while target.exists():
        target, suffix = self.workdir / "damaged_checkpoints" / f"{step}.{suffix}", suffix + 1
      target.parent.mkdir(parents=True, exist_ok=True)
      files.move_tree(source, target)
      logging.warning("the checkpoint of step %d is damaged (%s): moved to %s", step, reason, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices(f"moved aside checkpoint {step}")
    self.latest.reload()

  def best_record(self) -> dict[str, Any] | None:
    if not self._best_record_path.exists():
      return None
    return files.read_json(self._best_record_path)

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
    try:
      self.best.save(step, args=ocp.args.StandardSave(host_copy(state)), force=True)
      self.best.wait_until_finished()
    except Exception as error:  # pylint: disable=broad-except
      raise CheckpointSaveError(f"saving the best checkpoint (step {step}) failed ({_first_line(error)}); the last "
                                f"good checkpoint is {self.last_good()}") from error
    if jax.process_index() == 0:
      files.write_json(self._best_record_path, {"step": step, "metric": self.best_metric, "value": value})
    logging.info("new best %s = %.4f at step %d", self.best_metric, value, step)
    return True

  def wait(self) -> None:
    """Blocks until every save has finished; raises ``CheckpointSaveError`` if one failed."""
    try:
      self.latest.wait_until_finished()
    except Exception as error:  # pylint: disable=broad-except
      self._save_failed(error)
    self._saving = None
    if self.best is not None:
      self.best.wait_until_finished()

  def close(self) -> None:
    if not self._failed:
      self.wait()
    try:
      self.latest.close()
    except Exception:  # pylint: disable=broad-except  (the failed save, reported already)
      if not self._failed:
        raise
    if self._failed:  # again, as the failed save's last writes end
      self._remove_temporary(settle=True)
    if self.best is not None:
      self.best.close()


def saved_steps(folder: files.PathLike) -> list[int]:
  """The steps saved in ``folder`` (a ``checkpoints`` or ``best`` dir), newest first."""
  folder = files.path(folder)
  names = [entry.name for entry in folder.iterdir()] if folder.is_dir() else []
  return sorted((int(name) for name in names if name.isdigit()), reverse=True)


def item_dirs(path: files.PathLike) -> list[epath.Path]:
  """The directories holding a saved state, newest first, given a workdir, a ``checkpoints`` dir (every step) or
  a step dir (that one)."""
  path = files.path(path)
  if (path / "checkpoints").is_dir():
    path = path / "checkpoints"
  folders = [path / str(step) for step in saved_steps(path)] or [path]
  items = [folder / "default" if (folder / "default").is_dir() else folder for folder in folders]
  items = [item for item in items if item.is_dir()]
  if not items:
    raise FileNotFoundError(2, "no Orbax checkpoint (a workdir, its best/, or a step dir)", os.fspath(path))
  return items


def read_variables(path: str, use_ema: bool = False) -> dict[str, Any]:
  """``params`` (the EMA copy when ``use_ema`` and the checkpoint has one) and ``batch_stats`` of an Orbax
  checkpoint written by this codebase, as host arrays: of the newest step that can be read, when ``path`` holds
  several (a damaged newer one is named in the log)."""
  items = item_dirs(path)
  for index, item in enumerate(items):
    try:
      state = ocp.StandardCheckpointer().restore(item)
      break
    except Exception as error:  # pylint: disable=broad-except  (TensorStore: truncated or missing files)
      if index == len(items) - 1:
        raise ValueError(f"the checkpoint at {item} cannot be read ({_first_line(error)}): it is damaged") from None
      logging.warning("the checkpoint at %s cannot be read (%s); using the next newest", item, _first_line(error))
  missing = [k for k in ("params", "batch_stats") if k not in state]
  if missing:
    raise ValueError(f"{path} is not an hrnet_jax train state: it has no {', '.join(missing)}")
  params = state["ema_params"] if use_ema and state.get("ema_params") else state["params"]
  return {"params": params, "batch_stats": state["batch_stats"]}
