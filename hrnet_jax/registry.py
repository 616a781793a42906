"""Named things (variants, tasks, recipes, keypoint and label sets) in dicts that explain a wrong name.

``Registry`` is a ``dict``: iterate, ``in``, ``items()`` and ``sorted()`` as usual. Only a missing name differs: it
raises ``UnknownNameError`` listing the valid names and the closest match, e.g.
``unknown variant 'hrnet_w33' (did you mean hrnet_w32, hrnet_w30?); known: hrnet_w18_small_v1, ...``.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable


class UnknownNameError(KeyError, ValueError):
  """A name that is not in a registry. Both a ``KeyError`` (it is a failed lookup) and a ``ValueError`` (it is a
  bad value a user typed), so either ``except`` catches it."""

  def __str__(self) -> str:  # KeyError would print the message in quotes
    return str(self.args[0])


def unknown_name(kind: str, name: Any, known: Iterable[str]) -> UnknownNameError:
  """The error for ``name`` missing among ``known`` ``kind``s, with the closest matches."""
  known = list(known)
  close = difflib.get_close_matches(str(name), known, n=3)
  hint = f" (did you mean {', '.join(close)}?)" if close else ""
  return UnknownNameError(f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}")


class Registry(dict):
  """A ``dict`` of named entries of one ``kind`` (the word used in its error message)."""

  def __init__(self, kind: str, entries: dict[str, Any] | None = None):
    super().__init__(entries or {})
    self.kind = kind

  def __missing__(self, name: Any) -> Any:
    raise unknown_name(self.kind, name, self)

  def register(self, name: str, entry: Any) -> Any:
    """Adds ``entry`` under ``name``; a name already taken by another entry is an error."""
    if name in self and self[name] is not entry:
      raise ValueError(f"{self.kind} {name!r} is already registered")
    self[name] = entry
    return entry
