"""The benchmark command on a tiny model: every field of its JSON line, for training and inference."""

import dataclasses
import json

import pytest

from hrnet_jax import benchmark
from hrnet_jax.model import summary
from helpers import REPO, run_module

TINY_HEAD = ["--override", "num_classes=4", "--override", "head_channels=[8,16,32,64]",
             "--override", "final_channels=64"]


def test_benchmark_cli_writes_every_field(tmp_path):
  output = tmp_path / "results.jsonl"
  result = run_module("benchmark", "--model=hrnet_tiny", "--size=32x32", "--batch=4", "--mode=train", "--steps=3",
                      "--warmup=1", "--peak-tflops=1.5", f"--output={output}", *TINY_HEAD)
  assert result.returncode == 0, result.stderr[-3000:]
  line = json.loads(output.read_text())
  assert json.loads(result.stdout.strip().splitlines()[-1]) == line
  assert set(line) == {f.name for f in dataclasses.fields(benchmark.BenchmarkResult)}
  assert line["mode"] == "train" and line["devices"] == 1 and line["timed_steps"] == 3
  assert line["images_per_second"] == pytest.approx(4 / (line["step_ms"] / 1e3))
  assert line["step_ms_min"] <= line["step_ms"] <= line["step_ms_max"]
  assert line["compile_seconds"] > 0 and line["flops_per_step"] > 0 and line["peak_memory_bytes"] > 0
  assert line["mfu"] == pytest.approx(line["achieved_tflops"] / 1.5)
  assert "img/s" in result.stderr and "MFU" in result.stderr


def test_inference_flops_are_per_device_on_eight_devices():
  overrides = {"num_classes": 4, "head_channels": (8, 16, 32, 64), "final_channels": 64}
  infer = benchmark.run_benchmark("hrnet_tiny", size=(32, 32), batch=16, mode="infer", steps=2, warmup=1,
                                  overrides=overrides)
  assert infer.devices == 8 and infer.mfu is None and infer.images_per_second > 0
  # Each device runs the forward pass on 16 / 8 = 2 images: twice the FLOPs of one image's forward.
  one_image = summary.summarize("hrnet_tiny", size=(32, 32), **overrides).xla_macs * 2
  assert infer.flops_per_step == pytest.approx(2 * one_image, rel=0.05)  # not 16 images: per device


def test_scanned_repeats_report_the_same_model_flops():
  """XLA's cost analysis counts a loop body once: the FLOPs of a scanned network come from its unrolled twin."""
  overrides = {"num_classes": 4, "head_channels": (8, 16, 32, 64), "final_channels": 64}
  results = [benchmark.run_benchmark("hrnet_tiny", size=(32, 32), batch=8, mode="infer", steps=1, warmup=0,
                                     overrides={**overrides, "scan_repeats": scan}) for scan in (False, True)]
  assert results[1].overrides["scan_repeats"] and results[1].params == results[0].params
  assert results[1].flops_per_step == results[0].flops_per_step > 0


def test_pipeline_benchmark_reports_examples_per_second_per_core(data_dir):
  result = run_module("data.benchmark", f"--config={REPO}/configs/demo.py", f"--config.data.data_dir={data_dir}",
                      "--batches=3", "--warmup=1")
  assert result.returncode == 0, result.stderr[-3000:]
  line = json.loads(result.stdout.strip().splitlines()[-1])
  assert line["train_examples"] == 3 * 32 and line["eval_examples"] == 3 * 128
  assert line["train_examples_per_second"] > 0 and line["cores"] >= 1
  assert line["train_examples_per_second_per_core"] == pytest.approx(line["train_examples_per_second"] / line["cores"])


def test_summary_and_benchmark_know_the_ocr_head(capsys):
  """Parameters and MACs of an OCR model (the head's part apart), and its forward pass timed on 8 devices (its train
  step runs in the segmentation task's end-to-end test)."""
  from hrnet_jax import summary as summary_command
  from hrnet_jax.model import count_parameters, create_model
  ocr = {"head": "ocr", "num_classes": 5, "ocr_mid_channels": 16, "ocr_key_channels": 8}
  summary_command.main(["hrnet_tiny", "--task=segmentation", "--size=32x32", "--json",
                        *[f"--override={k}={v}" for k, v in ocr.items()]])
  printed = json.loads(capsys.readouterr().out)
  assert printed["params"] == count_parameters(create_model("hrnet_tiny", task="segmentation", **ocr))
  assert printed["stage_params"]["head"] > 0 and printed["stage_macs"]["head"] > 0
  result = benchmark.run_benchmark("hrnet_tiny", task="segmentation", size=(32, 32), batch=8, mode="infer",
                                   steps=1, warmup=0, overrides=ocr)
  assert result.params == printed["params"] and result.step_ms > 0 and result.flops_per_step > 0


def test_the_benchmark_runs_mask_rcnn_with_its_data_option():
  """``--override data.masks=true`` reaches the data config (Mask R-CNN refuses to start without it): the tiny
  detector's inference step, detections and masks inside, is timed (its train step runs in the two-stage tests)."""
  options = {"head": "mask_rcnn", "num_classes": 4, "fpn_channels": 16, "rpn_channels": 16, "roi_fc": 32,
             "mask_channels": 8, "anchor_scales": [2.0], "proposal_count": 50, "train_proposal_count": 50,
             "roi_samples": 32}
  with pytest.raises(ValueError, match="set data.masks=True"):
    benchmark.run_benchmark("hrnet_tiny", task="detection", size=(64, 64), batch=8, mode="infer", steps=1, warmup=0,
                            overrides=options)
  result = benchmark.run_benchmark("hrnet_tiny", task="detection", size=(64, 64), batch=8, mode="infer", steps=1,
                                   warmup=0, overrides={**options, "data.masks": True, "data.mask_size": 16})
  assert result.step_ms > 0 and result.flops_per_step > 0 and result.overrides["data.masks"] is True
