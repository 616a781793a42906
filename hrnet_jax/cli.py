"""What the command-line programs share: one error boundary, checks of their outputs before the work, quiet logs,
and sizes on the command line.

A mistake a user can fix (a bad flag or config, a missing or unreadable path, a checkpoint that does not fit the
model, an invalid value) ends as one line on stderr, ``error: ...``, with exit status 2; Ctrl-C as one line with
status 130. ``--verbose`` (any program) or ``HRNET_JAX_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.abc
import importlib.machinery
import json
import logging as python_logging
import os
import re
import sys
import threading
import traceback
from typing import Any, Callable, Iterator, NoReturn, Sequence

from absl import app, flags, logging

from hrnet_jax import files
from hrnet_jax.data import keep_tensorflow_on_the_host

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

# Errors a user can fix from the message alone. OSError covers missing, unreadable and unwritable paths; absl's
# flag errors a malformed or missing flag.
# ImportError: an optional extra that is not installed (the message says which).
USER_ERRORS = (ValueError, KeyError, OSError, FloatingPointError, SyntaxError, ImportError, flags.Error,
               app.UsageError)


def one_line(error: BaseException) -> str:
  """An error's message on one line (an OSError with its path, not its errno alone)."""
  if isinstance(error, SyntaxError):
    return f"{error.msg} ({error.filename}, line {error.lineno})"
  if isinstance(error, OSError) and error.strerror:
    where = f": {error.filename}" if error.filename else ""
    return " ".join(f"{error.strerror}{where}".split())
  if type(error) is KeyError and error.args and " " not in str(error.args[0]):  # a bare key: say what it is
    return f"KeyError {error.args[0]!r} (--verbose shows where)"
  message = error
  while isinstance(message, BaseException) and message.args:  # KeyError/AttributeError wrap the real text
    message = message.args[0]
  return " ".join(str(message).split())


def debugging() -> bool:
  return bool(os.environ.get("HRNET_JAX_DEBUG"))


def fail(message: str, status: int = EXIT_USER_ERROR) -> NoReturn:
  logging.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def parse_size(text: str) -> tuple[int, int]:
  """``HxW`` (e.g. ``256x192``) as (height, width), for argparse."""
  match = re.fullmatch(r"(\d+)x(\d+)", text)
  if not match:
    raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x192, got {text!r}")
  return int(match.group(1)), int(match.group(2))


def add_override_flag(parser: argparse.ArgumentParser) -> None:
  """``--override KEY=VALUE`` (repeatable): a model option of ``create_model``; read back by ``model_overrides``."""
  parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                      help="model option, e.g. num_classes=4, fusion_upsample=bilinear or head=ocr (repeatable); "
                      "the benchmark also takes data.KEY=VALUE for the data config (e.g. data.masks=true)")


def model_overrides(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
  """The ``--override`` items as options: JSON values where they parse (numbers, booleans, lists), else strings."""
  overrides = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      parser.error(f"--override needs KEY=VALUE, got {item!r}")
    try:
      overrides[key] = json.loads(value)
    except json.JSONDecodeError:
      overrides[key] = value
  return overrides


def _check_folder(folder: str, what: str, path: str) -> None:
  if files.is_remote(folder):  # an object store: its folders need not exist; access is known at the first write
    return
  existing = os.path.abspath(folder)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise OSError(errno.ENOTDIR, f"cannot write {what} {path}: {existing} is a file, not a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise OSError(errno.EACCES, f"cannot write {what} {path}: {existing} is not writable")


def writable_dir(path: str, what: str) -> str:
  """``path``, after checking that it is, or can be made as, a folder files can be written into (nothing is made
  yet): a program checks its outputs before its work, not after."""
  _check_folder(path, what, path)
  return path


def writable_file(path: str, what: str) -> str:
  """``path``, after checking that a file can be written there (its folder may be made later)."""
  if files.is_remote(path):  # an object store: access is known at the first write
    return path
  if os.path.isdir(path) or (os.path.exists(path) and not os.access(path, os.W_OK)):
    raise OSError(errno.EACCES, f"cannot write {what} {path}")
  _check_folder(os.path.dirname(os.path.abspath(path)), what, path)
  return path


def _config_file(argv: Sequence[str]) -> str | None:
  for index, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1].partition(":")[0]
    if arg == "--config" and index + 1 < len(argv):
      return argv[index + 1].partition(":")[0]
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser (which also loads ``--config``), with every mistake in the flags or the config as one line."""
  path = _config_file(argv)
  if path and not os.path.isfile(path):
    fail(f"no config file {path} (relative paths start from {os.getcwd()}: run from the repository root or give "
         "the full path)")
  try:
    return flags.FLAGS(argv)
  except (KeyError, AttributeError) as error:  # ml_collections: an unknown --config.key, with the closest one
    _report(error, f"unknown config key {one_line(error)}")
  except Exception as error:  # pylint: disable=broad-except  (a flag's value, or the config file's code)
    from_config = "config file" in str(error) or isinstance(error.__context__, SyntaxError)
    while from_config and _wrapped(error) is not None:
      error = _wrapped(error)  # config_flags wraps the config's own error (a bad arg) twice
    message = one_line(error)
    required = re.fullmatch(r"flag --(\w+)=None: Flag --\w+ must have a value other than None\.", message)
    if required:
      message = f"--{required.group(1)} is required"
    _report(error, f"{path}: {message}" if from_config else message)


def _wrapped(error: BaseException) -> BaseException | None:
  return error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def _report(error: BaseException, message: str) -> NoReturn:
  if debugging():
    raise error
  fail(message)


def _full_text(record) -> str:
  """A log record's message with its exception's traceback, where the library that raised it shows."""
  text = record.getMessage()
  if record.exc_info and record.exc_info[0] is not None:
    text += "".join(traceback.format_exception(*record.exc_info))
  return text


def _quiet_libraries(record) -> bool:
  """Keeps Orbax's own log (per-save chatter, warnings about its metadata files, the tracebacks of a failed save or
  read, which the programs report in one line) and JAX's probe for a TPU out of the log."""
  if "/orbax/" in record.pathname or (record.name.startswith("asyncio") and "orbax" in _full_text(record)):
    return False  # asyncio: the tasks of a failed Orbax save or read, "exception was never retrieved"
  return record.levelno >= python_logging.WARNING or "Unable to initialize backend" not in record.getMessage()


