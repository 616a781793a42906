"""Seeing inside a run and starting it fast (issue #17): where each interval's time went, a profiler trace, the
overview of the starting weights, and the persistent compilation cache that spares a repeated run its compilation.
(The pictures and hyperparameters in TensorBoard are checked on the pose and segmentation runs of their tests.)"""

import glob
import os
import re

from helpers import REPO, run_module
from hrnet_jax.engine import metric_writer

DEMO = os.path.join(REPO, "configs", "demo.py")


def short_run(workdir, data_dir, cache, *extra):
  return run_module("train", f"--config={DEMO}", f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
                    "--config.total_steps=3", "--config.log_every=1", "--config.global_batch_size=16",
                    "--config.eval_batch_size=64", "--config.data.image_size=32",
                    "--config.data.eval_split=validation[:64]", f"--config.compilation_cache_dir={cache}", *extra)


def how_the_step_was_made(log: str) -> str:
  return re.search(r"train step traced and lowered in [\d.]+s, (.+) in [\d.]+s", log).group(1)


def test_a_repeated_run_loads_its_compiled_step_and_each_interval_says_where_its_time_went(data_dir, tmp_path):
  cache = str(tmp_path / "xla_cache")
  first = short_run(tmp_path / "first", data_dir, cache, "--config.profile_steps=1")
  assert first.returncode == 0, first.stderr[-3000:]
  second = short_run(tmp_path / "second", data_dir, cache)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f"compilation cache: {cache}" in second.stderr
  assert how_the_step_was_made(first.stderr) == "compiled"
  assert how_the_step_was_made(second.stderr) == "loaded from the compilation cache"

  rows = metric_writer.read_metrics(str(tmp_path / "first"))
  split = [{k: v for k, v in row.items() if k.startswith("time/")} for row in rows if "train/loss" in row]
  assert len(split) == 3 and all(set(times) == {"time/data_seconds", "time/train_step_seconds", "time/eval_seconds",
                                                "time/checkpoint_seconds"} for times in split)
  assert all(v >= 0 for times in split for v in times.values())
  assert re.search(r"step 1/3 \| .* \| data \d+% eval \d+% checkpoint \d+% step \d+% \| ETA", first.stderr)

  assert glob.glob(str(tmp_path / "first" / "tensorboard" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  assert "profile of steps 3-3 written to" in first.stderr
  overview = (tmp_path / "first" / "parameters.txt").read_text()
  assert overview.startswith("initialised (seed 0)") and "| Mean" in overview and "| Std" in overview
