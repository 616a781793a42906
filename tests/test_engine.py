"""The training engine, for real: devices, processes, kills, preemption, checkpoints and failures."""

import gc
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from engine_runs import (DEMO, FLOAT64, SHORT_RUN, assert_same_run, cli_args, eval_count, final_state, finish,
                         one_device_run, run_cli, run_float64, train_losses)  # noqa: F401  (a fixture)
from helpers import REPO, cli_env, random_variables
from hrnet_jax import model as models
from hrnet_jax.engine import checkpointing, metric_writer, sharding, trainer


def test_one_and_eight_devices_give_the_same_losses(data_dir, tmp_path, one_device_run):
  finish(run_float64(str(tmp_path), data_dir, devices=8))
  one, eight = train_losses(one_device_run), train_losses(str(tmp_path))
  assert len(one) == len(eight) == SHORT_RUN["total_steps"]
  np.testing.assert_allclose(one, eight, rtol=1e-3)
  assert eval_count(str(tmp_path)) == eval_count(one_device_run) == 200  # every eval example exactly once


def test_ctrl_c_exits_130_in_one_line_and_a_rerun_ends_as_an_uninterrupted_run(data_dir, tmp_path, one_device_run):
  workdir = str(tmp_path)
  proc = run_float64(workdir, data_dir, devices=1)
  output = ""
  while "step 5/8" not in output and proc.poll() is None:
    output += proc.stdout.readline()
  proc.send_signal(signal.SIGINT)
  output += proc.communicate(timeout=300)[0]
  assert proc.returncode == 130, output[-3000:]
  assert "Traceback" not in output
  line = last_line(output)
  assert line.startswith("interrupted at step ") and "the last checkpoint is step 4 in" in line, line
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4"]  # nothing saved after the interrupt
  assert "resumed from step 4" in finish(run_float64(workdir, data_dir, devices=1))
  assert_same_run(workdir, one_device_run)


def test_a_ctrl_c_that_a_callback_swallows_is_noted_and_not_reported(monkeypatch):
  """Python ignores an exception raised in a garbage-collection callback (JAX registers one): the interruption is
  noted all the same, for the loop to stop at its next step, and Python's "Exception ignored" report is left out."""
  reported = []
  monkeypatch.setattr(sys, "unraisablehook", reported.append)
  interruption = trainer._Interruption()  # pylint: disable=protected-access

  def interrupt(phase, info):
    del phase, info
    gc.callbacks.remove(interrupt)
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):  # Python runs the signal handler here, inside the callback
      pass

  gc.callbacks.append(interrupt)
  try:
    gc.collect()
  finally:
    interruption.restore()
  assert interruption.received and reported == []
  assert sys.unraisablehook == reported.append  # given back


