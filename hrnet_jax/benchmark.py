"""Training and inference speed of any variant and task on synthetic in-memory batches (no TensorFlow).

    python -m hrnet_jax.benchmark --model hrnet_w32 --task classification --size 224x224 --batch 64 \\
        --mode train --dtype bfloat16 --peak-tflops 989 --output benchmarks/results.jsonl

The train mode times the engine's own jitted step (``trainer.make_train_step``: forward, backward, SGD with
Nesterov momentum and weight decay, BatchNorm statistics, donated state) on a data-parallel mesh of all local
devices; the infer mode times the jitted forward pass in eval mode. Compilation is timed separately (lowering +
XLA compile), then ``--warmup`` steps run untimed and ``--steps`` steps are timed one by one, each synchronised
with ``block_until_ready``; the figures are medians. FLOPs are model FLOPs: XLA's cost analysis of the step as
lowered (the global program, divided by the devices), always of the one-module-per-layer network, because XLA
counts a loop body once and ``scan_repeats=true`` runs repeated layers in loops. MFU = FLOPs per step / median
step time / (``--peak-tflops`` per device).

A human-readable summary goes to stderr, one JSON line per run to stdout and, with ``--output``, appended to a
file (``benchmarks/`` keeps the committed ones).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

import flax
import jax
import numpy as np

from hrnet_jax import cli, compilation, tasks
from hrnet_jax.engine import config_lib, optim, sharding, trainer
from hrnet_jax.model import VARIANTS


@dataclasses.dataclass
class BenchmarkResult:
  model: str
  task: str
  overrides: dict[str, Any]  # the model options given (--override)
  size: str
  batch: int
  mode: str
  dtype: str
  platform: str
  device_kind: str
  devices: int
  params: int
  images_per_second: float
  step_ms: float  # median
  step_ms_min: float
  step_ms_max: float
  timed_steps: int
  compile_seconds: float  # tracing + lowering + XLA compile (or a load from the persistent cache)
  lower_seconds: float  # of which tracing and lowering (Python; a cache does not spare it)
  flops_per_step: float  # model FLOPs per device: XLA's cost analysis of the lowered, one-module-per-layer step
  achieved_tflops: float  # per device
  peak_tflops: float | None  # per device, as given on the command line
  mfu: float | None
  peak_memory_bytes: int
  memory_source: str  # 'device' (allocator peak) or 'compiled' (XLA's buffer assignment: arguments+outputs+temps)
  jax_version: str
  flax_version: str
  xla_flags: str
  timestamp: str

  def summary(self) -> str:
    mfu = f", MFU {100 * self.mfu:.1f}%" if self.mfu is not None else ""
    return (f"{self.model} {self.task} {self.size} batch {self.batch} {self.mode} {self.dtype} on {self.devices}x "
            f"{self.device_kind}: {self.images_per_second:.1f} img/s, step {self.step_ms:.2f} ms (median of "
            f"{self.timed_steps}; min {self.step_ms_min:.2f}, max {self.step_ms_max:.2f}), compile "
            f"{self.compile_seconds:.1f} s ({self.lower_seconds:.1f} s of it tracing and lowering), "
            f"{self.achieved_tflops:.2f} TFLOP/s per device{mfu}, peak memory "
            f"{self.peak_memory_bytes / 2**20:.0f} MiB ({self.memory_source})")


def benchmark_config(model: str, task: str, dtype: str, overrides: dict[str, Any]) -> Any:
  """The engine config of the timed step: the official ImageNet optimizer (SGD, Nesterov, wd 1e-4). ``overrides``
  are model options, but ``data.KEY`` ones set ``config.data.KEY`` (e.g. ``data.masks`` for Mask R-CNN)."""
  config = config_lib.base_config(task)
  data = {key.removeprefix("data."): value for key, value in overrides.items() if key.startswith("data.")}
  config.data.update(data)
  config.model.update(name=model, dtype=dtype, param_dtype="float32",
                      overrides={key: value for key, value in overrides.items() if not key.startswith("data.")})
  config.optimizer.update(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
  return config


def _time_steps(run_step: Callable[[], Any], warmup: int, steps: int) -> list[float]:
  for _ in range(warmup):
    jax.block_until_ready(run_step())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(run_step())
    times.append(time.perf_counter() - start)
  return times


def _peak_memory(compiled) -> tuple[int, str]:
  stats = jax.local_devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "device"
  memory = compiled.memory_analysis()
  total = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
           - memory.alias_size_in_bytes)
  return int(total), "compiled"


def _inference_variables(state: trainer.TrainState) -> dict[str, Any]:
  return {"params": state.params, "batch_stats": state.batch_stats}


@dataclasses.dataclass
class CompiledStep:
  """One configuration's step, compiled and ready to run: ``run()`` runs a step and returns its (unsynchronised)
  outputs; the train mode carries its donated state from step to step."""
  run: Callable[[], Any]
  compiled: Any
  compile_seconds: float  # tracing + lowering + compile
  lower_seconds: float
  flops: float  # model FLOPs per device (see the module docstring)
  params: int
  devices: int


def compile_step(model: str = "hrnet_tiny", task: str = "classification", size: tuple[int, int] = (224, 224),
                 batch: int = 64, mode: str = "train", dtype: str = "float32",
                 overrides: dict[str, Any] | None = None) -> CompiledStep:
  """Builds, lowers and compiles one configuration's step on all local devices, with a synthetic batch."""
  if mode not in ("train", "infer"):
    raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")
  config = benchmark_config(model, task, dtype, dict(overrides or {}))
  mesh = sharding.make_mesh(jax.local_device_count())
  sharding.check_batch_size(batch, mesh, "--batch")
  task_impl = tasks.create(config)
  network = task_impl.create_model()
  batch_arrays = sharding.global_batch(task_impl.synthetic_batch(batch, size, np.random.default_rng(0)), mesh)

  schedule = optim.learning_rate_schedule(config, total_steps=1000, steps_per_epoch=100)
  tx = optim.create_optimizer(config, schedule)
  replicated = sharding.replicated(mesh)
  # The values do not matter here, and the RBG generator compiles the initialisation ~2x faster than threefry.
  state = jax.jit(lambda rng: trainer.init_train_state(network, tx, (*size, 3), rng),
                  out_shardings=replicated)(jax.random.key(0, impl="rbg"))
  params = sum(x.size for x in jax.tree.leaves(state.params))

  def lower(net, state):
    if mode == "train":
      return trainer.make_train_step(net, task_impl, tx, schedule, config, mesh).lower(state, batch_arrays)
    forward = jax.jit(lambda variables, images: net.apply(variables, images, train=False),
                      in_shardings=(replicated, sharding.batch_sharding(mesh)),
                      compiler_options=compilation.step_compiler_options(mesh))
    return forward.lower(_inference_variables(state), batch_arrays["image"])

  compile_start = time.perf_counter()
  lowered = lower(network, state)
  lower_seconds = time.perf_counter() - compile_start
  compiled = lowered.compile()
  compile_seconds = time.perf_counter() - compile_start
  if network.backbone.scan_repeats:  # count the FLOPs of the same network without loops (shapes suffice)
    per_layer = network.clone(backbone=network.backbone.clone(scan_repeats=False))
    lowered = lower(per_layer, jax.eval_shape(lambda rng: trainer.init_train_state(per_layer, tx, (*size, 3), rng),
                                              jax.random.key(0, impl="rbg")))
  flops = float(lowered.cost_analysis().get("flops", 0.0)) / mesh.devices.size  # lowered: the global program

  if mode == "train":
    holder = [state]

    def run():
      holder[0], metrics = compiled(holder[0], batch_arrays)  # the state is donated: carry the new one
      return metrics
  else:
    variables = _inference_variables(state)

    def run():
      return compiled(variables, batch_arrays["image"])
  return CompiledStep(run=run, compiled=compiled, compile_seconds=compile_seconds, lower_seconds=lower_seconds,
                      flops=flops, params=int(params), devices=mesh.devices.size)


