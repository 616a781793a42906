"""What each row of a sweep costs at full scale: multiply-accumulates per training image, images seen, total
training FLOPs, and hours at a sustained throughput:

    python experiments/compute.py table12_pose [--sustained-tflops 346]

Training FLOPs = 6 x MACs per image (2 FLOPs a MAC forward, backward about twice the forward) x images seen
(epochs x the official training-set size; ``total_steps`` x batch when set). MACs count every kernel tap, as the
official tables (``hrnet_jax.summary``). The default 346 TFLOP/s is 35% of an H100's 989 dense bf16 TFLOP/s.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweeps  # noqa: E402  (experiments/ is a folder of scripts, not a package)
from hrnet_jax import cli  # noqa: E402

# Official training-set sizes (what one epoch is).
TRAIN_EXAMPLES = {"imagenet2012": 1_281_167, "coco_keypoints": 149_813, "semantic_segmentation/cityscapes": 2_975,
                  "semantic_segmentation/pascal_context": 4_998, "semantic_segmentation/lip": 30_462,
                  "coco_instances": 117_266, "synthetic_shapes": 4_096}


def input_size(config) -> tuple[int, int]:
  """The network's training input (h, w), as the config's recipe declares it."""
  from hrnet_jax import tasks  # pylint: disable=import-outside-toplevel
  return tuple(tasks.recipes()[config.data.preprocess].batch_keys(config.data)[0]["image"].shape[:2])


def row_cost(row: sweeps.Row) -> dict[str, float]:
  from hrnet_jax import tasks  # pylint: disable=import-outside-toplevel
  from hrnet_jax.model import summary  # pylint: disable=import-outside-toplevel
  config = sweeps.row_config(row)
  model = tasks.create(config).create_model()
  size = input_size(config)
  macs = sum(summary.conv_macs(model, (1, *size, 3)).values())
  examples = TRAIN_EXAMPLES.get(config.data.name)
  if config.total_steps:
    images = config.total_steps * config.global_batch_size
  elif examples:
    images = config.num_epochs * (examples // config.global_batch_size) * config.global_batch_size
  else:
    images = float("nan")
  return {"size": size, "gmacs": macs / 1e9, "images": images, "exaflops": 6 * macs * images / 1e18}


def main(argv: list[str] | None = None) -> int:
  parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("sweep", help=f"one of: {', '.join(sweeps.SWEEPS)}")
  parser.add_argument("--sustained-tflops", type=float, default=346.0)
  args = parser.parse_args(argv)
  sweep = sweeps.get(args.sweep)
  print(f"| row | input | GMACs / image | images seen (M) | training EFLOP | hours at {args.sustained_tflops:g} "
        f"TFLOP/s |\n|---|---|---|---|---|---|")
  for row in sweep.rows:
    cost = row_cost(row)
    hours = cost["exaflops"] * 1e18 / (args.sustained_tflops * 1e12) / 3600
    print(f"| {row.name} | {cost['size'][0]}x{cost['size'][1]} | {cost['gmacs']:.2f} | {cost['images'] / 1e6:.1f} | "
          f"{cost['exaflops']:.2f} | {hours:.1f} |")
  return 0


if __name__ == "__main__":
  cli.run_argparse(main)
