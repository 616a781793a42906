"""Pretrained ImageNet weights in one call: where each file is, its checksum, and a download that converts it.

    python -m hrnet_jax.weights list
    python -m hrnet_jax.weights fetch hrnet_w32.timm [--cache_dir DIR] [--save_as FILE.npz]

``fetch`` downloads the file into the cache (``--cache_dir``, default ``$HRNET_JAX_CACHE`` or
``~/.cache/hrnet_jax``) unless it is already there, checks its sha256 where it is recorded, loads it strictly into
the classification model of its variant (so a wrong or damaged file stops here, not in a training run), and writes
the ``.npz`` that ``--config.init_from`` takes for every task (the backbone loads; the head is re-initialised for
another task). With no network it stops with one line that says which URL to download by hand and where to put it.
``$HRNET_JAX_WEIGHTS_MIRROR`` replaces every URL's scheme and host (an internal mirror, or ``file:///a/folder``).
Nothing downloads at training time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from absl import app, flags

from hrnet_jax import cli
from hrnet_jax.model import convert
from hrnet_jax.model.factory import create_model

@dataclasses.dataclass(frozen=True)
class Weights:
  """One pretrained file: the variant it fits, where it is, its checksum (``sha256``: whole, or the first hex digits
  when only those are published, as OpenMMLab's file names carry; "" when none is), its source in words, and the
  name it has in the cache."""
  variant: str
  url: str
  sha256: str
  source: str
  file_name: str


def _timm(variant: str, repo: str) -> Weights:
  return Weights(variant, f"https://huggingface.co/timm/{repo}/resolve/main/model.safetensors", "",
                 f"timm on the Hugging Face Hub (timm/{repo}), the official classification weights",
                 f"{repo}.safetensors")


def _openmmlab(width: int, digest: str) -> Weights:
  file_name = f"hrnetv2_w{width}-{digest}.pth"
  return Weights(f"hrnet_w{width}", f"https://download.openmmlab.com/pretrain/third_party/{file_name}", digest,
                 f"OpenMMLab's copy of the official HRNetV2 ImageNet weights (open-mmlab://msra/hrnetv2_w{width}, "
                 "what MMDetection's HRNet configs start from; reading .pth needs the [torch] extra)", file_name)


REGISTRY: dict[str, Weights] = {
    "hrnet_w18_small_v1.timm": _timm("hrnet_w18_small_v1", "hrnet_w18_small.ms_in1k"),
    "hrnet_w18_small_v2.timm": _timm("hrnet_w18_small_v2", "hrnet_w18_small_v2.ms_in1k"),
    **{f"hrnet_w{w}.timm": _timm(f"hrnet_w{w}", f"hrnet_w{w}.ms_in1k") for w in (18, 30, 32, 40, 44, 48, 64)},
    **{f"hrnet_w{w}.openmmlab": _openmmlab(w, digest) for w, digest in (
        (18, "00eb2006"), (32, "dc9eeb4f"), (40, "ed0b031c"), (48, "d2186c55"))},
}


def default_cache_dir() -> str:
  return os.environ.get("HRNET_JAX_CACHE") or os.path.expanduser("~/.cache/hrnet_jax")


def download_url(weights: Weights) -> str:
  """The file's URL, through ``$HRNET_JAX_WEIGHTS_MIRROR`` when it is set."""
  mirror = os.environ.get("HRNET_JAX_WEIGHTS_MIRROR")
  if not mirror:
    return weights.url
  return mirror.rstrip("/") + urllib.parse.urlparse(weights.url).path


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def download(name: str, folder: str) -> str:
  """The file of ``name`` in ``folder``, downloaded unless it is there, its checksum checked; its path. A download
  lands under a temporary name and takes the file's name only once whole and checked: nothing half-written or
  wrong stays in the cache."""
  weights = REGISTRY[name]
  path = os.path.join(folder, weights.file_name)
  if os.path.exists(path):
    _check(weights, path, f"delete {path} and fetch again")
    return path
  os.makedirs(folder, exist_ok=True)
  url = download_url(weights)
  print(f"downloading {url}", file=sys.stderr)
  handle, partial = tempfile.mkstemp(dir=folder, prefix=f".{weights.file_name}.")
  try:
    try:
      with os.fdopen(handle, "wb") as f, urllib.request.urlopen(url, timeout=60) as response:
        shutil.copyfileobj(response, f, 1 << 20)
        expected = response.headers.get("Content-Length")
        if expected is not None and f.tell() != int(expected):  # http.client returns a cut body without an error
          raise ConnectionError(f"the transfer ended after {f.tell()} of {expected} bytes")
    # The network's failures (a local disk's, e.g. a full one, are errors of their own).
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
      detail = getattr(error, "reason", None) or error
      raise ConnectionError(f"could not download {url} ({detail}); download it by hand and put it at {path}, then "
                            "run this again") from None
    _check(weights, partial, f"{url} served another file than the one recorded")
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return path


def _check(weights: Weights, path: str, advice: str) -> None:
  """Raises when ``path``'s sha256 is not the recorded one; prints it either way (to record a new one)."""
  actual = sha256_of(path)
  if weights.sha256 and not actual.startswith(weights.sha256):
    raise ValueError(f"sha256 {actual} is not the recorded {weights.sha256}...: a damaged or different file; {advice}")
  print(f"sha256 {actual} ({'as recorded' if weights.sha256 else 'none recorded to compare'})", file=sys.stderr)


def fetch(name: str, folder: str, output: str | None = None) -> str:
  """Downloads ``name`` (if needed), loads it strictly into its variant's classification model and writes the
  ``.npz`` (official key names, PyTorch layouts) that ``init_from`` reads; its path."""
  if name not in REGISTRY:
    raise ValueError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)} (python -m hrnet_jax.weights list)")
  path = download(name, folder)
  model = create_model(REGISTRY[name].variant, task="classification", num_classes=1000)
  variables = convert.load_pytorch_weights(model, path)
  output = output or os.path.join(folder, f"{name}.npz")
  np.savez(output, **convert.to_state_dict(variables))
  return output


def table() -> str:
  """The registry as a Markdown table (the README's)."""
  rows = ["| name | variant | file | sha256 | source |", "|---|---|---|---|---|"]
  rows += [f"| `{name}` | {w.variant} | {w.url} | {w.sha256 + '...' if w.sha256 else 'not recorded'} | {w.source} |"
           for name, w in REGISTRY.items()]
  return "\n".join(rows)


def main(argv):
  """The CLI (its flags are defined only when run, so importing this module adds none to another program)."""
  if len(argv) < 2 or argv[1] not in ("list", "fetch") or (argv[1] == "fetch") != (len(argv) == 3):
    raise app.UsageError("python -m hrnet_jax.weights list | fetch NAME")
  if argv[1] == "list":
    print(table())
    return
  output = fetch(argv[2], flags.FLAGS.cache_dir or default_cache_dir(), flags.FLAGS.save_as)
  print(f"wrote {output}: use it as --config.init_from={output}")


if __name__ == "__main__":
  flags.DEFINE_string("cache_dir", None, "Where downloads are kept (default $HRNET_JAX_CACHE or ~/.cache/hrnet_jax).")
  flags.DEFINE_string("save_as", None, "The converted .npz (default CACHE_DIR/NAME.npz).")
  cli.run(main)
