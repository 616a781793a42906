"""Devices, meshes and global batches: one code path from one CPU to a multi-host pod.

Parameters are replicated and the batch is sharded over the ``data`` axis of a mesh of every device of every
process; under ``jit`` BatchNorm statistics over the sharded batch are then global (synchronized BN).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


# The environments in which ``jax.distributed.initialize()`` finds the coordinator, the process count and this
# process's index by itself, each recognised by the variables its launcher sets for a job of several processes.
_CLUSTERS = {
    "SLURM": lambda env: int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in env,
    # Open MPI up to 4 (ORTE, whose address JAX reads); Open MPI 5 goes through --distributed=mpi4py.
    "Open MPI": lambda env: int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1 and "OMPI_MCA_orte_hnp_uri" in env,
    "a Cloud TPU pod": lambda env: len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1,
    "a Kubernetes indexed job": lambda env: "KUBERNETES_SERVICE_HOST" in env and "JOB_COMPLETION_INDEX" in env,
}
DISTRIBUTED_MODES = ("auto", "off", "mpi4py")


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
  """The multi-process launcher this process runs under (a key of ``_CLUSTERS``), or None."""
  environ = os.environ if environ is None else environ
  return next((name for name, present in _CLUSTERS.items() if present(environ)), None)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, mode: str = "auto") -> None:
  """Joins a multi-process run. ``mode="auto"``: when a coordinator is given, or under a launcher JAX can read
  (SLURM, Open MPI, Cloud TPU pods, Kubernetes indexed jobs); ``"mpi4py"``: through mpi4py (any MPI); ``"off"``:
  never (one process, whatever the environment says). Logs where this process stands."""
  if mode not in DISTRIBUTED_MODES:
    raise ValueError(f"--distributed={mode!r}: expected one of {', '.join(DISTRIBUTED_MODES)}")
  explicit = coordinator_address is not None
  cluster = None if explicit or mode != "auto" else detect_cluster()
  if mode == "off" or not (explicit or cluster or mode == "mpi4py"):
    return
  # CPU processes exchange collectives over gloo (TCP); tests run two processes on 127.0.0.1 this way. Harmless on
  # GPU/TPU, and set before any backend starts (asking for the backend here would start it too early).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif mode == "mpi4py":
    jax.distributed.initialize(cluster_detection_method="mpi4py")
  else:
    if cluster == "a Kubernetes indexed job" and importlib.util.find_spec("kubernetes") is None:
      raise ImportError("a Kubernetes job: JAX finds its coordinator with the kubernetes package (pip install "
                        "kubernetes), or give --coordinator_address, --num_processes and --process_id")
    jax.distributed.initialize()
  logging.info("process %d of %d (%s), %d local / %d global devices", jax.process_index(), jax.process_count(),
               "given by the flags" if explicit else cluster or "mpi4py", jax.local_device_count(),
               jax.device_count())


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
