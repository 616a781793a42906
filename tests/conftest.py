"""Test setup: 8 simulated CPU devices (set before JAX starts) and the shared golden/fixture folders."""

import os
import pathlib

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402  (after XLA_FLAGS on purpose)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> pathlib.Path:
  """A path under ../shared, or a skip with the reason when the folder is not there."""
  path = SHARED.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"{path} is missing: the shared golden/fixture folder sits beside the repository")
  return path
