"""hrnet_jax against timm's HRNet (the official classification architecture) on this machine, side by side.

    python benchmarks/side_by_side.py --torch-python /path/to/venv-with-torch/bin/python \\
        --model hrnet_w18 --size 224x224 --batch 8 --rounds 3 --steps 3 --output benchmarks/side_by_side_cpu.jsonl

For each mode (train, infer), one worker process per contender is started and made ready one at a time (ours
compiled, PyTorch warmed up), so that nothing else runs while a compile is timed. The contenders then take turns:
each round, each runs ``--steps`` timed steps while the others wait on their pipes, idle. Figures are medians of all
timed steps; peak memory is each worker process's peak resident set (framework and runtime included, and for ours
XLA's compilation, which can exceed the step's own buffers: the benchmark command reports those). Both use every
core (``torch.set_num_threads(os.cpu_count())``; XLA's CPU client uses all cores). The contenders:
``ours`` (one module per layer), ``ours scanned`` (``scan_repeats``), ``pytorch`` (timm, eager, NCHW, float32: what
people run) and ``pytorch channels_last``. One JSON line per mode goes to ``--output``, a Markdown table to stdout.

``--torch-python``: an interpreter with torch and timm (default: this one); ours runs under this interpreter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

PROTOCOL = "@@ "  # worker lines to the parent start with this; anything else a worker prints is passed through
CONTENDERS = {  # name -> (framework, options)
    "ours": ("jax", {}),
    "ours scanned": ("jax", {"scan_repeats": True}),
    "pytorch": ("torch", {"channels_last": False}),
    "pytorch channels_last": ("torch", {"channels_last": True}),
}


def _say(message: dict[str, Any]) -> None:
  print(PROTOCOL + json.dumps(message), flush=True)


def _jax_step(args: argparse.Namespace, options: dict[str, Any]) -> tuple[Callable[[], None], dict[str, Any]]:
  import jax  # pylint: disable=import-outside-toplevel
  from hrnet_jax import benchmark  # pylint: disable=import-outside-toplevel
  step = benchmark.compile_step(args.model, "classification", args.size, args.batch, args.mode, "float32", options)
  return (lambda: jax.block_until_ready(step.run())), {
      "compile_seconds": step.compile_seconds, "flops_per_step": step.flops, "params": step.params,
      "version": f"jax {jax.__version__}"}


def _torch_step(args: argparse.Namespace, options: dict[str, Any]) -> tuple[Callable[[], None], dict[str, Any]]:
  import torch  # pylint: disable=import-outside-toplevel
  import torch_reference  # pylint: disable=import-outside-toplevel  (this folder)
  torch.set_num_threads(os.cpu_count())
  run, network = torch_reference.make_step(args.model, "classification", args.size, args.batch, args.mode,
                                           amp=False, channels_last=options["channels_last"], compile_model=False,
                                           device=torch.device("cpu"))
  start = time.perf_counter()
  run()  # the first step allocates and picks kernels; reported like a compile time
  return run, {"compile_seconds": time.perf_counter() - start, "params": sum(p.numel() for p in network.parameters()),
               "version": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}


def worker(args: argparse.Namespace) -> None:
  framework, options = CONTENDERS[args.worker]
  run, facts = (_jax_step if framework == "jax" else _torch_step)(args, options)
  for _ in range(args.warmup):
    run()
  _say({"ready": facts})
  for line in sys.stdin:
    if line.strip() == "quit":
      break
    times = []
    for _ in range(int(line)):
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
    _say({"times": times})
  _say({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})


class Worker:
  """A contender in its own process, driven over its pipes."""

  def __init__(self, name: str, python: str, args: argparse.Namespace):
    self.name = name
    command = [python, os.path.abspath(__file__), "--worker", name, "--mode", args.mode, "--model", args.model,
               "--size", f"{args.size[0]}x{args.size[1]}", "--batch", str(args.batch), "--warmup", str(args.warmup)]
    paths = [os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                    env=environment)
    self.facts = self._read()["ready"]
    self.times: list[float] = []

  def _read(self) -> dict[str, Any]:
    for line in self.process.stdout:
      if line.startswith(PROTOCOL):
        return json.loads(line[len(PROTOCOL):])
      sys.stderr.write(line)
    raise RuntimeError(f"{self.name}: the worker ended (exit {self.process.wait()}) before answering")

  def run(self, steps: int) -> None:
    self.process.stdin.write(f"{steps}\n")
    self.times += self._read()["times"]

  def finish(self) -> dict[str, Any]:
    self.process.stdin.write("quit\n")
    peak = self._read()["peak_rss_bytes"]
    self.process.wait()
    median = statistics.median(self.times)
    return {**self.facts, "step_ms": 1e3 * median, "step_ms_min": 1e3 * min(self.times),
            "step_ms_max": 1e3 * max(self.times), "timed_steps": len(self.times), "peak_rss_bytes": peak}


def compare(args: argparse.Namespace, torch_python: str) -> dict[str, Any]:
  workers = [Worker(name, torch_python if CONTENDERS[name][0] == "torch" else sys.executable, args)
             for name in CONTENDERS]
  for _ in range(args.rounds):
    for contender in workers:
      contender.run(args.steps)
  results = {contender.name: contender.finish() for contender in workers}
  for result in results.values():
    result["images_per_second"] = args.batch / (result["step_ms"] / 1e3)
  baseline = results["pytorch"]["images_per_second"]
  for result in results.values():
    result["speed_vs_pytorch"] = result["images_per_second"] / baseline
  return {"model": args.model, "size": f"{args.size[0]}x{args.size[1]}", "batch": args.batch, "mode": args.mode,
          "rounds": args.rounds, "steps_per_round": args.steps, "cpu_count": os.cpu_count(), "results": results,
          "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def table(lines: list[dict[str, Any]]) -> str:
  rows = ["| mode | contender | img/s | step (median) | vs PyTorch | first step / compile | peak RSS |",
          "|---|---|---|---|---|---|---|"]
  for line in lines:
    for name, r in line["results"].items():
      rows.append(f"| {line['mode']} | {name} | {r['images_per_second']:.2f} | {r['step_ms']:.0f} ms | "
                  f"{r['speed_vs_pytorch']:.2f}x | {r['compile_seconds']:.1f} s | "
                  f"{r['peak_rss_bytes'] / 2**30:.2f} GiB |")
  return "\n".join(rows)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="hrnet_w18")
  parser.add_argument("--size", default="224x224", help="input HxW")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--modes", default="train,infer")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=3, help="timed steps per contender per round")
  parser.add_argument("--warmup", type=int, default=1, help="untimed steps once ready")
  parser.add_argument("--torch-python", default=sys.executable)
  parser.add_argument("--output", help="append the JSON lines to this file")
  parser.add_argument("--worker", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
  parser.add_argument("--mode", help=argparse.SUPPRESS)
  args = parser.parse_args()
  args.size = tuple(int(v) for v in args.size.lower().split("x"))
  if args.worker:
    worker(args)
    return
  lines = []
  for mode in args.modes.split(","):
    args.mode = mode
    lines.append(compare(args, args.torch_python))
    if args.output:
      with open(args.output, "a") as f:
        f.write(json.dumps(lines[-1]) + "\n")
  print(table(lines))


if __name__ == "__main__":
  main()
