"""What the command-line programs share: config flags, one-line errors for mistakes a user can fix, quiet logs."""

from __future__ import annotations

import argparse
import logging as python_logging
import os
import re
import sys
from typing import Callable

from absl import app, flags, logging

# Errors a user can fix from the message alone: reported as one line, without a traceback (set HRNET_TRACEBACK=1
# to see it).
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FloatingPointError)


def one_line(error: BaseException) -> str:
  message = error
  while isinstance(message, BaseException) and message.args:  # KeyError/AttributeError wrap the real text
    message = message.args[0]
  return " ".join(str(message).split())


def fail(message: str) -> None:
  logging.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def parse_size(text: str) -> tuple[int, int]:
  """``HxW`` (e.g. ``256x192``) as (height, width), for argparse."""
  match = re.fullmatch(r"(\d+)x(\d+)", text)
  if not match:
    raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x192, got {text!r}")
  return int(match.group(1)), int(match.group(2))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a bad ``--config.key`` (ml_collections suggests the closest key) as one line."""
  try:
    return flags.FLAGS(argv)
  except (KeyError, AttributeError) as error:
    fail(f"unknown config key {one_line(error)}")


def _quiet_libraries(record) -> bool:
  """Keeps Orbax's per-save INFO chatter out of the log; its warnings and errors still show."""
  return record.levelno >= python_logging.WARNING or "/orbax/" not in record.pathname


def run(main: Callable[[list[str]], None]) -> None:
  """``app.run(main)`` with one-line user errors."""
  def guarded(argv):
    logging.get_absl_handler().addFilter(_quiet_libraries)
    try:
      main(argv)
    except USER_ERRORS as error:
      if os.environ.get("HRNET_TRACEBACK"):
        raise
      fail(one_line(error))

  app.run(guarded, flags_parser=_parse_flags)
