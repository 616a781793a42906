"""The paper's tables as sweeps (issue #8): every ablation row builds the network the paper describes, and a
proxy sweep runs end to end: launch, train, evaluate, collect into a table and a plot."""

import csv
import os
import re
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO
from hrnet_jax import model as models
from hrnet_jax import tasks

sys.path.insert(0, os.path.join(REPO, "experiments"))
import collect  # noqa: E402
import launch  # noqa: E402
import sweeps  # noqa: E402

ABLATIONS = ("table12_pose", "table12_segmentation", "fig9_pose_resolution", "fig10_cityscapes",
             "fig10_pascal_context", "fig10_pose", "table12_proxy", "fig10_proxy")


_STRUCTURES: dict = {}


def _structure(row: sweeps.Row) -> dict:
  """What a row's network is made of, read from its parameters (shapes only) and its modules; rows that differ
  only in their output count (Cityscapes and PASCAL-Context) share one trace."""
  config = sweeps.row_config(row)
  options = {k: v for k, v in config.model.overrides.items() if not k.startswith("num_")}
  key = (config.task, config.model.name, tuple(sorted(options.items())))
  if key not in _STRUCTURES:
    model = tasks.create(config).create_model()
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    flat = flax.traverse_util.flatten_dict(params["backbone"], sep="/")
    head = flax.traverse_util.flatten_dict(params["head"], sep="/")
    first_head_conv = min((k for k in head if k.endswith("kernel")), key=lambda k: (len(k), k))
    _STRUCTURES[key] = {
        "fusions": sum(1 for name, sub in params["backbone"].items()
                       if name.startswith("stage") and any(k.startswith("fuse_layers") for k in sub)),
        "stage2_branches": len({k.split("/")[1].split("_")[1] for k in flat if k.startswith("stage2_0/branches_")}),
        # Downsampling fusions: chains of strided 3x3 convs (fuse_layers_i_j_k_0) or one 1x1 conv (fuse_layers_i_j_0).
        "strided_downsampling": any(re.search(r"fuse_layers_(\d)_(\d)_\d_0/", k) for k in flat),
        "bilinear_downsampling": any(int(m.group(1)) > int(m.group(2)) for k in flat
                                     for m in [re.search(r"fuse_layers_(\d)_(\d)_0/kernel", k)] if m),
        "fusion_op": model.backbone.fusion.op,
        "head_input_channels": head[first_head_conv].shape[-2],
        "head_width": head[first_head_conv].shape[-1],
        "head": model.head.representation, "head_branch": model.head.branch,
        "conv_init": model.backbone.conv_init,
    }
  return _STRUCTURES[key]


@pytest.mark.parametrize("sweep_name", ABLATIONS)
def test_every_ablation_row_builds_the_network_the_paper_describes(sweep_name):
  sweep = sweeps.get(sweep_name)
  for row in sweep.rows:
    got = _structure(row)
    options = {**sweeps.model_overrides(row)}
    # Table 12: fusion in every module (W32/W48: 1 + 4 + 3 = 8), in the last module of each stage (3), or only in
    # the network's last module (1).
    modules = sum(stage.num_modules for stage in models.VARIANTS[sweeps.row_config(row).model.name].stages[1:])
    expected_fusions = {"every": modules, "across": 3, "final": 1}[options.get("fuse_schedule", "every")]
    assert got["fusions"] == expected_fusions, (row.name, got)
    assert got["stage2_branches"] == (4 if options.get("four_streams") else 2), (row.name, got)
    bilinear = options.get("fusion_downsample") == "bilinear"
    assert not (got["strided_downsampling"] and bilinear) and not (got["bilinear_downsampling"] and not bilinear)
    # The official pose network's last module computes only the 1x output: "final" fusion there has no downsampling.
    assert got["strided_downsampling"] or got["bilinear_downsampling"] or expected_fusions == 1, (row.name, got)
    assert got["fusion_op"] == options.get("fusion_op", "sum")
    assert got["head"] == options.get("head", "v1" if "coco_pose" in row.config else "v2")
    assert got["head_branch"] == options.get("head_branch", 0)
    assert got["conv_init"] == options.get("conv_init", "he")
    if sweep_name.startswith("fig10") or sweep_name == "fig9_pose_resolution":
      width = sweeps.row_config(row).model.name
      channels = {"hrnet_w18": 18, "hrnet_w32": 32, "hrnet_w48": 48, "hrnet_tiny": 8}[width]
      branches = 2 ** np.arange(4) * channels
      # V1 reads one branch (Fig. 9: the 1x, 2x or 4x one); V1h widens the 1x branch to 15C by a 1x1 conv; V2
      # concatenates all four, upsampled.
      expected = {"v1": branches[got["head_branch"]], "v1h": branches[0], "v2": branches.sum()}[got["head"]]
      assert got["head_input_channels"] == expected, (row.name, got)
      if got["head"] == "v1h":
        assert got["head_width"] == 15 * channels


