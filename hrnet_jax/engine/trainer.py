"""``train_and_evaluate(config, workdir)``: the training loop of every task, on any number of devices and hosts.

Rerunning with the same workdir resumes from the latest checkpoint, and the data stream resumes at that step,
so an interrupted run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from PIL import Image
from absl import logging
from clu import parameter_overview
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from hrnet_jax import compilation, files, tasks
from hrnet_jax.engine import checkpointing, config_lib, metric_writer, optim, sharding, weights
from hrnet_jax.tasks.base import Task
from hrnet_jax.tasks.spec import check_batch


# Written into the workdir when a run has reached its last step: its final eval metrics.
FINAL_METRICS = "final_metrics.json"


# How many steps the host may dispatch before the device has finished the oldest of them.
STEPS_AHEAD = 8

# The overview (per-tensor shape, mean, std) of the weights a run starts from, and of those init_from loads.
PARAMETERS = "parameters.txt"


class TrainingDivergedError(FloatingPointError):
  """The loss became NaN or Inf."""


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any  # {} when EMA is off


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """Total optimizer steps: ``config.total_steps``, else ``config.num_epochs`` epochs."""
  return config.total_steps or int(round(config.num_epochs * steps_per_epoch))


class _Preemption:
  """Decides, at each step boundary, whether to stop with a checkpoint because the job is being preempted.

  One process: SIGTERM sets a flag the loop polls. Several processes: JAX's preemption service (started by
  ``jax.distributed.initialize``) catches the SIGTERM of any process and makes every process agree on the step to
  stop at, over the coordination service: no device collective and no wait for the device at each step.
  """

  def __init__(self):
    self.requested = False
    self._previous = None
    self._several = jax.process_count() > 1
    if not self._several and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: checkpointing at the next step boundary")
    self.requested = True

  def reached(self, step: int) -> bool:
    """True on every process at the same step once any process was asked to stop."""
    if self._several:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class _Interruption:
  """Ctrl-C as Python raises it (``KeyboardInterrupt``), but noted: an interruption that lands inside a library's C
  code can surface as that library's own error (NumPy's "setting an array element with a sequence", seen while it
  converted a device array), which the loop then still reports as the interruption; one raised inside a callback
  whose exceptions Python ignores (JAX's garbage-collection callback, seen in a clean-clone run) is swallowed, so
  the loop stops at its next step instead, and Python's "Exception ignored" report of it is left out."""

  def __init__(self):
    self.received = False
    self._previous = None
    self._previous_unraisable_hook = sys.unraisablehook
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGINT, self._handle)
      sys.unraisablehook = self._unraisable

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True
    raise KeyboardInterrupt

  def _unraisable(self, unraisable) -> None:
    if not (self.received and issubclass(unraisable.exc_type, KeyboardInterrupt)):
      self._previous_unraisable_hook(unraisable)

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)
      sys.unraisablehook = self._previous_unraisable_hook


class _Profiler:
  """A ``jax.profiler`` trace of ``count`` steps from step ``first`` + 1 (after the compilation and a warm-up step)
  into ``folder`` (TensorBoard's Profile tab, or xprof, read it there); nothing when ``count`` is 0."""

  def __init__(self, folder: str, first: int, count: int):
    self.folder, self.first, self.last = folder, first, first + count
    self.tracing = False

  def before(self, step: int) -> None:
    if self.last > self.first and step == self.first:
      jax.profiler.start_trace(self.folder)
      self.tracing = True

  def after(self, step: int, state: Any) -> None:
    if self.tracing and step == self.last:
      jax.block_until_ready(state)  # the trace ends once the device has run the traced steps
      self.close()
      logging.info("profile of steps %d-%d written to %s", self.first + 1, self.last, self.folder)

  def close(self) -> None:
    if self.tracing:
      jax.profiler.stop_trace()
      self.tracing = False


def _ema_copy(params: Any, ema_decay: float) -> Any:
  """The EMA's starting point: a float32 copy of the parameters, never an alias (the state is donated to the
  train step), or {} when EMA is off."""
  return jax.tree.map(lambda p: jnp.array(p, jnp.float32, copy=True), params) if ema_decay else {}