def _damage(step_dir, kind):
  data = sorted(glob.glob(os.path.join(step_dir, "default", "ocdbt.process_0", "d", "*")), key=os.path.getsize)
  if kind == "a data file truncated":
    with open(data[-1], "r+b") as f:
      f.truncate(os.path.getsize(data[-1]) // 2)
  elif kind == "a data file removed":
    os.remove(data[-1])
  elif kind == "_METADATA removed":
    os.remove(os.path.join(step_dir, "default", "_METADATA"))
  else:  # the step directory emptied
    shutil.rmtree(step_dir)
    os.makedirs(step_dir)


DAMAGE = ["a data file truncated", "a data file removed", "_METADATA removed", "the step directory emptied"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_each_kind_of_damage_moves_the_checkpoint_aside_and_the_one_before_restores(tmp_path, kind, caplog):
  older, abstract = _checkpoints_at_4_and_8(tmp_path)
  _damage(str(tmp_path / "checkpoints" / "8"), kind)
  with caplog.at_level("WARNING"):
    restored, step = checkpointing.Checkpointer(str(tmp_path), keep=2).restore_latest(abstract)
  assert step == 4 and "the checkpoint of step 8 is damaged" in caplog.text
  chex.assert_trees_all_equal(restored, older)
  assert os.listdir(tmp_path / "damaged_checkpoints") == ["8"]  # moved aside, not deleted
  assert os.listdir(tmp_path / "checkpoints") == ["4"]


def test_a_damaged_latest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_one_before(
    data_dir, tmp_path, one_device_run):
  """The whole program on one kind of damage (each kind is found above): named in its log, moved aside, and the
  resumed run ends as the uninterrupted one."""
  workdir = str(tmp_path / "run")
  shutil.copytree(one_device_run, workdir)
  _damage(os.path.join(workdir, "checkpoints", "8"), DAMAGE[0])
  output = finish(run_float64(workdir, data_dir, devices=1))
  assert "the checkpoint of step 8 is damaged" in output and "resumed from step 4" in output
  assert "Traceback" not in output and "Event loop is closed" not in output
  assert os.listdir(os.path.join(workdir, "damaged_checkpoints")) == ["8"]  # moved aside, not deleted
  assert_same_run(workdir, one_device_run)


# Runs ``python -m hrnet_jax.train ARGS`` on a file system that, from the second checkpoint on, refuses to let a file
# grow past 64 kB (RLIMIT_FSIZE: the kernel fails the write with EFBIG), as a disk that fills up during a run.
FULL_DISK = """
import resource, runpy, signal, sys
from hrnet_jax.engine import checkpointing
save = checkpointing.Checkpointer.save
def save_on_a_filling_disk(self, step, state):
  if step == 8:
    self.wait()  # the first checkpoint is whole
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
  return save(self, step, state)
checkpointing.Checkpointer.save = save_on_a_filling_disk
sys.argv = ["train", *sys.argv[1:]]
runpy.run_module("hrnet_jax.train", run_name="__main__")
"""


def test_a_failed_save_stops_the_run_in_one_line_and_leaves_the_last_checkpoint(data_dir, tmp_path):
  workdir = str(tmp_path)
  # The flags after `-m hrnet_jax.train`: the float64 runs' (their compiled step is cached), 40 steps long.
  args = cli_args(workdir, data_dir, **FLOAT64, total_steps=40, checkpoint_every=4)[3:]
  result = subprocess.run([sys.executable, "-c", FULL_DISK, *args], env=dict(cli_env(1), JAX_ENABLE_X64="1"),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 2, result.stderr[-3000:]
  line = last_line(result.stderr)
  assert line.startswith("error: saving the checkpoint of step 8 failed") and "File too large" in line, line
  assert f"the last good checkpoint is step 4 in {workdir}" in line
  assert "Traceback" not in result.stderr
  # The write fails in the background; the run stops at the first step after it does, at the latest when the next
  # checkpoint (step 12) would begin.
  assert max(row["step"] for row in metric_writer.read_metrics(workdir)) <= 12
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["4"]  # no temporary directory left
  assert np.isfinite(final_state(workdir, 4)["params"]["head"]["classifier"]["kernel"]).all()


def test_a_refused_resume_leaves_config_json_as_it_was(data_dir, tmp_path, one_device_run):
  workdir = str(tmp_path / "run")
  shutil.copytree(one_device_run, workdir)
  before = open(os.path.join(workdir, "config.json"), "rb").read()
  output = run_float64(workdir, data_dir, devices=1, **{"model.name": "hrnet_w18_small_v1"}).communicate()[0]
  assert "model.name: hrnet_tiny -> hrnet_w18_small_v1" in last_line(output)
  assert open(os.path.join(workdir, "config.json"), "rb").read() == before


def test_rerunning_a_finished_workdir_says_so_without_compiling(data_dir, tmp_path, one_device_run):
  workdir = str(tmp_path / "run")
  shutil.copytree(one_device_run, workdir)
  output = finish(run_float64(workdir, data_dir, devices=1))
  assert "finished at step 8 already: nothing to do" in output and "compiled" not in output
  assert last_line(output).startswith("finished at step 8: top1")


def test_sigterm_checkpoints_exits_cleanly_and_resumes(data_dir, tmp_path):
  # In float64, the program of the runs above: the session's compilation cache holds it.
  steps = {"total_steps": 400, "checkpoint_every": 10, "log_every": 10, "data.eval_split": "validation[:64]"}
  workdir = str(tmp_path)
  proc = run_float64(workdir, data_dir, devices=1, **steps)
  while not os.path.isdir(os.path.join(workdir, "checkpoints", "10")) and proc.poll() is None:
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  output = proc.communicate(timeout=300)[0]
  assert proc.returncode == 0, output[-3000:]
  assert "stopped at step" in output
  stopped = max(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
  assert 10 <= stopped < 400
  assert f"resumed from step {stopped}" in finish(run_float64(workdir, data_dir, devices=1,
                                                             **{**steps, "total_steps": stopped + 5}))


def _tiny_state(mesh):
  """A tiny model's variables with distinct random values (not its initialisation, which takes a 20 s compile)."""
  variables = random_variables(models.create_model("hrnet_tiny", task="segmentation", num_classes=3))
  return sharding.replicate({"step": np.int32(7), **variables}, mesh)


def _checkpoints_at_4_and_8(workdir):
  """A tiny state saved at step 4 and, changed, at step 8 under ``workdir``: (the step-4 state, its abstract tree)."""
  mesh = sharding.make_mesh(1)
  older = _tiny_state(mesh)
  checkpointer = checkpointing.Checkpointer(str(workdir), keep=2)
  checkpointer.save(4, older)
  checkpointer.save(8, jax.tree.map(lambda x: x + 1, older))
  checkpointer.close()
  return older, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)),
                             older)


@pytest.mark.parametrize("save_devices,restore_devices", [(8, 1), (1, 8)])
def test_checkpoint_restores_on_another_device_count(tmp_path, save_devices, restore_devices):
  saved = _tiny_state(sharding.make_mesh(save_devices))
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=1)
  checkpointer.save(7, saved)
  checkpointer.wait()
  mesh = sharding.make_mesh(restore_devices)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)),
                          saved)
  restored, step = checkpointing.Checkpointer(str(tmp_path), keep=1).restore_latest(abstract)
  assert step == 7
  chex.assert_trees_all_equal(restored, saved)
  assert all(len(x.sharding.device_set) == restore_devices for x in jax.tree.leaves(restored))
  checkpointer.close()


