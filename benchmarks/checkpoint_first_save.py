"""First and second Orbax save of hrnet_tiny's replicated variables on 8 CPU devices: jax.Arrays vs host NumPy.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/checkpoint_first_save.py

Orbax compiles a device copy for each distinct array shape the first time it saves jax.Arrays; host NumPy
arrays (what ``checkpointing.host_copy`` gives the Checkpointer) need none.
"""

import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

import hrnet_jax
from hrnet_jax.engine import sharding


def main() -> None:
  mesh = sharding.make_mesh(8)
  model = hrnet_jax.create_model("hrnet_tiny", task="classification", num_classes=4)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32))
  rng = np.random.default_rng(0)
  state = sharding.replicate(jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes), mesh)
  print(f"{len(jax.tree.leaves(state))} arrays")
  for name, tree in [("jax.Array", state), ("host NumPy", jax.device_get(state))]:
    manager = ocp.CheckpointManager(tempfile.mkdtemp(), options=ocp.CheckpointManagerOptions(max_to_keep=2))
    for step in (1, 2):
      start = time.perf_counter()
      manager.save(step, args=ocp.args.StandardSave(tree))
      manager.wait_until_finished()
      print(f"{name:<11} save {step}: {time.perf_counter() - start:.2f} s")
    manager.close()


if __name__ == "__main__":
  main()
