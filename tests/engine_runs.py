"""The short training runs the engine and pod tests start as users do (subprocesses of the CLI), and how they
are compared."""

import os
import signal
import subprocess
import sys

import chex
import orbax.checkpoint as ocp
import pytest

from conftest import once_per_session
from helpers import REPO, cli_env
from hrnet_jax.engine import metric_writer

DEMO = os.path.join(REPO, "configs", "demo.py")
# 8 steps of 16 images, a log line and a metrics row per step, a checkpoint every 4, and an eval of 200 images
# (three full batches of 64 and a padded one). A small constant learning rate keeps training out of the chaotic
# regime where float rounding (which differs with the device count) would be amplified step after step. Steps are
# few because the two-process run's are slow (see that test).
SHORT_RUN = {"total_steps": 8, "global_batch_size": 16, "eval_batch_size": 64, "log_every": 1, "data.image_size": 32,
             "data.eval_split": "validation[:200]",
             "checkpoint_every": 4, "eval_every": 0, "best_metric": "", "optimizer.learning_rate": 0.01,
             "schedule.name": "constant", "schedule.warmup_epochs": 0.0}


def cli_args(workdir, data_dir, **overrides):
  values = {**SHORT_RUN, "data.data_dir": data_dir, **overrides}
  return [sys.executable, "-m", "hrnet_jax.train", f"--config={DEMO}", f"--workdir={workdir}",
          *[f"--config.{k}={v}" for k, v in values.items()]]


def run_cli(workdir, data_dir, devices=1, **overrides):
  return subprocess.run(cli_args(workdir, data_dir, **overrides), env=cli_env(devices), cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def train_losses(workdir):
  return [row["train/loss"] for row in metric_writer.read_metrics(workdir) if "train/loss" in row]


def final_state(workdir, step):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "default"))


# Device- and process-count equivalence is checked in float64. In float32 the rounding differences between
# reduction orders (1 vs 8 devices) are amplified by training: measured on this model, a 1e-6 relative
# parameter difference after step 1 becomes 4e-4 after step 2 and ~1% by step 5, so a float32 comparison would
# test rounding, not the engine. In float64 the same runs agree to ~1e-12 over 20 steps.
FLOAT64 = {"model.dtype": "float64", "model.param_dtype": "float64"}


def run_float64(workdir, data_dir, devices, extra_args=(), env=None, cwd=REPO, **overrides):
  """The short run in float64 (``env``: more environment variables; ``cwd``: where it runs)."""
  env = dict(cli_env(devices), JAX_ENABLE_X64="1", **(env or {}))
  # SIGINT as a terminal delivers it, whatever this process does with it (a test sends one).
  return subprocess.Popen(cli_args(workdir, data_dir, **FLOAT64, **overrides) + list(extra_args), env=env,
                          cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(proc):
  output = proc.communicate(timeout=600)[0]
  assert proc.returncode == 0, output[-3000:]
  return output


# Once per test session: the engine, pod and options tests compare with it or start from it.
@pytest.fixture(scope="session")
def one_device_run(data_dir, tmp_path_factory):
  return str(once_per_session(tmp_path_factory, "one_device_run",
                              lambda workdir: finish(run_float64(workdir, data_dir, devices=1))))


def eval_count(workdir):
  return [row["eval/count"] for row in metric_writer.read_metrics(workdir) if "eval/count" in row][-1]


def assert_same_run(workdir, reference, with_eval_at_start=False):
  """``workdir`` ended as the uninterrupted ``reference`` did: the same final state, bit for bit, and one metrics
  row per logged step (and step 0's, ``with_eval_at_start``)."""
  last = SHORT_RUN["total_steps"]
  for collection in ("params", "batch_stats", "opt_state"):
    chex.assert_trees_all_equal(final_state(workdir, last)[collection], final_state(reference, last)[collection])
  steps = list(range(0 if with_eval_at_start else 1, last + 1))
  assert [row["step"] for row in metric_writer.read_metrics(workdir)] == steps
  assert train_losses(workdir) == train_losses(reference)
