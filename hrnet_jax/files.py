"""Every path a user gives, local or remote (``gs://``, ``s3://`` and what else ``etils.epath`` reaches, as Orbax
does): reading the files users give (annotations, boxes, detections) with errors that name the file, and writing
the small records a run keeps (configs, metrics, final metrics) whole or not at all.

Remote paths are read and written through ``epath``; local ones are made absolute, so that a run started in one
folder and resumed from another finds the same files.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

from etils import epath

PathLike = str | os.PathLike


def is_remote(location: PathLike) -> bool:
  return "://" in os.fspath(location)


def path(location: PathLike) -> epath.Path:
  """``location`` as an ``epath.Path``; a local one made absolute."""
  text = os.fspath(location)
  return epath.Path(text if is_remote(text) else os.path.abspath(text))


def read_json(location: PathLike, what: str = "file") -> Any:
  """The JSON content of ``location``; a file that is not JSON is a ``ValueError`` naming it and where it breaks."""
  try:
    return json.loads(path(location).read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise ValueError(f"{what} {location} is not JSON ({error})") from None


def write_bytes(location: PathLike, content: bytes) -> None:
  """Writes ``location`` whole or not at all (a temporary file, then a rename): a run killed mid-write leaves the
  old file, never half a new one. Its folder is made if needed."""
  target = path(location)
  target.parent.mkdir(parents=True, exist_ok=True)
  temporary = target.parent / f"{target.name}.tmp{os.getpid()}"
  temporary.write_bytes(content)
  temporary.replace(target)


def write_text(location: PathLike, text: str) -> None:
  """``write_bytes`` of ``text`` in UTF-8."""
  write_bytes(location, text.encode())


def write_json(location: PathLike, content: Any) -> None:
  write_text(location, json.dumps(content, indent=2) + "\n")


def save_image(image: Any, location: PathLike) -> None:
  """A PIL ``image`` as a PNG file at ``location`` (the pictures ``predict`` draws); its folder made if needed."""
  target = path(location)
  target.parent.mkdir(parents=True, exist_ok=True)
  encoded = io.BytesIO()
  image.save(encoded, format="PNG")
  target.write_bytes(encoded.getvalue())


def append_text(location: PathLike, text: str) -> None:
  """Adds ``text`` at the end of ``location``: appended in place on local disks; on object stores (which cannot
  append) the file is written again whole, through ``write_text``."""
  target = path(location)
  if not is_remote(location):
    with target.open("a") as f:
      f.write(text)
    return
  write_text(target, (target.read_text() if target.exists() else "") + text)


def move_tree(source: PathLike, target: PathLike) -> None:
  """Moves the folder ``source`` to ``target`` (on object stores, which have no folders to rename: file by file)."""
  source, target = path(source), path(target)
  if not is_remote(source):
    shutil.move(os.fspath(source), os.fspath(target))
    return
  for file in source.rglob("*"):
    if not file.is_dir():
      destination = target / file.relative_to(source)
      destination.parent.mkdir(parents=True, exist_ok=True)
      file.copy(destination, overwrite=True)
  source.rmtree()


@contextlib.contextmanager
def local_file(location: PathLike) -> Iterator[str]:
  """A local path of the file ``location`` for libraries that read only local files (``torch.load``,
  ``safetensors``, NumPy): the file itself, or a temporary copy of a remote one (removed afterwards)."""
  if not is_remote(location):
    yield os.fspath(path(location))
    return
  source = path(location)
  with tempfile.TemporaryDirectory(prefix="hrnet_jax_") as folder:
    copy = os.path.join(folder, source.name)
    source.copy(copy)
    yield copy