def run_benchmark(model: str = "hrnet_tiny", task: str = "classification", size: tuple[int, int] = (224, 224),
                  batch: int = 64, mode: str = "train", dtype: str = "float32", steps: int = 20, warmup: int = 3,
                  peak_tflops: float | None = None, overrides: dict[str, Any] | None = None) -> BenchmarkResult:
  """Compiles and times one configuration on all local devices."""
  step = compile_step(model, task, size, batch, mode, dtype, overrides)
  times = _time_steps(step.run, warmup, steps)
  step_seconds = statistics.median(times)
  achieved = step.flops / step_seconds / 1e12
  memory, memory_source = _peak_memory(step.compiled)
  device = jax.local_devices()[0]
  return BenchmarkResult(
      model=model, task=task, overrides=dict(overrides or {}), size=f"{size[0]}x{size[1]}", batch=batch,
      mode=mode, dtype=dtype,
      platform=device.platform, device_kind=device.device_kind, devices=step.devices, params=step.params,
      images_per_second=batch / step_seconds, step_ms=1e3 * step_seconds, step_ms_min=1e3 * min(times),
      step_ms_max=1e3 * max(times), timed_steps=steps, compile_seconds=step.compile_seconds,
      lower_seconds=step.lower_seconds,
      flops_per_step=step.flops, achieved_tflops=achieved, peak_tflops=peak_tflops,
      mfu=achieved / peak_tflops if peak_tflops else None,
      peak_memory_bytes=memory, memory_source=memory_source, jax_version=jax.__version__,
      flax_version=flax.__version__, xla_flags=os.environ.get("XLA_FLAGS", ""),
      timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def main(argv: list[str] | None = None) -> None:
  parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="hrnet_w32", choices=sorted(VARIANTS), metavar="NAME",
                      help=f"one of {', '.join(VARIANTS)}")
  parser.add_argument("--task", default="classification", choices=sorted(n for n, t in tasks.TASKS.items()
                                                                         if t.trainable))
  parser.add_argument("--size", type=cli.parse_size, default=(224, 224), help="input HxW (default 224x224)")
  parser.add_argument("--batch", type=int, default=64, help="global batch over all local devices")
  parser.add_argument("--mode", default="train", choices=("train", "infer"))
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="compute dtype; parameters, optimizer state and BN statistics stay float32")
  parser.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
  parser.add_argument("--peak-tflops", type=float, default=None,
                      help="peak dense TFLOP/s of one device at --dtype, for MFU (e.g. 989 for H100 SXM bf16)")
  cli.add_override_flag(parser)
  parser.add_argument("--output", help="append the JSON line to this file")
  args = parser.parse_args(argv)
  overrides = cli.model_overrides(parser, args.override)
  result = run_benchmark(args.model, args.task, args.size, args.batch, args.mode, args.dtype, args.steps,
                         args.warmup, args.peak_tflops, overrides)
  print(result.summary(), file=sys.stderr)
  line = json.dumps(dataclasses.asdict(result))
  print(line)
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "a") as f:
      f.write(line + "\n")


if __name__ == "__main__":
  cli.run_argparse(main)
