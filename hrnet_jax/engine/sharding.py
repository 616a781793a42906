"""Devices, meshes and global batches: one code path from one CPU to a multi-host pod.

Parameters are replicated and the batch is sharded over the ``data`` axis of a mesh of every device of every
process; under ``jit`` BatchNorm statistics over the sharded batch are then global (synchronized BN).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run: explicit when a coordinator is given, automatic under SLURM and on TPU pods."""
  explicit = coordinator_address is not None
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  tpu_pod = len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1
  if not (explicit or slurm or tpu_pod):
    return
  # CPU processes exchange collectives over gloo (TCP); tests run two processes on 127.0.0.1 this way. Harmless on
  # GPU/TPU, and set before any backend starts (asking for the backend here would start it too early).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def is_main_process() -> bool:
  return jax.process_index() == 0


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D ``data`` mesh over all devices of all processes (or the first ``num_devices``, for tests)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ValueError(f"asked for {num_devices} devices, only {len(devices)} exist")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch_size: int, mesh: Mesh, name: str = "global_batch_size") -> None:
  devices = mesh.devices.size
  if global_batch_size % devices:
    raise ValueError(f"{name}={global_batch_size} is not divisible by the {devices} devices; choose a multiple "
                     f"of {devices}")


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles every process's local batch into one global array per key, sharded over ``data``."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))
