"""What a persistent-cache hit costs on the CPU: compiling the tiny HRNet's gradient step, against deserialising
the same executable (what JAX does on a cache hit), and running it.

    python benchmarks/cache_load_cpu.py

Why the suite's training processes still spend seconds per program with a warm cache (tests/conftest.py shares one).
"""

import time

import jax
import jax.numpy as jnp
from jax._src.lib import xla_client

from hrnet_jax import model as models


def main() -> None:
  model = models.create_model("hrnet_tiny", num_classes=10)
  images = jnp.zeros((16, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(0), images)

  def loss(variables, images):
    logits, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
    return logits.sum()

  lowered = jax.jit(jax.grad(loss)).lower(variables, images)
  start = time.perf_counter()
  compiled = lowered.compile()
  print(f"compile {time.perf_counter() - start:.1f} s")
  backend = jax.devices()[0].client
  serialized = backend.serialize_executable(compiled.runtime_executable())
  print(f"serialised executable {len(serialized) / 1e6:.1f} MB")
  for _ in range(2):
    start = time.perf_counter()
    backend.deserialize_executable(serialized, xla_client.DeviceList(tuple(jax.devices()[:1])), None)
    print(f"deserialise {time.perf_counter() - start:.1f} s")
  jax.block_until_ready(compiled(variables, images))
  start = time.perf_counter()
  for _ in range(10):
    grads = compiled(variables, images)
  jax.block_until_ready(grads)
  print(f"one step {(time.perf_counter() - start) / 10 * 1000:.0f} ms")


if __name__ == "__main__":
  main()
