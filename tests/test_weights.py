"""``python -m hrnet_jax.weights``: the pretrained-weights table, a download from an HTTP server on 127.0.0.1 that
is checked, converted and used by ``init_from``, a wrong checksum, a broken transfer and an unreachable host."""

import functools
import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading

import chex
import numpy as np
import pytest
from safetensors.numpy import save_file

import hrnet_jax
from hrnet_jax import weights
from hrnet_jax.model import convert
from engine_runs import finish, run_float64
from helpers import REPO, random_variables


class _Handler(http.server.SimpleHTTPRequestHandler):
  """Serves its folder; ``/broken/...`` promises more bytes than it sends, as a connection cut mid-transfer."""

  def do_GET(self):  # noqa: N802  (the name http.server calls)
    if self.path.startswith("/broken/"):
      self.send_response(200)
      self.send_header("Content-Length", "1000000")
      self.end_headers()
      self.wfile.write(b"x" * 1000)
      return
    super().do_GET()

  def log_message(self, *args):
    del args


@pytest.fixture
def server(tmp_path):
  """(folder served, its URL): a real HTTP server on 127.0.0.1."""
  folder = tmp_path / "served"
  folder.mkdir()
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.shutdown()


def timm_file(path, variables):
  """A safetensors file as timm's: official key names and layouts (the transposed views made contiguous, since
  safetensors writes raw buffers)."""
  save_file({k: np.ascontiguousarray(v) for k, v in convert.to_state_dict(variables).items()}, str(path))
  return hashlib.sha256(path.read_bytes()).hexdigest()


def register(monkeypatch, url, sha256):
  entry = weights.Weights("hrnet_tiny", url, sha256, "a test server", "tiny.safetensors")
  monkeypatch.setitem(weights.REGISTRY, "hrnet_tiny.test", entry)


def test_fetch_downloads_checks_and_converts_and_a_run_starts_from_it(server, tmp_path, monkeypatch, data_dir):
  folder, url = server
  model = hrnet_jax.create_model("hrnet_tiny", num_classes=1000)
  variables = random_variables(model)
  digest = timm_file(folder / "model.safetensors", variables)
  register(monkeypatch, f"{url}/model.safetensors", digest)
  cache = tmp_path / "cache"
  output = weights.fetch("hrnet_tiny.test", str(cache))
  assert sorted(os.listdir(cache)) == ["hrnet_tiny.test.npz", "tiny.safetensors"]  # nothing else left there
  chex.assert_trees_all_close(hrnet_jax.load_pytorch_weights(model, output), variables)
  (folder / "model.safetensors").unlink()  # the second call finds the file in the cache
  assert weights.fetch("hrnet_tiny.test", str(cache), str(tmp_path / "again.npz")) == str(tmp_path / "again.npz")

  # The demo's narrower head is re-initialised; the backbone loads; the log says which. (The engine tests' short
  # float64 run, one step of it: the session's compilation cache holds its programs.)
  log = finish(run_float64(str(tmp_path / "run"), data_dir, devices=1, total_steps=1, init_from=output))
  report = next(line for line in log.splitlines() if f"init_from {output}: loaded" in line)
  loaded = re.search(r"loaded (\d+) tensors; re-initialised \d+: (.*)", report)
  assert loaded and int(loaded.group(1)) > 50 and "classifier.weight" in loaded.group(2), report
  assert "stage4" not in loaded.group(2) and "conv1.weight" not in loaded.group(2).split(", ")  # the backbone loaded


def test_a_wrong_checksum_or_a_broken_transfer_is_one_error_and_leaves_nothing(server, tmp_path, monkeypatch):
  folder, url = server
  timm_file(folder / "model.safetensors", random_variables(hrnet_jax.create_model("hrnet_tiny", num_classes=1000)))
  cache = tmp_path / "cache"
  register(monkeypatch, f"{url}/model.safetensors", "0" * 64)
  with pytest.raises(ValueError, match=r"sha256 [0-9a-f]{64} is not the recorded 0{64}\.\.\.: a damaged or "
                                       r"different file; http://127.0.0.1:\d+/model.safetensors served another file"):
    weights.fetch("hrnet_tiny.test", str(cache))
  register(monkeypatch, f"{url}/broken/model.safetensors", "")
  with pytest.raises(ConnectionError, match=r"could not download http://127.0.0.1:\d+/broken/model.safetensors "
                                            r"\(.+\); download it by hand and put it at "):
    weights.fetch("hrnet_tiny.test", str(cache))
  assert os.listdir(cache) == []  # no partial file, no unchecked one
  entry = weights.REGISTRY["hrnet_w32.openmmlab"]
  assert entry.sha256 == "dc9eeb4f" and entry.file_name == "hrnetv2_w32-dc9eeb4f.pth"
  (cache / entry.file_name).write_bytes(b"not the weights")  # put there by hand, say, and damaged
  with pytest.raises(ValueError, match="is not the recorded dc9eeb4f...: a damaged or different file; delete "):
    weights.download("hrnet_w32.openmmlab", str(cache))


def test_an_unreachable_host_is_one_line_saying_what_to_download_and_where(tmp_path):
  env = {"HRNET_JAX_WEIGHTS_MIRROR": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
  result = subprocess.run([sys.executable, "-m", "hrnet_jax.weights", "fetch", "hrnet_w48.timm",
                           f"--cache_dir={tmp_path}"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: could not download http://127.0.0.1:9/timm/hrnet_w48.ms_in1k/resolve/main/"
                         "model.safetensors") and f"put it at {tmp_path}/hrnet_w48.ms_in1k.safetensors" in last, last
  assert os.listdir(tmp_path) == []
  listed = subprocess.run([sys.executable, "-m", "hrnet_jax.weights", "list"], cwd=REPO, capture_output=True,
                          text=True, timeout=120).stdout
  assert all(f"`{name}`" in listed for name in weights.REGISTRY) and "d2186c55..." in listed