def test_launch_prints_one_command_per_row_for_a_pod_and_a_slurm_array(tmp_path, capsys):
  assert launch.main(["table12_pose", "--root", str(tmp_path), "--mode", "tpu", "--tpu", "pod"]) == 0
  script = capsys.readouterr().out
  assert script.count("--worker=all") == 6 and "fuse_schedule" in script
  (tmp_path / "within").mkdir()
  (tmp_path / "within" / launch.FINISHED).write_text("{}")
  assert launch.main(["table12_pose", "--root", str(tmp_path), "--mode", "slurm",
                      "--set", "data.data_dir=/data"]) == 0
  captured = capsys.readouterr()
  assert "#SBATCH --array=0-4" in captured.out and "within" in captured.err  # the finished row is skipped
  assert captured.out.count("--config.data.data_dir=/data") == 5


def _launch_and_collect(sweep_name, data_dir, root, output, steps, rows=""):
  common = ["--root", root, "--set", f"data.data_dir={data_dir}", "--set", f"total_steps={steps}",
            "--set", "data.eval_split=validation[:128]", "--set", "num_devices=1", "--set", f"log_every={steps}"]
  assert launch.main([sweep_name, *common, *(["--rows", rows] if rows else [])]) == 0
  assert collect.main([sweep_name, "--root", root, "--output_dir", output]) == 0
  with open(os.path.join(output, f"{sweep_name}.csv")) as f:
    return list(csv.DictReader(f))


def test_proxies_of_table12_and_fig10_launch_train_evaluate_and_collect(data_dir, tmp_path, capsys):
  """A row of each proxy through launch -> train -> evaluate -> collect, into a table and a plot; the other rows
  are left unlaunched to show how unfinished rows are reported. (A row costs ~50 s of compiling on 2 cores; the two
  rows here are the same network, HRNetV2 with fusion everywhere, so the second reuses the first's compiled
  programs. The slow test below runs both proxies whole; experiments/results holds their committed output.)"""
  for sweep_name, row in (("table12_proxy", "within"), ("fig10_proxy", "v2")):
    root, output = str(tmp_path / sweep_name), str(tmp_path / "collected")
    rows = _launch_and_collect(sweep_name, data_dir, root, output, steps=8, rows=row)
    assert [(r["row"], r["status"], r["step"]) for r in rows] == [
        (r.name, "done" if r.name == row else "not started", "8" if r.name == row else "-")
        for r in sweeps.get(sweep_name).rows]
    assert 0 < float(next(r for r in rows if r["row"] == row)["proxy mIoU"]) <= 100
    table = open(os.path.join(output, f"{sweep_name}.md")).read()
    assert "Proxy: hrnet_tiny" in table and "not comparable" in table
    assert os.path.getsize(os.path.join(output, f"{sweep_name}.png")) > 5000
  capsys.readouterr()
  assert launch.main(["fig10_proxy", "--root", str(tmp_path / "fig10_proxy"), "--mode", "print"]) == 0
  printed = capsys.readouterr()
  assert "skipped: v2" in printed.err  # a finished row is not run again; the others are
  assert printed.out.count("hrnet_jax.train") == 2 and "/v2 " not in printed.out


