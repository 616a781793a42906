"""Expands a sweep (``experiments/sweeps.py``) into one training command per row, each with its own workdir:

    python experiments/launch.py table12_proxy --root /tmp/table12_proxy                      # run here, in turn
    python experiments/launch.py table12_pose --root gs://bucket/table12 --mode tpu --tpu my-pod --zone us-east5-a
    python experiments/launch.py fig10_cityscapes --root /runs/fig10 --mode slurm > fig10.sbatch
    python experiments/launch.py main_coco --root /runs/coco --mode print --set data.data_dir=/data/tfds

``--set key=value`` adds a config override to every row (data dirs, ``init_from``, a shorter ``total_steps``).
Rows whose workdir holds a finished run (``final_metrics.json``) are skipped; an interrupted row resumes from its
checkpoint when launched again. ``--rows a,b`` picks rows. Local runs write each row's log to
``<root>/<row>/train.log`` and report one line per row.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweeps  # noqa: E402  (experiments/ is a folder of scripts, not a package)
from hrnet_jax import cli, files  # noqa: E402
from hrnet_jax.engine.trainer import FINAL_METRICS  # noqa: E402

REPO = sweeps.REPO
FINISHED = FINAL_METRICS  # written by the trainer when a run reaches its last step


def _flag_value(value: Any) -> str:
  return value if isinstance(value, str) else repr(value)


def row_command(row: sweeps.Row, root: str, extra: dict[str, str], python: str = "python") -> list[str]:
  """The training command of ``row``: the row's config, its overrides, then ``extra`` (``--set``)."""
  command = [python, "-m", "hrnet_jax.train", f"--config={row.config}", f"--workdir={workdir(root, row)}"]
  command += [f"--config.{key}={_flag_value(value)}" for key, value in row.overrides.items() if key not in extra]
  if row.model:  # model options are merged into the config's own model.overrides
    command.append(f"--config.model.overrides={_flag_value(sweeps.model_overrides(row))}")
  return command + [f"--config.{key}={value}" for key, value in extra.items()]


def workdir(root: str, row: sweeps.Row | str) -> str:
  """The workdir of a row (or a row's name) under ``root`` (a local folder, or remote storage such as ``gs://``)."""
  name = row if isinstance(row, str) else row.name
  return f"{root.rstrip('/')}/{name}" if files.is_remote(root) else os.path.join(root, name)


def is_finished(root: str, row: sweeps.Row) -> bool:
  return (files.path(workdir(root, row)) / FINISHED).exists()


def run_locally(commands: dict[str, list[str]], root: str) -> int:
  """Runs the commands one after another; returns the number that failed."""
  failed = 0
  for k, (name, command) in enumerate(commands.items(), 1):
    folder = files.path(workdir(root, name))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "train.log"
    print(f"[{k}/{len(commands)}] {name}: running (log: {log})", flush=True)
    start = time.time()
    # The log is written as the run goes on a local disk; on remote storage (no appending) once the run ends.
    with open(log, "w") if not files.is_remote(root) else tempfile.TemporaryFile("w+") as f:
      returncode = subprocess.call(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
      if files.is_remote(root):
        f.seek(0)
        log.write_text(f.read())
    status = "done" if returncode == 0 else f"FAILED (exit {returncode}; see the log)"
    print(f"[{k}/{len(commands)}] {name}: {status} in {time.time() - start:.0f} s", flush=True)
    failed += returncode != 0
  return failed


def tpu_script(commands: dict[str, list[str]], tpu: str, zone: str) -> str:
  """One ``gcloud`` call per row, each running on every host of the pod (``--worker=all``), one row at a time."""
  lines = ["#!/bin/bash", "set -e"]
  for name, command in commands.items():
    remote = f"cd ~/hrnet_jax && {shlex.join(command)}"
    lines += [f"# {name}", f"gcloud compute tpus tpu-vm ssh {tpu} --zone={zone} --worker=all "
              f"--command={shlex.quote(remote)}"]
  return "\n".join(lines)


def slurm_script(commands: dict[str, list[str]], sweep: str, root: str) -> str:
  """An sbatch array job: task i runs row i."""
  rows = "\n".join(f"  {shlex.quote(shlex.join(command))}  # {name}" for name, command in commands.items())
  return "\n".join([
      "#!/bin/bash", f"#SBATCH --job-name={sweep}", f"#SBATCH --array=0-{len(commands) - 1}",
      f"#SBATCH --output={root}/%x_%a.log", "#SBATCH --gres=gpu:1", "", f"cd {REPO}", "COMMANDS=(", rows, ")",
      'eval "${COMMANDS[$SLURM_ARRAY_TASK_ID]}"'])


def parse_sets(items: list[str]) -> dict[str, str]:
  extra = {}
  for item in items:
    key, separator, value = item.partition("=")
    if not separator:
      raise ValueError(f"--set takes key=value, got {item!r}")
    extra[key] = value
  return extra


def main(argv: list[str] | None = None) -> int:
  parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("sweep", help=f"one of: {', '.join(sweeps.SWEEPS)}")
  parser.add_argument("--root", required=True, help="the sweep's folder: one workdir per row under it")
  parser.add_argument("--mode", choices=("local", "print", "tpu", "slurm"), default="local")
  parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
  parser.add_argument("--set", action="append", default=[], help="key=value config override for every row")
  parser.add_argument("--python", default=sys.executable, help="local mode: the interpreter (printed: python)")
  parser.add_argument("--tpu", default="$TPU_NAME")
  parser.add_argument("--zone", default="$ZONE")
  args = parser.parse_args(argv)
  sweep = sweeps.get(args.sweep)
  rows = [sweep.row(name) for name in args.rows.split(",")] if args.rows else list(sweep.rows)
  extra = parse_sets(args.set)
  python = args.python if args.mode == "local" else "python"
  pending = {row.name: row_command(row, args.root, extra, python) for row in rows if not is_finished(args.root, row)}
  skipped = [row.name for row in rows if row.name not in pending]
  if skipped:
    print(f"# finished already, skipped: {', '.join(skipped)}", file=sys.stderr)
  if args.mode == "local":
    failed = run_locally(pending, args.root)
    print(f"{len(pending) - failed} of {len(pending)} rows ran; {len(skipped)} were finished already; collect with: "
          f"python experiments/collect.py {args.sweep} --root {args.root}")
    return 1 if failed else 0
  if args.mode == "print":
    print("\n".join(shlex.join(command) for command in pending.values()))
  elif args.mode == "tpu":
    print(tpu_script(pending, args.tpu, args.zone))
  else:
    print(slurm_script(pending, args.sweep, args.root))
  return 0


if __name__ == "__main__":
  cli.run_argparse(main)
