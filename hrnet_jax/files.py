"""Reading the files users give (annotations, boxes, detections) with errors that name the file."""

from __future__ import annotations

import json
from typing import Any


def read_json(path: str, what: str = "file") -> Any:
  """The JSON content of ``path``; a file that is not JSON is a ``ValueError`` naming it and where it breaks."""
  with open(path) as f:
    try:
      return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
      raise ValueError(f"{what} {path} is not JSON ({error})") from None
