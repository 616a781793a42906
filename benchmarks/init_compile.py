"""Compile time of the train-state initialisation (hrnet_tiny, SGD), XLA's default vs ``compilation.run_once``:

    python benchmarks/init_compile.py [--repeats 3]

Alternates the two, each compile in a fresh ``jax.jit`` with the compilation cache off, and prints the medians and
the largest difference between the two programs' initial values.
"""

import argparse
import statistics
import time

import jax
import numpy as np
import optax

import hrnet_jax
from hrnet_jax import compilation
from hrnet_jax.engine import trainer


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  jax.config.update("jax_enable_compilation_cache", False)
  model = hrnet_jax.create_model("hrnet_tiny", task="classification", num_classes=4)

  def creator(momentum):  # a different constant each time, so that JAX's in-memory cache never answers
    return lambda rng: trainer.init_train_state(model, optax.sgd(0.1, momentum), (64, 64, 3), rng)

  times = {"default": [], "run_once": []}
  values = {}
  for repeat in range(args.repeats):
    for name, options in (("default", None), ("run_once", compilation.RUN_ONCE_COMPILER_OPTIONS)):
      lowered = jax.jit(creator(0.9 + repeat / 100)).lower(jax.random.key(0))
      start = time.perf_counter()
      compiled = lowered.compile(compiler_options=options)
      times[name].append(time.perf_counter() - start)
      values[name] = compiled(jax.random.key(0))
  difference = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                   for a, b in zip(jax.tree.leaves(values["default"]), jax.tree.leaves(values["run_once"])))
  for name, seconds in times.items():
    print(f"{name:>9}: median {statistics.median(seconds):.1f} s ({', '.join(f'{s:.1f}' for s in seconds)})")
  print(f"largest difference in initial values: {difference:.3g}")


if __name__ == "__main__":
  main()
