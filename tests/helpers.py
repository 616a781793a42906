"""What several test modules share: running this repository's command-line programs as users do."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_env(devices: int) -> dict[str, str]:
  """The environment of a CLI run on ``devices`` simulated CPU devices."""
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
  env.pop("HRNET_JAX_DEBUG", None)
  return env


def run_module(module: str, *args: str, devices: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
  """``python -m hrnet_jax.<module> args...`` in a fresh process, output captured."""
  return subprocess.run([sys.executable, "-m", f"hrnet_jax.{module}", *args], env=cli_env(devices), cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


def random_variables(model, input_shape=(1, 32, 32, 3), seed=0):
  """A model's variables filled with distinct random values, without compiling its initialisation (~20 s)."""
  import jax  # pylint: disable=import-outside-toplevel  (this module also serves tests that never start JAX)
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(input_shape, np.float32))
  return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)