def guarded(main: Callable[..., int | None], *args) -> int | None:
  """Runs ``main(*args)`` behind the error boundary; its return value."""
  try:
    return main(*args)
  except KeyboardInterrupt as interrupt:  # Ctrl-C; the training loop says where it stopped
    logging.flush()
    print(" ".join(["interrupted", *map(str, interrupt.args)]), file=sys.stderr, flush=True)
    sys.exit(EXIT_INTERRUPTED)
  except USER_ERRORS as error:
    if debugging():
      raise
    fail(one_line(error))


def _verbose(argv: list[str]) -> list[str]:
  """``argv`` without ``--verbose``, which turns debugging on."""
  if "--verbose" in argv:
    os.environ["HRNET_JAX_DEBUG"] = "1"
  return [arg for arg in argv if arg != "--verbose"]


def _closed_event_loop(error: BaseException) -> bool:
  return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def _from_orbax(report) -> bool:
  """Whether an exception reported from a thread or a collected object came from Orbax's own code."""
  code = getattr(report.object, "cr_code", None) if hasattr(report, "object") else None
  if code is not None and "/orbax/" in code.co_filename:
    return True
  trace = report.exc_traceback
  while trace is not None:
    if "/orbax/" in trace.tb_frame.f_code.co_filename:
      return True
    trace = trace.tb_next
  return False


def _quiet_library_threads() -> None:
  """Orbax's background threads print the traceback of a failed save or read as they end, and after a failed read
  TensorStore's callbacks still reach Orbax's closed event loop: those are dropped, because the failure reaches the
  program itself (``Checkpointer.poll``, ``restore_latest``) and is reported there in one line. Every other
  exception in a thread is shown."""
  excepthook, unraisablehook, threadhook = sys.excepthook, sys.unraisablehook, threading.excepthook
  sys.excepthook = lambda kind, value, trace: None if _closed_event_loop(value) else excepthook(kind, value, trace)
  sys.unraisablehook = lambda report: (None if _closed_event_loop(report.exc_value) or _from_orbax(report)
                                       else unraisablehook(report))
  threading.excepthook = lambda report: (None if _closed_event_loop(report.exc_value) or _from_orbax(report)
                                         else threadhook(report))


@contextlib.contextmanager
def _muted_stderr() -> Iterator[None]:
  """The process's stderr (file descriptor 2, where C++ libraries write) sent to /dev/null for the block."""
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as devnull:
      os.dup2(devnull.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
  """TensorFlow prints its oneDNN banner to the process's stderr while it loads, before any log level applies:
  wherever it is first imported, it loads with that stream muted (an error still raises, and shows after)."""

  def find_spec(self, name, path, target=None):
    del target
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is not None and spec.loader is not None:
      exec_module = spec.loader.exec_module

      def muted(module):
        with _muted_stderr():
          exec_module(module)
        keep_tensorflow_on_the_host(module)

      spec.loader.exec_module = muted
    return spec


def run(main: Callable[[list[str]], None]) -> None:
  """``app.run(main)`` behind the error boundary (absl programs), with the libraries' noise kept out."""
  def with_quiet_logs(argv):
    logging.get_absl_handler().addFilter(_quiet_libraries)
    guarded(main, argv)

  argv = _verbose(sys.argv)  # first: --verbose decides what follows
  if not debugging():
    if "tensorflow" not in sys.modules:
      sys.meta_path.insert(0, _QuietTensorFlow())
    _quiet_library_threads()
  app.run(with_quiet_logs, argv=argv, flags_parser=_parse_flags)


class ArgumentParser(argparse.ArgumentParser):
  """argparse with its errors as this package's one line (status 2, as argparse's own)."""

  def error(self, message: str) -> NoReturn:
    fail(message)


def run_argparse(main: Callable[[list[str]], int | None]) -> None:
  """``main(argv)`` behind the error boundary (argparse programs); its return value is the exit status."""
  sys.exit(guarded(main, _verbose(sys.argv[1:])) or 0)
