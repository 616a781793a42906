"""``python -m hrnet_jax.weights``: the pretrained-weights table, a download (through a mirror: no network here)
that is checked and converted for ``init_from``, a damaged file, and the line a machine without network gets."""

import shutil
import subprocess
import sys

import chex
import numpy as np
import pytest
from safetensors.numpy import save_file

import hrnet_jax
from hrnet_jax import weights
from hrnet_jax.model import convert
from helpers import REPO, random_variables


def test_fetch_downloads_checks_and_converts_for_init_from_then_reads_its_cache(tmp_path, monkeypatch):
  model = hrnet_jax.create_model("hrnet_w18_small_v1", num_classes=1000)
  variables = random_variables(model)
  served = tmp_path / "mirror" / "timm" / "hrnet_w18_small.ms_in1k" / "resolve" / "main"
  served.mkdir(parents=True)
  # timm's file: official keys and layouts (safetensors writes the raw buffer, so the transposed views made contiguous)
  save_file({k: np.ascontiguousarray(v) for k, v in convert.to_state_dict(variables).items()},
            str(served / "model.safetensors"))
  monkeypatch.setenv("HRNET_JAX_WEIGHTS_MIRROR", (tmp_path / "mirror").as_uri())
  cache = str(tmp_path / "cache")
  output = weights.fetch("hrnet_w18_small_v1.timm", cache)
  chex.assert_trees_all_close(hrnet_jax.load_pytorch_weights(model, output), variables)
  shutil.rmtree(tmp_path / "mirror")  # the second call finds the file in the cache
  assert weights.fetch("hrnet_w18_small_v1.timm", cache, str(tmp_path / "again.npz")) == str(tmp_path / "again.npz")
  with pytest.raises(ValueError, match=r"unknown weights 'hrnet_w19.timm'; known: hrnet_w18_small_v1.timm"):
    weights.fetch("hrnet_w19.timm", cache)


def test_a_file_whose_checksum_differs_is_one_error(tmp_path):
  entry = weights.REGISTRY["hrnet_w32.openmmlab"]
  assert entry.sha256 == "dc9eeb4f" and entry.file_name == "hrnetv2_w32-dc9eeb4f.pth"
  (tmp_path / entry.file_name).write_bytes(b"not the weights")  # put there by hand, say, and damaged
  with pytest.raises(ValueError, match=r"has sha256 [0-9a-f]{64}, not dc9eeb4f\.\.\.: a damaged or different file"):
    weights.download("hrnet_w32.openmmlab", str(tmp_path))


def test_without_network_fetch_says_what_to_download_and_where_in_one_line(tmp_path):
  env = {"HRNET_JAX_WEIGHTS_MIRROR": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
  result = subprocess.run([sys.executable, "-m", "hrnet_jax.weights", "fetch", "hrnet_w48.timm",
                           f"--cache_dir={tmp_path}"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: could not download http://127.0.0.1:9/timm/hrnet_w48.ms_in1k/resolve/main/"
                         "model.safetensors") and f"put it at {tmp_path}/hrnet_w48.ms_in1k.safetensors" in last, last
  listed = subprocess.run([sys.executable, "-m", "hrnet_jax.weights", "list"], cwd=REPO, capture_output=True,
                          text=True, timeout=120).stdout
  assert all(f"`{name}`" in listed for name in weights.REGISTRY) and "d2186c55..." in listed
