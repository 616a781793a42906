"""Collects a sweep's results into the paper's layout: the paper's number, ours and the difference, per row.

    python experiments/collect.py table12_pose --root /runs/table12_pose [--output_dir experiments/results]

Reads each row's ``<root>/<row>/metrics.jsonl`` (the last logged value of the sweep's metric), prints the table as
Markdown and writes ``<sweep>.md``, ``<sweep>.csv`` and, for figure-style sweeps, ``<sweep>.png`` into
``--output_dir``. Unfinished rows are marked (not started / running, with the last step); a proxy sweep says
what stands in for the paper's setting, and its numbers are its own.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweeps  # noqa: E402  (experiments/ is a folder of scripts, not a package)
import launch  # noqa: E402
from hrnet_jax import cli, files  # noqa: E402
from launch import FINISHED  # noqa: E402


@dataclasses.dataclass
class Result:
  row: sweeps.Row
  value: float | None  # in the paper's unit
  step: int | None  # of the value
  status: str  # 'done', 'running' or 'not started'

  @property
  def difference(self) -> float | None:
    return None if self.value is None or self.row.paper is None else self.value - self.row.paper


def collect(sweep: sweeps.Sweep, root: str) -> list[Result]:
  from hrnet_jax.engine import metric_writer  # pylint: disable=import-outside-toplevel
  results = []
  for row in sweep.rows:
    workdir = files.path(launch.workdir(root, row))
    records = metric_writer.read_metrics(workdir) if (workdir / "metrics.jsonl").exists() else []
    logged = [r for r in records if sweep.metric in r]
    value = sweep.scale * logged[-1][sweep.metric] if logged else None
    step = logged[-1]["step"] if logged else (records[-1]["step"] if records else None)
    status = "done" if (workdir / FINISHED).exists() else "running" if records else "not started"
    results.append(Result(row, value, step, status))
  return results


def _number(value: float | None, signed: bool = False) -> str:
  if value is None:
    return "-"
  return f"{value:+.1f}" if signed else f"{value:.1f}"


def table_rows(sweep: sweeps.Sweep, results: list[Result]) -> tuple[list[str], list[list[str]]]:
  ours = f"proxy {sweep.unit}" if sweep.proxy else f"ours {sweep.unit}"
  header = ["row", "setting", f"paper {sweep.unit}", ours] + ([] if sweep.proxy else ["difference"])
  header += ["step", "status"]
  rows = []
  for result in results:
    status = result.status if result.status != "running" else f"running (step {result.step})"
    cells = [result.row.name, result.row.label, _number(result.row.paper), _number(result.value)]
    cells += [] if sweep.proxy else [_number(result.difference, signed=True)]
    rows.append(cells + ["-" if result.step is None else str(result.step), status])
  return header, rows


def markdown(sweep: sweeps.Sweep, results: list[Result], command: str) -> str:
  header, rows = table_rows(sweep, results)
  lines = [f"### {sweep.title}", ""]
  if sweep.proxy:
    lines += [f"Proxy: {sweep.proxy}. The paper column is the real table's, for reference; the proxy's numbers "
              "are its own and are not comparable to it.", ""]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cells) + " |" for cells in rows]
  lines += ["", f"Collected by `{command}`; metric `{sweep.metric}` (last logged value)."]
  return "\n".join(lines) + "\n"


def write_csv(sweep: sweeps.Sweep, results: list[Result]) -> str:
  header, rows = table_rows(sweep, results)
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(header)
  writer.writerows(rows)
  return buffer.getvalue()


def plot(sweep: sweeps.Sweep, results: list[Result], path: str) -> None:
  """Bars (grouped by series) or lines over the rows' x, ours filled and the paper's numbers outlined."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
  series = list(dict.fromkeys(r.row.series for r in results))
  positions = list(dict.fromkeys(r.row.x for r in results))
  figure, axes = pyplot.subplots(figsize=(max(5.0, 1.1 * len(positions) * max(len(series), 1) + 2), 3.6))
  bars_per_series = 1 if sweep.proxy else 2  # ours, and the paper's beside it
  slots = bars_per_series * len(series)
  width = 0.8 / slots
  ours_label = "proxy (ours)" if sweep.proxy else "ours"
  for k, name in enumerate(series):
    mine = [r for r in results if r.row.series == name]
    xs = [positions.index(r.row.x) for r in mine]
    ours = [r.value if r.value is not None else float("nan") for r in mine]
    paper = [r.row.paper if r.row.paper is not None else float("nan") for r in mine]
    if sweep.plot == "lines":
      axes.plot(xs, ours, "o-", label=f"{name} {ours_label}")
      if not sweep.proxy:
        axes.plot(xs, paper, "s--", fillstyle="none", label=f"{name} paper")
    else:
      offset = (bars_per_series * k - (slots - 1) / 2) * width
      axes.bar([x + offset for x in xs], ours, width, label=f"{name} {ours_label}")
      if not sweep.proxy:
        axes.bar([x + offset + width for x in xs], paper, width, fill=False, hatch="//", label=f"{name} paper")
  axes.set_xticks(range(len(positions)), positions, rotation=20 if len(positions) > 4 else 0)
  axes.set_ylabel(sweep.unit)
  axes.set_title(textwrap.fill(sweep.title, 80), fontsize=9)
  axes.legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def main(argv: list[str] | None = None) -> int:
  parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("sweep", help=f"one of: {', '.join(sweeps.SWEEPS)}")
  parser.add_argument("--root", required=True, help="the folder launch.py ran the sweep in")
  parser.add_argument("--output_dir", default="", help="where to write <sweep>.md/.csv/.png (default: --root)")
  args = parser.parse_args(argv)
  sweep = sweeps.get(args.sweep)
  output_dir = args.output_dir or args.root
  os.makedirs(output_dir, exist_ok=True)
  results = collect(sweep, args.root)
  command = f"python experiments/collect.py {args.sweep} --root {args.root}"
  text = markdown(sweep, results, command)
  print(text)
  with open(os.path.join(output_dir, f"{sweep.name}.md"), "w") as f:
    f.write(text)
  with open(os.path.join(output_dir, f"{sweep.name}.csv"), "w") as f:
    f.write(write_csv(sweep, results))
  if sweep.plot:
    plot(sweep, results, os.path.join(output_dir, f"{sweep.name}.png"))
  done = sum(r.status == "done" for r in results)
  print(f"{done} of {len(results)} rows finished; wrote {sweep.name}.md/.csv{'/.png' if sweep.plot else ''} to "
        f"{output_dir}")
  return 0


if __name__ == "__main__":
  cli.run_argparse(main)
