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

import filelock  # noqa: E402
import pytest  # noqa: E402  (after XLA_FLAGS on purpose)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> pathlib.Path:
  """A path under ../shared, or a skip with the reason when the folder is not there."""
  path = SHARED.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"{path} is missing: the shared golden/fixture folder sits beside the repository")
  return path


def once_per_session(tmp_path_factory, name: str, make) -> pathlib.Path:
  """``make(path)`` run once for the whole test session, whichever xdist worker asks first (the others wait for
  it): the folder ``name`` beside every worker's own temporary folder. For results minutes long to make."""
  # Under xdist every worker's basetemp sits in the session's folder; without it, basetemp is the session's folder
  # (its parent holds earlier sessions', whose results may point to a compilation cache that is gone).
  basetemp = tmp_path_factory.getbasetemp()
  shared = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
  path, done = shared / name, shared / f"{name}.done"
  with filelock.FileLock(str(shared / f"{name}.lock")):
    if not done.exists():
      make(str(path))
      done.touch()
  return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """The synthetic dataset, built once per session (before any subprocess could race to build it)."""
  from hrnet_jax.data import sources
  return str(once_per_session(tmp_path_factory, "tfds", lambda path: sources.builder("synthetic_shapes", path)))


@pytest.fixture(scope="session")
def objects_data_dir(tmp_path_factory):
  """The synthetic multi-object dataset (detection's default data), built once per session for every worker."""
  from hrnet_jax.data import sources
  return str(once_per_session(tmp_path_factory, "tfds_objects",
                              lambda path: sources.builder("synthetic_objects", path)))