def init_train_state(model, tx: optax.GradientTransformation, image_shape: tuple[int, ...], rng: jax.Array,
                     ema_decay: float = 0.0) -> TrainState:
  """A fresh state: initialised variables, optimizer state and (when ``ema_decay``) a float32 EMA copy."""
  variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32))
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                    opt_state=tx.init(params), ema_params=_ema_copy(params, ema_decay))


def make_train_step(model, task: Task, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """The jitted update: forward/backward (optionally over micro-batches), optimizer, BN statistics, EMA."""
  accumulation = config.accumulation_steps

  def local_loss_and_grads(params, batch_stats, batch, rng):
    def loss_fn(p):
      # Dropout (the OCR head's) and a two-stage detector's sampling of its training boxes draw from the step.
      outputs, updates = model.apply({"params": p, "batch_stats": batch_stats}, batch["image"], train=True,
                                     **task.model_inputs(batch, train=True), mutable=["batch_stats"],
                                     rngs={"dropout": rng, "sampling": jax.random.fold_in(rng, 1)})
      loss, aux = task.loss(outputs, batch)
      return loss, (aux, updates["batch_stats"])

    (loss, (aux, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    # Running statistics keep their stored dtype (float32) whatever precision the step computed in.
    new_stats = jax.tree.map(lambda new, old: new.astype(old.dtype), new_stats, batch_stats)
    return loss, aux, new_stats, grads

  if config.per_device_bn:
    # Each device normalises with its own batch statistics (PyTorch DDP without SyncBN); gradients, losses and
    # running statistics are then averaged over devices.
    def per_device(params, batch_stats, batch, rng):
      rng = jax.random.fold_in(rng, jax.lax.axis_index(sharding.DATA_AXIS))  # each device its own dropout
      results = local_loss_and_grads(params, batch_stats, batch, rng)
      return jax.lax.pmean(results, sharding.DATA_AXIS)

    loss_and_grads = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(sharding.DATA_AXIS), P()),
                                   out_specs=P(), check_vma=False)
  else:
    loss_and_grads = local_loss_and_grads

  def accumulated(params, batch_stats, batch, rng):
    if accumulation == 1:
      return loss_and_grads(params, batch_stats, batch, rng)
    # Micro-batch m takes every accumulation-th example, which keeps each micro-batch spread over all devices.
    micro = jax.tree.map(lambda x: jnp.moveaxis(x.reshape(-1, accumulation, *x.shape[1:]), 1, 0), batch)

    def body(carry, micro_batch_and_rng):
      stats, grad_sum = carry
      loss, aux, stats, grads = loss_and_grads(params, stats, *micro_batch_and_rng)
      return (stats, jax.tree.map(jnp.add, grad_sum, grads)), (loss, aux)

    zeros = jax.tree.map(jnp.zeros_like, params)
    (stats, grad_sum), (losses, auxes) = jax.lax.scan(body, (batch_stats, zeros),
                                                      (micro, jax.random.split(rng, accumulation)))
    grads = jax.tree.map(lambda g: g / accumulation, grad_sum)
    return jnp.mean(losses), jax.tree.map(jnp.mean, auxes), stats, grads

  def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    # Dropout (the OCR head's) draws from the seed and the step: a resumed run draws what it would have.
    rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
    loss, aux, batch_stats, grads = accumulated(state.params, state.batch_stats, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = optim.update_ema(state.ema_params, params, config.ema_decay) if config.ema_decay else state.ema_params
    metrics = {"loss": loss, "learning_rate": schedule(state.step), "grad_norm": optax.tree.norm(grads),
               "undecodable": jnp.sum(1 - batch["mask"]),
               # A finite loss can still come with an update that overflows the parameters: check those too.
               "params_finite": jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)])),
               **aux}
    new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                           ema_params=ema)
    return new_state, metrics

  replicated = sharding.replicated(mesh)
  return jax.jit(train_step, in_shardings=(replicated, sharding.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=0,
                 compiler_options=compilation.step_compiler_options(mesh))


def make_eval_step(model, task: Task, mesh: jax.sharding.Mesh, preview_count: int = 0):
  """(variables, batch) -> (masked sums, per-example arrays of the task with the batch's ``mask``, the task's
  ``preview`` of the batch's first ``preview_count`` examples), replicated."""
  def eval_step(variables, batch):
    outputs = task.predict(task.inference(model, variables, batch), batch)
    examples = task.eval_examples(outputs, batch)
    sums = {**task.eval_sums(outputs, batch), "undecodable": jnp.sum(batch["undecodable"])}
    previews = {}
    if preview_count:  # read only from the first batch: the device sends the others nowhere
      previews = jax.tree.map(lambda x: x[:preview_count], task.preview(outputs, batch))
    return sums, ({**examples, "mask": batch["mask"]} if examples else {}), previews

  replicated = sharding.replicated(mesh)
  return jax.jit(eval_step, in_shardings=(replicated, sharding.batch_sharding(mesh)), out_shardings=replicated,
                 compiler_options=compilation.step_compiler_options(mesh))


def evaluate(eval_step, variables: dict[str, Any], make_eval, mesh, task: Task, check_recipe: bool = True,
             total_examples: int | None = None, previews: list[Image.Image] | None = None) -> dict[str, float]:
  """One exact pass over the eval set: masked sums accumulated on the host in 64 bits, and the task's
  per-example arrays of the valid examples given to its collector batch by batch, in the pipeline's order (the
  split's, or each orientation's in turn). The first batch is checked against what the config's recipe declares
  (``check_recipe``; off for batches made by hand). With ``total_examples``, progress lines with an ETA;
  ``previews`` (a list) receives the pictures of the eval step's previews of the first batch."""
  totals: dict[str, np.ndarray] = {}
  collector = task.example_collector()
  progress = metric_writer.EvalProgress(total_examples, task.config.eval_batch_size)
  iterator = make_eval()
  try:
    for index, local_batch in enumerate(iterator):
      if index == 0 and check_recipe:
        check_batch(local_batch, task.batch_keys(like=local_batch)[1], task.config.data.preprocess, task.name,
                    "evaluation")
      sums, examples, batch_previews = eval_step(variables, sharding.global_batch(local_batch, mesh))
      if index == 0 and previews is not None:
        previews.extend(_draw_previews(task, local_batch, batch_previews))
      for key, value in sums.items():
        value = np.asarray(value, np.float64 if np.asarray(value).dtype.kind == "f" else np.int64)
        totals[key] = totals[key] + value if key in totals else value
      if examples:
        valid = np.asarray(examples.pop("mask")) > 0
        collector.add({key: np.asarray(value)[valid] for key, value in examples.items()})
      progress.update(index + 1)
  finally:
    iterator.close()
  undecodable = int(totals.pop("undecodable"))
  if undecodable:
    logging.warning("%d eval images could not be decoded (TensorFlow logged why): left out of the metrics",
                    undecodable)
  return {**task.finalize(totals, collector.result()), "undecodable": undecodable}


def _draw_previews(task: Task, local_batch: dict[str, np.ndarray], batch_previews: dict[str, jax.Array]) -> list:
  """The task's pictures of the valid examples among the previewed ones, over their input images (shown with
  their own range stretched to 0-255: the inputs are normalised)."""
  previews = jax.tree.map(np.asarray, batch_previews)
  count = min((len(v) for v in previews.values()), default=0)
  pictures = []
  for i in range(count):
    if not local_batch["mask"][i]:
      continue
    image = np.asarray(local_batch["image"][i], np.float32)
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    picture = Image.fromarray(np.uint8(255 * image))
    pictures.append(task.draw_preview(picture, {k: v[i] for k, v in previews.items()}))
  return pictures


def _check_finite(pending: list[tuple[int, dict[str, jax.Array]]], checkpointer: checkpointing.Checkpointer) -> None:
  """Raises at the first step whose loss or updated parameters are not finite; before any save of that state."""
  for step, metrics in pending:
    loss = float(metrics["loss"])
    if not np.isfinite(loss) or not bool(metrics["params_finite"]):
      what = f"loss is {loss}" if not np.isfinite(loss) else f"the update made parameters non-finite (loss {loss})"
      raise TrainingDivergedError(f"{what} at step {step}; the last good checkpoint is {checkpointer.last_good()}")
  pending.clear()


def _parameter_overview(state: TrainState) -> str:
  """clu's table of every parameter and BatchNorm statistic (shape, dtype, size, mean, std), from host copies."""
  variables = checkpointing.host_copy({"params": state.params, "batch_stats": state.batch_stats})
  return parameter_overview.get_parameter_overview(variables, include_stats=True)


def _config_differences(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """``key: old -> new`` for the settings in which ``config`` differs from the workdir's ``config.json`` (the model's
  first)."""
  path = files.path(workdir) / "config.json"
  if not path.exists():
    return []
  old = flax.traverse_util.flatten_dict(files.read_json(path), sep=".")
  new = flax.traverse_util.flatten_dict(json.loads(config.to_json_best_effort()), sep=".")
  differences = [f"{key}: {old.get(key, '(unset)')} -> {new.get(key, '(unset)')}"
                 for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
  return sorted(differences, key=lambda line: not line.startswith("model."))


def _resume(checkpointer: checkpointing.Checkpointer, abstract: Any, workdir: str,
            config: ml_collections.ConfigDict) -> tuple[Any, int]:
  """The newest checkpoint that restores (damaged newer ones are moved aside and named), as (state, step)."""
  try:
    state, step = checkpointer.restore_latest(abstract)
  except checkpointing.ModelMismatchError as error:
    changed = _config_differences(workdir, config)
    because = f"this run changes {'; '.join(changed[:4])}" if changed else "; ".join(error.differences[:2])
    raise ValueError(
        f"the checkpoint at step {error.step} in {error.directory} was written for another model ({because}). "
        "Resume with the options it was written with, or start another --workdir with "
        f"--config.init_from={workdir}, which loads what fits") from None
  if step:
    logging.info("resumed from step %d in %s", step, workdir)
  return state, step


def _writable_workdir(workdir: str) -> None:
  """Makes the workdir; a local one must also be writable (on object stores, permissions show at the first write,
  which comes before anything is compiled)."""
  try:
    files.path(workdir).mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise OSError(error.errno, f"cannot create the workdir ({error.strerror})", workdir) from None
  if not files.is_remote(workdir) and not os.access(workdir, os.W_OK):
    raise OSError(13, "cannot write into the workdir", workdir)


def _finished(workdir: str) -> dict[str, float] | None:
  path = files.path(workdir) / FINAL_METRICS
  if not path.exists():
    return None
  return files.read_json(path)


def summary_line(workdir: str, best_metric: str | None) -> str:
  """The one line a run ends with: its final metric (``best_metric``, or every top-level one) and the files it
  wrote; or, for a run stopped before its end, where it stopped."""
  written = ", ".join(name for name in (FINAL_METRICS, "metrics.jsonl", "checkpoints/", "best/")
                    if (files.path(workdir) / name.rstrip("/")).exists())
  final = _finished(workdir)
  if final is None:
    steps = checkpointing.saved_steps(files.path(workdir) / "checkpoints")
    return (f"stopped before the end, at step {max(steps, default=0)}; rerun the same command to resume ({written} "
            f"in {workdir})")
  key = (best_metric or "").removeprefix("eval/")
  shown = ", ".join(f"{k} {v:.4g}" for k, v in final.items()
                    if (k == key if key in final else "/" not in k and k not in ("step", "count", "undecodable")))
  return f"finished at step {final['step']}: {shown}; wrote {written} in {workdir}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint) and returns the final eval metrics.

  Everything that can be checked is checked before anything is compiled or written: the config's values, the
  recipe/task pairing, the dataset, a writable workdir, and the newest checkpoint that restores (``config.json`` is
  written only once the checkpoint is known to fit). A finished workdir returns its final metrics at once.
  """
  # ---- devices, task and model -----------------------------------------------------------------------------
  config_lib.validate(config)
  mesh = sharding.make_mesh(config.num_devices or None)
  sharding.check_batch_size(config.global_batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  if config.global_batch_size % (config.accumulation_steps * mesh.devices.size):
    raise ValueError(f"global_batch_size={config.global_batch_size} must split into accumulation_steps="
                     f"{config.accumulation_steps} micro-batches divisible by the {mesh.devices.size} devices")
  task = tasks.create(config)
  model = task.create_model()

  # ---- data and schedule: TensorFlow is imported here only, so the rest of the engine runs without it -------
  from hrnet_jax.data import inputs as data_inputs  # pylint: disable=import-outside-toplevel
  train_source = data_inputs.open_train_source(config)
  evaluation = data_inputs.create_eval_input(config, process_index=jax.process_index(),
                                             process_count=jax.process_count(), eval_source=task.eval_source())
  task.check_dataset(train_source[1])
  steps_per_epoch = data_inputs.steps_per_epoch(config, len(train_source[0]))
  steps = total_steps(config, steps_per_epoch)
  schedule = optim.learning_rate_schedule(config, steps, steps_per_epoch)
  tx = optim.create_optimizer(config, schedule)

  # ---- state: resumed from the newest good checkpoint, or fresh, or initialised from other weights ----------
  _writable_workdir(workdir)
  folder = files.path(workdir)  # local (made absolute) or remote
  cache = compilation.use_persistent_cache(config.compilation_cache_dir, workdir)
  logging.info("compilation cache: %s", cache or "off")
  is_main = jax.process_index() == 0
  image_shape = task.batch_keys()[0]["image"].shape  # as the recipe declares it; checked on the first batch

  def create_state(rng):
    return init_train_state(model, tx, image_shape, rng, config.ema_decay)

  replicated = sharding.replicated(mesh)
  abstract = jax.eval_shape(create_state, jax.random.key(config.seed))
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract)
  with contextlib.ExitStack() as cleanup:  # closed in reverse: the input, the metrics, the checkpoints (waited for)
    checkpointer = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints, best_metric=config.best_metric,
                                              best_mode=config.best_mode)
    cleanup.callback(checkpointer.close)
    state, start_step = _resume(checkpointer, abstract, workdir, config)
    finished = _finished(workdir)
    if start_step >= steps and finished is not None:
      logging.warning("%s finished at step %d already: nothing to do", workdir, finished.get("step", start_step))
      return {k: v for k, v in finished.items() if k != "step"}
    if is_main:
      files.write_text(folder / "config.json", config.to_json_best_effort(indent=2, sort_keys=True))
      if finished is not None:  # continued with more steps: finished no more until the new end
        (folder / FINAL_METRICS).unlink()
    writer = metric_writer.MetricWriter(workdir, enabled=is_main, resume_step=start_step)
    cleanup.callback(writer.close)
    inputs = data_inputs.create_input(config, start_step=start_step, process_index=jax.process_index(),
                                      process_count=jax.process_count(), train_source=train_source,
                                      evaluation=evaluation)
    cleanup.callback(inputs.train.close)
    first_batch = next(inputs.train)
    check_batch(first_batch, task.batch_keys(like=first_batch)[0], config.data.preprocess, task.name, "training")
    if not start_step:
      state = compilation.run_once(create_state, jax.random.key(config.seed), out_shardings=replicated)
      overviews = [f"initialised (seed {config.seed})", _parameter_overview(state)]
      if config.init_from:
        variables = weights.init_from(model, config.init_from,
                                      {"params": state.params, "batch_stats": state.batch_stats})
        state = sharding.replicate(state.replace(
            params=variables["params"], batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
            ema_params=_ema_copy(variables["params"], config.ema_decay)), mesh)
        overviews += [f"after init_from {config.init_from}", _parameter_overview(state)]
      if is_main:
        files.write_text(folder / PARAMETERS, "\n\n".join(overviews) + "\n")
        writer.write_hparams(flax.traverse_util.flatten_dict(config.to_dict(), sep="."))
      logging.info("per-tensor shapes, means and standard deviations of the starting weights: %s",
                   folder / PARAMETERS)
    logging.info("%s: %s parameters, %d steps (%d per epoch) on a mesh of %s devices, %d process(es)",
                 config.model.name, f"{sum(x.size for x in jax.tree.leaves(state.params)):,}", steps,
                 steps_per_epoch, dict(mesh.shape), jax.process_count())
    eval_metrics = _loop(config, model, task, tx, schedule, mesh, state, start_step, steps, first_batch, inputs,
                         checkpointer, writer)
  # Finished: what launchers and collectors look for, written once the last checkpoint is on disk.
  if eval_metrics.get("step") == steps and is_main:
    files.write_json(folder / FINAL_METRICS, eval_metrics)
  return {k: v for k, v in eval_metrics.items() if k != "step"}


def _loop(config, model, task, tx, schedule, mesh, state, start_step, steps, first_batch, inputs, checkpointer,
          writer) -> dict[str, float]:
  """Compiles the steps and trains from ``start_step`` to ``steps`` (or a SIGTERM); the last eval's metrics with
  their ``step``."""
  jitted_train_step = make_train_step(model, task, tx, schedule, config, mesh)
  eval_step = make_eval_step(model, task, mesh, config.preview_images)
  bucketed = len(tasks.recipes()[config.data.preprocess].buckets(config.data)) > 1
  compiled_steps: dict[tuple[int, ...], Any] = {}  # by image shape: one per orientation bucket
  compile_seconds = 0.0  # since the last log row, written there

  def compiled_step(state, batch):
    """The train step compiled for this batch's image shape, compiled (or loaded) on first sight."""
    nonlocal compile_seconds
    shape = batch["image"].shape
    if shape not in compiled_steps:
      lower_start = time.perf_counter()
      lowered = jitted_train_step.lower(state, batch)
      compile_start = time.perf_counter()
      compiled_steps[shape], from_cache = compilation.compile_noting_the_cache(lowered)
      seconds = time.perf_counter() - compile_start
      compile_seconds += seconds
      # Tracing and lowering run in Python on every start; the persistent cache spares only the compilation.
      logging.info("train step%s traced and lowered in %.1fs, %s in %.1fs",
                   f" for {shape[1]}x{shape[2]} images" if bucketed else "", compile_start - lower_start,
                   "loaded from the compilation cache" if from_cache else "compiled", seconds)
      if jax.process_count() > 1:
        # The first step starts the CPU collectives (gloo), whose set-up waits 30 s at most for every process:
        # longer than one process's compilation takes when another loaded the step from the compilation cache. So
        # every process waits here first, on the coordination service (no device collective); every process meets
        # a new shape at the same step (the data order is global).
        ocp.multihost.sync_global_processes(f"hrnet_jax: the train step for {shape} is compiled")
    return compiled_steps[shape]

  batch = sharding.global_batch(first_batch, mesh)
  compiled_step(state, batch)

  preemption, interruption = _Preemption(), _Interruption()
  progress = metric_writer.Progress(steps, config.global_batch_size, start_step)
  stopwatch = metric_writer.Stopwatch()
  profiler = _Profiler(os.fspath(checkpointer.workdir / "tensorboard"), start_step + 2, config.profile_steps)
  pending_checks: list[tuple[int, dict[str, jax.Array]]] = []
  interval_metrics: list[dict[str, jax.Array]] = []
  eval_metrics: dict[str, float] = {}
  step = start_step

  def run_eval(state):
    params = state.ema_params if config.ema_decay else state.params
    previews = []
    with stopwatch.timing("eval"):
      metrics = evaluate(eval_step, {"params": params, "batch_stats": state.batch_stats}, inputs.eval.make_eval,
                         mesh, task, total_examples=inputs.eval.num_eval_examples, previews=previews)
    logging.info("eval at step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if "/" not in k))
    writer.write(step, {f"eval/{k}": v for k, v in metrics.items()})
    writer.write_images(step, {f"eval/prediction_{i}": picture for i, picture in enumerate(previews)})
    return {**metrics, "step": step}

  try:
    if config.eval_at_start and start_step == 0:
      run_eval(state)  # the baseline: the initial (or init_from) weights
    while step < steps:
      if interruption.received:
        raise KeyboardInterrupt  # one that a callback swallowed
      profiler.before(step)
      state, metrics = compiled_step(state, batch)(state, batch)
      step += 1
      profiler.after(step, state)
      pending_checks.append((step, metrics))
      interval_metrics.append(metrics)
      if len(pending_checks) > STEPS_AHEAD:
        # Runs at most STEPS_AHEAD steps ahead of the device: waits only when the host has run that far ahead,
        # which bounds the batches held in the queue (and, measured, keeps gloo's CPU collectives from hanging
        # with 2 devices per process when 32 steps were queued).
        jax.block_until_ready(pending_checks[-STEPS_AHEAD - 1][1]["loss"])
      with stopwatch.timing("checkpoint"):
        checkpointer.poll()  # a failed asynchronous save stops the run here
      last_step = step == steps
      if step % config.log_every == 0 or last_step:
        _check_finite(pending_checks, checkpointer)
        means = {f"train/{k}": float(np.mean([m[k] for m in interval_metrics])) for k in interval_metrics[0]
                 if k not in ("params_finite", "undecodable")}
        times = stopwatch.split()
        means["train/images_per_second"] = progress.update(step, means["train/loss"], means["train/learning_rate"],
                                                           times)
        means.update(times)
        means["train/undecodable"] = float(np.sum([m["undecodable"] for m in interval_metrics]))
        if compile_seconds:  # in the row of the interval it happened in, not a row of its own
          means["train/compile_seconds"], compile_seconds = compile_seconds, 0.0
        if means["train/undecodable"]:
          logging.warning("%d training images in steps %d-%d could not be decoded (TensorFlow logged why); they "
                          "carried no loss", means["train/undecodable"], step - len(interval_metrics) + 1, step)
        writer.write(step, means)
        interval_metrics.clear()
      if (config.eval_every and step % config.eval_every == 0) or last_step:
        eval_metrics = run_eval(state)
        if config.best_metric:
          _check_finite(pending_checks, checkpointer)
          with stopwatch.timing("checkpoint"):
            checkpointer.maybe_save_best(step, state, {f"eval/{k}": v for k, v in eval_metrics.items()})
      stopping = preemption.reached(step)
      if step % config.checkpoint_every == 0 or last_step or stopping:
        _check_finite(pending_checks, checkpointer)
        with stopwatch.timing("checkpoint"):
          writer.flush()  # the metrics of every step up to the checkpoint are on disk before it
          checkpointer.save(step, state)
      if stopping:
        checkpointer.wait()
        logging.warning("stopped at step %d by SIGTERM; checkpoint written; rerun the same command to resume", step)
        break
      if not last_step:
        with stopwatch.timing("data"):
          batch = sharding.global_batch(next(inputs.train), mesh)
    if step == steps and eval_metrics.get("step") != steps:
      eval_metrics = run_eval(state)  # resumed at the last step, before its evaluation
  except BaseException as error:  # pylint: disable=broad-exception-caught  (re-raised unless it is a Ctrl-C)
    if not (isinstance(error, KeyboardInterrupt) or interruption.received):
      raise
    checkpointer.wait()  # a save already under way completes; nothing new is started
    raise KeyboardInterrupt(f"at step {step}; nothing saved since; the last checkpoint is {checkpointer.last_good()}; "
                            "rerun the same command to resume") from None
  finally:
    preemption.restore()
    interruption.restore()
    profiler.close()
  return eval_metrics
