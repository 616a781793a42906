"""Train and evaluate any task:

    python -m hrnet_jax.train --config configs/<file>.py:<arg> --workdir DIR [--config.key=value ...]

Rerunning the same command resumes from the latest checkpoint in DIR. Multi-host: automatic on TPU pods and
under SLURM; elsewhere pass --coordinator_address, --num_processes and --process_id to every process.
"""

import os
import sys

import logging as python_logging

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/demo.py:classification.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics.jsonl and TensorBoard events go.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.mark_flags_as_required(["config", "workdir"])

# Errors a user can fix from the message alone: reported as one line, without a traceback.
_USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FloatingPointError)


def _one_line(error: BaseException) -> str:
  message = error
  while isinstance(message, BaseException) and message.args:  # KeyError/AttributeError wrap the real text
    message = message.args[0]
  return " ".join(str(message).split())


def _fail(message: str) -> None:
  logging.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a bad ``--config.key`` (ml_collections suggests the closest key) as one line."""
  try:
    return flags.FLAGS(argv)
  except (KeyError, AttributeError) as error:
    _fail(f"unknown config key {_one_line(error)}")


def _quiet_libraries(record) -> bool:
  """Keeps Orbax's per-save INFO chatter out of the log; its warnings and errors still show."""
  return record.levelno >= python_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().addFilter(_quiet_libraries)
  from hrnet_jax import sharding, trainer  # pylint: disable=import-outside-toplevel

  sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except _USER_ERRORS as error:
    if os.environ.get("HRNET_TRACEBACK"):
      raise
    _fail(_one_line(error))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