@pytest.mark.slow
@pytest.mark.parametrize("sweep_name", ["table12_proxy", "fig10_proxy"])
def test_whole_proxy_sweeps_run_end_to_end(sweep_name, data_dir, tmp_path):
  rows = _launch_and_collect(sweep_name, data_dir, str(tmp_path / "runs"), str(tmp_path / "collected"), steps=100)
  assert len(rows) == len(sweeps.get(sweep_name).rows) and all(r["status"] == "done" for r in rows)
  assert os.path.getsize(tmp_path / "collected" / f"{sweep_name}.png") > 5000


def test_collect_marks_unfinished_rows(tmp_path):
  sweep = sweeps.get("main_coco")
  running = tmp_path / "w32_256x192"
  running.mkdir()
  (running / "metrics.jsonl").write_text('{"step": 10, "train/loss": 1.0}\n{"step": 20, "eval/AP": 0.5}\n')
  results = {r.row.name: r for r in collect.collect(sweep, str(tmp_path))}
  assert results["w32_256x192"].status == "running" and results["w32_256x192"].value == pytest.approx(50.0)
  assert results["w32_256x192"].difference == pytest.approx(50.0 - 74.4)
  assert results["w48_384x288"].status == "not started" and results["w48_384x288"].value is None
  text = collect.markdown(sweep, list(results.values()), "cmd")
  assert "| w32_256x192 | w32_256x192 | 74.4 | 50.0 | -24.4 | 20 | running (step 20) |" in text


def test_the_detection_rows_are_the_configs_the_paper_numbers_belong_to():
  rows = {row.name: row for row in sweeps.get("main_detection").rows}
  assert rows["faster_rcnn_w32_2x"].paper == 41.4 and rows["cascade_rcnn_w40_20e"].paper == 43.8
  assert rows["fcos_w32_2x_ms"].paper == 41.9
  for name, epochs, milestones in (("faster_rcnn_w32_2x", 24, (16, 22)), ("cascade_rcnn_w18_20e", 20, (16, 19)),
                                   ("fcos_w18_1x", 12, (8, 11))):
    config = sweeps.row_config(rows[name])
    head, width = name.rsplit("_", 2)[0], name.rsplit("_", 2)[1]
    assert (config.model.overrides.head, config.model.name) == (head, f"hrnet_{width}"), name
    assert (config.num_epochs, tuple(config.schedule.milestones)) == (epochs, milestones), name
  assert sweeps.row_config(rows["fcos_w32_2x_ms"]).data.short_sides == (640, 800)
  masks = {row.name: row for row in sweeps.get("main_instance_segmentation").rows}
  assert masks["mask_rcnn_w32_2x"].paper == 37.8 and masks["cascade_mask_rcnn_w40_20e"].paper == 39.3
  assert rows["mask_rcnn_w32_2x"].paper == 42.5  # its box AP
  config = sweeps.row_config(masks["cascade_mask_rcnn_w18_20e"])
  assert config.model.overrides.head == "cascade_mask_rcnn" and config.data.masks and config.num_epochs == 20
  assert sweeps.get("main_instance_segmentation").metric == "eval/segm_AP"


def test_fig10_detection_builds_each_pyramid_from_its_representation():
  widths = {}
  for row in sweeps.get("fig10_detection").rows:
    model = tasks.create(sweeps.row_config(row)).create_model()
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]["head"]["neck"]
    widths[row.name] = (params["reduction_conv"]["kernel"].shape[-2], "widen_conv" in params)
  # V1: the 1x branch (C channels); V1h: widened to 15C first; V2p: the four branches concatenated (15C).
  assert widths == {"w18_v1": (18, False), "w18_v1h": (270, True), "w18_v2": (270, False),
                    "w32_v1": (32, False), "w32_v1h": (480, True), "w32_v2": (480, False)}
