"""Reading the files users give (annotations, boxes, detections) with errors that name the file, and writing the
small records a run keeps (configs, final metrics) atomically."""

from __future__ import annotations

import json
import os
from typing import Any


def read_json(path: str, what: str = "file") -> Any:
  """The JSON content of ``path``; a file that is not JSON is a ``ValueError`` naming it and where it breaks."""
  with open(path) as f:
    try:
      return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
      raise ValueError(f"{what} {path} is not JSON ({error})") from None


def write_text(path: str, text: str) -> None:
  """Writes ``path`` whole or not at all (a temporary file, then a rename): a run killed mid-write leaves the old
  file, never half a new one. Its folder is made if needed."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temporary = f"{path}.tmp{os.getpid()}"
  with open(temporary, "w") as f:
    f.write(text)
  os.replace(temporary, path)


def write_json(path: str, content: Any) -> None:
  write_text(path, json.dumps(content, indent=2) + "\n")
