"""Seeing inside a run and starting it fast (issue #17): where each interval's time went, a profiler trace, the
overview of the starting weights, and the persistent compilation cache that spares a repeated run its compilation.
(The pictures and hyperparameters in TensorBoard are checked on the pose and segmentation runs of their tests.)"""

import glob
import os
import re

from engine_runs import SHORT_RUN, finish, one_device_run, run_float64  # noqa: F401  (a fixture)
from hrnet_jax.engine import metric_writer


def how_the_step_was_made(log: str) -> str:
  return re.search(r"train step traced and lowered in [\d.]+s, (.+) in [\d.]+s", log).group(1)


def test_a_repeated_run_loads_its_compiled_step_and_each_interval_says_where_its_time_went(data_dir, tmp_path,
                                                                                          one_device_run):
  """The session's short float64 run again, in a new folder and with a profile: its train step is loaded from the
  compilation cache the first run wrote into (the session's, named here as a user names one)."""
  cache = os.environ["JAX_COMPILATION_CACHE_DIR"]  # conftest's, shared by the session's runs
  workdir = tmp_path / "again"
  log = finish(run_float64(str(workdir), data_dir, devices=1, compilation_cache_dir=cache, profile_steps=1))
  assert f"compilation cache: {cache}" in log
  assert how_the_step_was_made(log) == "loaded from the compilation cache"

  rows = metric_writer.read_metrics(str(workdir))
  split = [{k: v for k, v in row.items() if k.startswith("time/")} for row in rows if "train/loss" in row]
  assert len(split) == SHORT_RUN["total_steps"] and all(
      set(times) == {"time/data_seconds", "time/train_step_seconds", "time/eval_seconds", "time/checkpoint_seconds"}
      for times in split)
  assert all(v >= 0 for times in split for v in times.values())
  assert re.search(r"step 1/8 \| .* \| data \d+% eval \d+% checkpoint \d+% step \d+% \| ETA", log)

  assert glob.glob(str(workdir / "tensorboard" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  assert "profile of steps 3-3 written to" in log
  overview = (workdir / "parameters.txt").read_text()
  assert overview.startswith("initialised (seed 0)") and "| Mean" in overview and "| Std" in overview
