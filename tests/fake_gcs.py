"""A Google Cloud Storage server on 127.0.0.1 for tests (``gcp-storage-emulator``, in a thread of the test process),
and the environment that points every client a run uses at it: ``etils.epath`` through gcsfs, TensorStore (Orbax's
arrays), google-cloud-storage and ArrayRecord's reader (google-cloud-cpp: the datasets' records). No network, no
credentials.

TensorFlow's own GCS file system has Google's address built in and cannot be pointed anywhere else, so ``epath`` is
told to use gcsfs (``EPATH_USE_TF=false``); tfds reads a dataset's metadata through ``epath`` and its records through
ArrayRecord, so no TensorFlow file access is left to point.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from http import HTTPStatus
from typing import Iterator

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

BUCKET = "hrnet-test"
_patched = False


def _move(request, response, storage, *args, **kwargs):
  """The ``moveTo`` call gcsfs renames with, which the emulator lacks (without it each rename retries for ~34 s)."""
  del args, kwargs
  bucket, source, target = (request.params[k] for k in ("bucket_name", "object_id", "dest_object_id"))
  try:
    moved = objects._copy(request.base_url, storage, bucket, source, bucket, target)  # pylint: disable=protected-access
  except NotFound:
    response.status = HTTPStatus.NOT_FOUND
    return
  objects._delete(storage, bucket, source)  # pylint: disable=protected-access
  response.json(moved)


_WRITES = threading.Lock()  # a precondition is checked and the write made as one step, as GCS does


def _generation(storage, bucket: str, name: str) -> str:
  try:
    return storage.get_file_obj(bucket, name)["generation"]
  except NotFound:
    return "0"  # GCS's generation of an object that does not exist


def _with_generations(handler, reads: bool):
  """``handler`` with what TensorStore relies on and the emulator lacks: the object's generation in the
  ``x-goog-generation`` header of every read, and the ``ifGenerationMatch`` / ``ifGenerationNotMatch`` conditions
  (OCDBT, Orbax's format, writes its manifest with them)."""
  def conditional(request, response, storage, *args, **kwargs):
    bucket = request.params["bucket_name"]
    name = request.params.get("object_id") or (request.query.get("name") or [""])[0]
    match, not_match = (request.query.get(k, [None])[0] for k in ("ifGenerationMatch", "ifGenerationNotMatch"))
    with _WRITES:
      current = _generation(storage, bucket, name)
      if match is not None and match != current:
        response.status = HTTPStatus.PRECONDITION_FAILED
        return None
      if not_match is not None and not_match == current:
        response.status = HTTPStatus.NOT_MODIFIED if reads else HTTPStatus.PRECONDITION_FAILED
        return None
      result = handler(request, response, storage, *args, **kwargs)
      if reads and current != "0":
        response["x-goog-generation"] = current
      return result
  return conditional


def _with_suffix_ranges(handler):
  """``handler`` answering a suffix range (``Range: bytes=-N``, the last N bytes: how ArrayRecord's GCS reader reads
  a file's footer), which the emulator would answer with the whole object."""
  def ranged(request, response, storage, *args, **kwargs):
    suffix = re.fullmatch(r"\s*bytes=-(\d+)\s*", request.get_header("range", "") or "")
    if suffix:
      try:
        size = len(storage.get_file(request.params["bucket_name"], request.params["object_id"]))
      except NotFound:
        size = 0  # the handler answers 404
      headers = request._request_handler.headers  # pylint: disable=protected-access
      del headers["Range"]
      headers["Range"] = f"bytes={max(size - int(suffix.group(1)), 0)}-"
    return handler(request, response, storage, *args, **kwargs)
  return ranged


_MOVE_ROUTES = tuple((rf"^{prefix}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/"
                      r"(?P<dest_object_id>.*[^/]+)$", {server.POST: _move})
                     for prefix in (server.settings.API_ENDPOINT, ""))


def environment(endpoint: str) -> dict[str, str]:
  """The variables that send a process's GCS traffic to ``endpoint``."""
  return {"EPATH_USE_TF": "false", "STORAGE_EMULATOR_HOST": endpoint, "TENSORSTORE_GCS_HTTP_URL": endpoint,
          "CLOUD_STORAGE_EMULATOR_ENDPOINT": endpoint,
          "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake",
          # gcsfs would otherwise ask the bucket's type before every call, and cache listings that TensorStore's
          # writes make stale.
          "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "FSSPEC_GS": json.dumps({"use_listings_cache": False})}


@contextlib.contextmanager
def running() -> Iterator[str]:
  """A fresh in-memory server with the bucket ``BUCKET``; its endpoint (``http://127.0.0.1:PORT``)."""
  global _patched  # pylint: disable=global-statement  (the emulator's routes are module state too)
  if not _patched:
    _patched = True
    replaced = {objects.download: _with_suffix_ranges(_with_generations(objects.download, reads=True)),
                objects.insert: _with_generations(objects.insert, reads=False),
                objects.delete: _with_generations(objects.delete, reads=False)}
    objects.download = replaced[objects.download]  # also what ``get`` calls for ``alt=media``
    server.HANDLERS = _MOVE_ROUTES + tuple((route, {method: replaced.get(fn, fn) for method, fn in methods.items()})
                                           for route, methods in server.HANDLERS)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  storage = server.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
  storage.start()
  try:
    yield f"http://127.0.0.1:{port}"
  finally:
    storage.stop()