def test_resuming_with_other_model_options_is_one_clear_error(tmp_path):
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=1)
  checkpointer.save(7, _tiny_state(sharding.make_mesh(1)))
  checkpointer.close()
  scanned = random_variables(models.create_model("hrnet_tiny", task="segmentation", num_classes=3, scan_repeats=True))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), {"step": np.int32(7), **scanned})
  with pytest.raises(checkpointing.ModelMismatchError, match="holds another model .*stage3_0_to_1.* is missing"):
    checkpointing.Checkpointer(str(tmp_path), keep=1).restore_latest(abstract)
  assert os.listdir(tmp_path / "checkpoints") == ["7"]  # another model's checkpoint is not taken for damage


def test_when_no_checkpoint_restores_the_run_stops_and_moves_nothing(tmp_path):
  _, abstract = _checkpoints_at_4_and_8(tmp_path)
  for step in ("4", "8"):
    _damage(str(tmp_path / "checkpoints" / step), "a data file truncated")
  with pytest.raises(ValueError, match=r"no checkpoint in .* can be restored \(step 8: .*; step 4: .*move that"):
    checkpointing.Checkpointer(str(tmp_path), keep=2).restore_latest(abstract)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"]  # starting over is the user's decision
  assert not os.path.exists(tmp_path / "damaged_checkpoints")


