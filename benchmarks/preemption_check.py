"""Per-step cost of the "stop for preemption?" check of a two-process training loop, on CPU over gloo:

    python benchmarks/preemption_check.py [--rounds 5] [--steps 50]

Launches itself as two processes on 127.0.0.1, each with two CPU devices, and times a small jitted train step
(a 256x256 replicated parameter, donated; a batch sharded over the four devices) dispatched back to back, with
after each step either no check (``none``), a device all-gather of a local SIGTERM flag read back on the host
(``allgather``: ``multihost_utils.process_allgather``) or JAX's preemption sync manager, which agrees on a stop
step through the coordination service (``sync_point``: ``multihost_utils.reached_preemption_sync_point``). The
modes alternate for ``--rounds`` rounds of ``--steps`` steps (a wait for the last step ends each); process 0
prints the medians of the time per step and of the time spent in the check itself per step.

At most ``IN_FLIGHT`` steps are dispatched ahead of the one finished last, in every mode: with two devices per
process, a few dozen steps queued ahead deadlock the gloo collectives on this CPU setup (jax 0.10.2).
"""

import argparse
import collections
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from hrnet_jax.engine import sharding

WIDTH = 256
BATCH_PER_DEVICE = 16
IN_FLIGHT = 4


def _loss(params: jax.Array, batch: jax.Array) -> jax.Array:
  hidden = jnp.tanh(batch @ params)
  return jnp.mean((jnp.tanh(hidden @ params) - batch) ** 2)


def _train_step(params: jax.Array, batch: jax.Array) -> tuple[jax.Array, jax.Array]:
  loss, grads = jax.value_and_grad(_loss)(params, batch)
  return params - 0.01 * grads, loss


def _checks() -> dict[str, Callable[[int], bool]]:
  flag = np.array(False)
  return {"none": lambda step: False,
          "allgather": lambda step: bool(np.any(multihost_utils.process_allgather(flag))),
          "sync_point": multihost_utils.reached_preemption_sync_point}


def worker(process_id: int, port: int, rounds: int, steps: int) -> None:
  sharding.initialize_distributed(f"127.0.0.1:{port}", 2, process_id)
  mesh = sharding.make_mesh()
  step_fn = jax.jit(_train_step, in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)),
                    out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)), donate_argnums=0)
  rng = np.random.default_rng(process_id)
  local = rng.standard_normal((BATCH_PER_DEVICE * jax.local_device_count(), WIDTH), np.float32)
  batch = jax.make_array_from_process_local_data(sharding.batch_sharding(mesh), local)
  params = sharding.replicate(np.random.default_rng(0).standard_normal((WIDTH, WIDTH), np.float32) / 16, mesh)
  checks = _checks()
  step = 0  # the sync manager wants the same increasing step ids on every process
  times: dict[str, list[float]] = {name: [] for name in checks}
  in_check: dict[str, list[float]] = {name: [] for name in checks}
  for round_ in range(rounds + 1):  # round 0 warms up (compilation, first collectives) and is not counted
    for name, check in checks.items():
      losses: collections.deque[jax.Array] = collections.deque()
      checking = 0.0
      start = time.perf_counter()
      for _ in range(steps):
        params, loss = step_fn(params, batch)
        losses.append(loss)
        if len(losses) > IN_FLIGHT:
          losses.popleft().block_until_ready()
        step += 1
        check_start = time.perf_counter()
        if check(step):
          raise RuntimeError(f"{name} asked to stop at step {step}")
        checking += time.perf_counter() - check_start
      params.block_until_ready()
      if round_:
        times[name].append((time.perf_counter() - start) / steps)
        in_check[name].append(checking / steps)
  if process_id == 0:
    print(f"{os.cpu_count()} CPUs, jax {jax.__version__}, 2 processes x {jax.local_device_count()} CPU devices "
          f"(gloo), {rounds} rounds x {steps} steps per mode; medians per step:")
    base = statistics.median(times["none"])
    for name, seconds in times.items():
      median = statistics.median(seconds)
      rounds_ms = ", ".join(f"{s * 1e3:.2f}" for s in seconds)
      print(f"  {name:>10}: {median * 1e3:7.3f} ms  x{median / base:.2f}  in the check "
            f"{statistics.median(in_check[name]) * 1e3:.3f} ms  (rounds: {rounds_ms})")
  jax.distributed.shutdown()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--process_id", type=int, help="set on the two processes this script launches")
  parser.add_argument("--port", type=int)
  args = parser.parse_args()
  if args.process_id is not None:
    worker(args.process_id, args.port, args.rounds, args.steps)
    return
  print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  workers = [subprocess.Popen([sys.executable, __file__, f"--process_id={i}", f"--port={port}",
                               f"--rounds={args.rounds}", f"--steps={args.steps}"], env=env) for i in range(2)]
  if any(w.wait() for w in workers):
    sys.exit("a worker failed")


if __name__ == "__main__":
  main()
