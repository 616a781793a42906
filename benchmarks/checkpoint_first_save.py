"""First and second Orbax save of hrnet_tiny's replicated variables on 8 CPU devices: jax.Arrays vs host NumPy.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/checkpoint_first_save.py
"""
import time, jax, jax.numpy as jnp, numpy as np
import orbax.checkpoint as ocp
from hrnet_jax import models, sharding
mesh = sharding.make_mesh(8)
model = models.create_model("hrnet_tiny", task="classification", num_classes=4)
shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
rng = np.random.default_rng(0)
state = sharding.replicate(jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes), mesh)
print(len(jax.tree.leaves(state)), "arrays")
for name, tree in [("jax arrays", state), ("host numpy", jax.device_get(state))]:
  m = ocp.CheckpointManager(f"/tmp/checkpoint_first_save_{name[:4]}", options=ocp.CheckpointManagerOptions(max_to_keep=2))
  for step in (1, 2):
    t = time.time(); m.save(step, args=ocp.args.StandardSave(tree)); m.wait_until_finished(); print(name, step, round(time.time() - t, 2))
  m.close()
