"""The PyTorch side of the comparisons (GPU, and ``side_by_side.py`` on CPU): timm's HRNet, timed the way
``hrnet_jax.benchmark`` times ours.

    python benchmarks/torch_reference.py --model hrnet_w32 --task classification --size 224x224 --batch 128 \\
        --mode train --amp --channels-last [--compile] --output benchmarks/gpu.jsonl

Classification is timm's model as it is. Pose and segmentation put the official heads on timm's HRNet features
(``features_only``, the four branch outputs): pose a 1x1 conv on the 1/4 branch to 17 heatmaps with an MSE loss;
segmentation the V2 head (all branches upsampled to 1/4 and concatenated, 1x1 conv + BN + ReLU, 1x1 conv to 19
classes, bilinear upsampling to the input, cross-entropy). timm's fusion upsamples by nearest neighbour where the
official segmentation code is bilinear: the same convolutions, slightly cheaper elementwise work. Parameters:
classification W32 41,232,680 and segmentation W48 65,859,379, both the official counts; pose W32 29,306,097
against the official 28,536,113, because timm's last module also fuses into the three lower branches. The optimizer is
the official ImageNet one (SGD, Nesterov, weight decay 1e-4). Steps are timed one by one between
``torch.cuda.synchronize()`` calls after the warm-up (with ``--compile``, the first step's time is reported as the
compile time); figures are medians. One JSON line per run, appended to ``--output``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from typing import Callable

import timm
import torch
from torch import nn
import torch.nn.functional as F


class DenseModel(nn.Module):
  """timm's HRNet branches and an official dense head (pose: V1 on the 1/4 branch; segmentation: V2)."""

  def __init__(self, model: str, task: str, num_outputs: int):
    super().__init__()
    self.task = task
    self.backbone = timm.create_model(model, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    channels = self.backbone.feature_info.channels()
    if task == "pose":
      self.head = nn.Conv2d(channels[0], num_outputs, 1)
    else:
      width = sum(channels)
      self.head = nn.Sequential(nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                nn.Conv2d(width, num_outputs, 1))

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    branches = self.backbone(images)
    if self.task == "pose":
      return self.head(branches[0])
    size = branches[0].shape[-2:]
    mixed = torch.cat([branches[0]] + [F.interpolate(b, size=size, mode="bilinear") for b in branches[1:]], dim=1)
    return F.interpolate(self.head(mixed), size=images.shape[-2:], mode="bilinear")


NUM_OUTPUTS = {"classification": 1000, "pose": 17, "segmentation": 19}


def build(model: str, task: str) -> nn.Module:
  if task == "classification":
    return timm.create_model(model, num_classes=NUM_OUTPUTS[task])
  return DenseModel(model, task, NUM_OUTPUTS[task])


def synthetic_batch(task: str, batch: int, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, ...]:
  images = torch.randn(batch, 3, *size, device=device)
  if task == "classification":
    return images, torch.randint(0, NUM_OUTPUTS[task], (batch,), device=device)
  if task == "pose":
    return images, torch.rand(batch, NUM_OUTPUTS[task], size[0] // 4, size[1] // 4, device=device)
  return images, torch.randint(0, NUM_OUTPUTS[task], (batch, *size), device=device)


def loss_fn(task: str, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
  if task == "pose":
    return F.mse_loss(outputs.float(), target)
  return F.cross_entropy(outputs.float(), target)


def _synchronize(device: torch.device) -> None:
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def make_step(model: str, task: str, size: tuple[int, int], batch: int, mode: str, amp: bool, channels_last: bool,
              compile_model: bool, device: torch.device) -> tuple[Callable[[], None], nn.Module]:
  """One training step (forward, backward, SGD update) or one inference forward pass on a synthetic batch."""
  network = build(model, task).to(device)
  memory_format = torch.channels_last if channels_last else torch.contiguous_format
  network = network.to(memory_format=memory_format)
  images, target = synthetic_batch(task, batch, size, device)
  images = images.contiguous(memory_format=memory_format)
  optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
  forward = torch.compile(network) if compile_model else network
  autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

  def step():
    if mode == "train":
      network.train()
      optimizer.zero_grad(set_to_none=True)
      with autocast:
        loss = loss_fn(task, forward(images), target)
      loss.backward()
      optimizer.step()
    else:
      network.eval()
      with torch.no_grad(), autocast:
        forward(images)
  return step, network


def run(model: str, task: str, size: tuple[int, int], batch: int, mode: str, amp: bool, channels_last: bool,
        compile_model: bool, steps: int, warmup: int, device: torch.device) -> dict:
  step, network = make_step(model, task, size, batch, mode, amp, channels_last, compile_model, device)
  start = time.perf_counter()
  step()
  _synchronize(device)
  first_step = time.perf_counter() - start
  for _ in range(warmup):
    step()
  _synchronize(device)
  if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats(device)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    _synchronize(device)
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {
      "framework": "pytorch", "model": model, "task": task, "size": f"{size[0]}x{size[1]}", "batch": batch,
      "mode": mode, "dtype": "bfloat16 autocast" if amp else "float32", "channels_last": channels_last,
      "torch_compile": compile_model, "device_kind": torch.cuda.get_device_name(device) if device.type == "cuda"
      else "cpu", "images_per_second": batch / median, "step_ms": 1e3 * median, "step_ms_min": 1e3 * min(times),
      "step_ms_max": 1e3 * max(times), "timed_steps": steps, "first_step_seconds": first_step,
      "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
      "params": sum(p.numel() for p in network.parameters()), "torch_version": torch.__version__,
      "timm_version": timm.__version__,
      "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="hrnet_w32")
  parser.add_argument("--task", default="classification", choices=sorted(NUM_OUTPUTS))
  parser.add_argument("--size", default="224x224", help="input HxW")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--mode", default="train", choices=("train", "infer"))
  parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (parameters stay float32)")
  parser.add_argument("--channels-last", action="store_true")
  parser.add_argument("--compile", action="store_true", help="torch.compile the model")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--output", help="append the JSON line to this file")
  args = parser.parse_args()
  height, width = (int(v) for v in args.size.lower().split("x"))
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  result = run(args.model, args.task, (height, width), args.batch, args.mode, args.amp, args.channels_last,
               args.compile, args.steps, args.warmup, device)
  line = json.dumps(result)
  print(line)
  if args.output:
    with open(args.output, "a") as f:
      f.write(line + "\n")


if __name__ == "__main__":
  main()
