"""Test setup: 8 simulated CPU devices (set before JAX starts) and the shared golden/fixture folders."""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Many tests compile the same train step in fresh processes (kill, resume, preempt): a compilation cache shared
# by the session's processes turns each recompile (~20 s on 2 cores) into a load.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # made by the first process (pytest's), inherited by its workers
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="hrnet_jax_xla_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# gcsfs reads this when it is imported: by default it probes every bucket's type over gRPC (with TLS, which the
# plain-HTTP GCS emulator of the pod tests cannot answer), so it is set before any test module imports gcsfs.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import pytest  # noqa: E402  (after XLA_FLAGS on purpose)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> pathlib.Path:
  """A path under ../shared, or a skip with the reason when the folder is not there."""
  path = SHARED.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"{path} is missing: the shared golden/fixture folder sits beside the repository")
  return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """The synthetic dataset, built once per session (before any subprocess could race to build it)."""
  from hrnet_jax.data import sources
  path = str(tmp_path_factory.mktemp("tfds"))
  sources.builder("synthetic_shapes", path)
  return path