def test_metrics_resume_merges_the_resumed_step_and_drops_a_cut_line(tmp_path):
  writer = metric_writer.MetricWriter(str(tmp_path))
  for step in (1, 2, 3):
    writer.write(step, {"train/loss": float(step)})
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 4, "train/lo')  # a run killed while appending
  assert [row["step"] for row in metric_writer.read_metrics(str(tmp_path))] == [1, 2, 3]
  writer = metric_writer.MetricWriter(str(tmp_path), resume_step=2)
  writer.write(2, {"eval/top1": 50.0})  # the evaluation the interruption cut off
  writer.write(3, {"train/loss": 3.5})
  writer.close()
  assert metric_writer.read_metrics(str(tmp_path)) == [
      {"step": 1, "train/loss": 1.0}, {"step": 2, "train/loss": 2.0, "eval/top1": 50.0},
      {"step": 3, "train/loss": 3.5}]


def test_keeps_latest_and_best_apart(tmp_path):
  state = _tiny_state(sharding.make_mesh(1))
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=2, best_metric="eval/miou", best_mode="max")
  for step, miou in [(1, 50.0), (2, 70.0), (3, 60.0), (4, 65.0)]:
    checkpointer.save(step, state)
    checkpointer.maybe_save_best(step, state, {"eval/miou": miou})
  checkpointer.close()
  assert checkpointer.latest.all_steps() == [3, 4]  # the latest is never deleted for the best
  assert checkpointer.best.all_steps() == [2]
  assert checkpointer.best_record() == {"step": 2, "metric": "eval/miou", "value": 70.0}


def last_line(text):
  return [line for line in text.strip().splitlines() if line.strip()][-1]


def test_unknown_config_key_is_one_clear_line(data_dir, tmp_path):
  result = run_cli(str(tmp_path), data_dir, **{"optimizer.learning_rat": 0.1})
  assert result.returncode != 0
  assert "learning_rate" in result.stderr and "learning_rat" in result.stderr
  assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


def test_missing_dataset_directory_is_one_clear_line(data_dir, tmp_path):
  result = run_cli(str(tmp_path / "run"), data_dir, **{"data.name": "imagenet2012",
                                                       "data.data_dir": str(tmp_path / "nowhere")})
  assert result.returncode == 2
  assert last_line(result.stderr).startswith("error: dataset directory")
  assert "nowhere does not exist" in last_line(result.stderr)


def test_indivisible_batch_is_one_clear_line(data_dir, tmp_path):
  result = run_cli(str(tmp_path), data_dir, devices=8, global_batch_size=12)
  assert result.returncode == 2
  assert last_line(result.stderr) == ("error: global_batch_size=12 is not divisible by the 8 devices; choose a "
                                      "multiple of 8")


def test_nan_loss_stops_naming_step_and_last_good_checkpoint(data_dir, tmp_path):
  workdir = str(tmp_path)
  result = run_cli(workdir, data_dir, checkpoint_every=1, **{"optimizer.learning_rate": 1e12,
                                                             "schedule.name": "constant"})
  assert result.returncode == 2
  line = last_line(result.stderr)
  assert line.startswith(("error: loss is nan at step", "error: loss is inf at step",
                          "error: the update made parameters non-finite")), line
  bad_step = int(line.split(" at step ")[1].split(";")[0])
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
  assert saved and max(saved) < bad_step  # nothing written from the diverged state
  assert f"step {max(saved)} in" in line
  restored = final_state(workdir, max(saved))  # and what was written restores
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["params"]))


@pytest.mark.slow  # 4.5 min; tests/test_imagenet.py trains to far above chance through the same engine faster
def test_demo_trains_far_above_chance(tmp_path, data_dir):
  """The README's third command, as written (its own data dir default aside), on 2 CPU cores."""
  workdir = str(tmp_path)
  start = time.time()
  result = subprocess.run([sys.executable, "-m", "hrnet_jax.train", f"--config={DEMO}", f"--workdir={workdir}",
                           f"--config.data.data_dir={data_dir}"], env=cli_env(1), cwd=REPO, capture_output=True,
                          text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert time.time() - start < 600
  final = [row for row in metric_writer.read_metrics(workdir) if "eval/top1" in row][-1]
  assert final["eval/top1"] > 75.0  # chance is 25
  assert f"top1 {final['eval/top1']:.4g}" in result.stderr
