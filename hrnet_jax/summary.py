"""Parameter count, multiply-accumulates and a per-stage breakdown of any variant and task:

    python -m hrnet_jax.summary hrnet_w32 --task pose --size 256x192
    python -m hrnet_jax.summary hrnet_w48 --task segmentation --size 512x1024 --override head=ocr

Two MAC counts are printed, because they differ by a few percent and papers use the first (see
``hrnet_jax.model.summary``): every kernel tap, as PyTorch counters and the paper; and XLA's cost analysis / 2.
"""

from __future__ import annotations

import dataclasses
import json

from hrnet_jax import cli, tasks
from hrnet_jax.model import VARIANTS
from hrnet_jax.model.summary import summarize


def main(argv: list[str] | None = None) -> None:
  parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("name", choices=sorted(VARIANTS), metavar="NAME", help=f"one of {', '.join(VARIANTS)}")
  parser.add_argument("--task", default="classification", choices=sorted(tasks.TASKS))
  parser.add_argument("--size", type=cli.parse_size, default=(224, 224), help="input HxW (default 224x224)")
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  cli.add_override_flag(parser)
  args = parser.parse_args(argv)
  summary = summarize(args.name, args.task, args.size, **cli.model_overrides(parser, args.override))
  print(json.dumps(dataclasses.asdict(summary)) if args.json else summary.table())


if __name__ == "__main__":
  cli.run_argparse(main)
