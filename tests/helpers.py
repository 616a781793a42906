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


def initialisation_like(variables):
  """``random_variables`` scaled as an initialisation would (kernels by their fan-in, BatchNorm variances
  positive), so that activations stay near 1 through the network."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  def scaled(path, x):
    if path[-1].key == "kernel":
      return (x / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)
    return np.abs(x) + x.dtype.type(0.5) if path[-1].key == "var" else x
  return jax.tree_util.tree_map_with_path(scaled, variables)


def tensorboard_contents(workdir: str) -> tuple[dict[str, list], set[str]]:
  """What ``workdir/tensorboard``'s event files hold: per tag its values (a float, or a PIL image), and the names
  of the hyperparameters of the run's HParams summary."""
  # pylint: disable=import-outside-toplevel  (this module also serves tests that never read TensorBoard files)
  import glob
  import io
  from PIL import Image
  from tensorboard.backend.event_processing import event_file_loader
  from tensorboard.plugins.hparams import plugin_data_pb2
  values: dict[str, list] = {}
  hparams: set[str] = set()
  for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
    for event in event_file_loader.LegacyEventFileLoader(path).Load():
      for value in event.summary.value:
        if value.HasField("image"):
          values.setdefault(value.tag, []).append(Image.open(io.BytesIO(value.image.encoded_image_string)))
        elif value.HasField("simple_value"):
          values.setdefault(value.tag, []).append(value.simple_value)
        elif value.metadata.plugin_data.plugin_name == "hparams":
          data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
          hparams.update(data.session_start_info.hparams)
  return values, hparams
