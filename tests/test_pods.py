"""What pods and clusters need, for real on the CPU (issue #17): a run on remote storage killed and resumed, a
preemption notice to one of two processes whose rerun matches one process, and the launchers that are recognised."""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import chex
import gcsfs
import numpy as np
import pytest
from PIL import Image

import fake_gcs
from engine_runs import (SHORT_RUN, assert_same_run, eval_count, final_state, finish,  # noqa: F401  (a fixture)
                         one_device_run, run_float64, train_losses)
from hrnet_jax.engine import checkpointing, metric_writer, sharding


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def two_processes(workdir, data_dir, port, **overrides):
  return [run_float64(workdir, data_dir, devices=2, extra_args=[
      f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"], **overrides)
          for i in range(2)]


def test_sigterm_to_one_of_two_processes_stops_both_at_one_step_and_the_rerun_ends_as_one_process(
    data_dir, tmp_path, one_device_run):
  """2 processes x 2 devices (gloo over 127.0.0.1), one of them sent SIGTERM after the first step: JAX's preemption
  service tells the other over the coordination service, and both stop at the step they agree on with a checkpoint
  (no collective runs for it at every step); the rerun resumes there and ends as the one-device run does, each
  process having evaluated half of the examples. In float64 the two agree to ~1e-12 (see ``engine_runs``), so a
  wrong resume (another batch, a lost optimizer state) cannot hide in the tolerance. One two-process run serves
  both claims: each costs minutes on 2 cores (a float64 step takes ~1.7 s over gloo, and process 1 compiles the
  step itself: JAX's cache keys differ between CPU processes and only process 0 writes)."""
  workdir = str(tmp_path)
  procs = two_processes(workdir, data_dir, free_port())
  metrics = os.path.join(workdir, "metrics.jsonl")
  while not (os.path.exists(metrics) and os.path.getsize(metrics)) and procs[0].poll() is None:
    time.sleep(0.05)  # the first step is done: both processes are in the loop
  procs[1].send_signal(signal.SIGTERM)
  outputs = [finish(p) for p in procs]  # both exit 0
  stopped = [int(re.search(r"stopped at step (\d+) by SIGTERM", output).group(1)) for output in outputs]
  assert stopped[0] == stopped[1] < SHORT_RUN["total_steps"], stopped
  assert stopped[0] in checkpointing.saved_steps(os.path.join(workdir, "checkpoints"))
  resumed = [finish(p) for p in two_processes(workdir, data_dir, free_port())]
  assert f"resumed from step {stopped[0]}" in resumed[0]
  assert "process 1 of 2 (given by the flags), 2 local / 4 global devices" in resumed[1]
  assert "on a mesh of {'data': 4} devices, 2 process(es)" in resumed[0]

  last = SHORT_RUN["total_steps"]
  assert [row["step"] for row in metric_writer.read_metrics(workdir)] == list(range(1, last + 1))
  # Seen: losses within 1e-9 relative; one BatchNorm bias off by 2.5e-12 (which failed rtol 1e-9 / atol 1e-12).
  # A step's update is ~1e-3: a wrong resume is far outside these tolerances.
  np.testing.assert_allclose(train_losses(workdir), train_losses(one_device_run), rtol=1e-9)
  for collection in ("params", "batch_stats", "opt_state"):
    chex.assert_trees_all_close(final_state(workdir, last)[collection], final_state(one_device_run, last)[collection],
                                rtol=1e-6, atol=1e-9)
  assert eval_count(workdir) == 200  # each process evaluated its half; together every example once


@pytest.fixture(scope="module")
def fake_gcs_endpoint():
  with fake_gcs.running() as endpoint:
    yield endpoint


@pytest.fixture
def bucket(fake_gcs_endpoint):
  """The test's own client of the GCS server (the ``gs://`` paths of the runs are ``BUCKET/...`` here)."""
  return gcsfs.GCSFileSystem(endpoint_url=fake_gcs_endpoint, token="anon", use_listings_cache=False,
                             skip_instance_cache=True)


def test_a_run_on_remote_storage_is_killed_resumes_and_ends_bit_exact(data_dir, tmp_path, one_device_run,
                                                                       fake_gcs_endpoint, bucket):
  """The demo run with its workdir, dataset and ``init_from`` on a GCS server (``gs://``), SIGKILLed after its first
  checkpoint and run again: it resumes from the bucket and ends as the same run on a local disk, bit for bit; the
  folder it runs in stays empty."""
  bucket.put(os.path.join(one_device_run, "checkpoints"), f"{fake_gcs.BUCKET}/init", recursive=True)
  bucket.put(os.path.join(data_dir, "synthetic_shapes"), f"{fake_gcs.BUCKET}/tfds/synthetic_shapes", recursive=True)
  remote, local = f"gs://{fake_gcs.BUCKET}/run", str(tmp_path / "local")
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  env = fake_gcs.environment(fake_gcs_endpoint)

  def run(workdir, init_from, dataset=f"gs://{fake_gcs.BUCKET}/tfds"):
    return run_float64(workdir, dataset, devices=1, env=env, cwd=str(cwd), init_from=init_from,
                       eval_at_start=True, checkpoint_every=2)

  killed = run(remote, f"gs://{fake_gcs.BUCKET}/init")
  output = ""
  while "step 7/8" not in output and killed.poll() is None:
    output += killed.stdout.readline()  # at step 7, step 4's checkpoint is complete (step 6's waited for it)
  killed.send_signal(signal.SIGKILL)
  assert killed.wait() == -signal.SIGKILL, output[-3000:]
  assert not bucket.exists(f"{fake_gcs.BUCKET}/run/checkpoints/8"), "killed too late to test anything"
  resumed = finish(run(remote, f"gs://{fake_gcs.BUCKET}/init"))
  assert re.search(r"resumed from step [46] in gs://", resumed)
  assert f"Load dataset info from gs://{fake_gcs.BUCKET}/tfds/synthetic_shapes" in resumed
  finish(run(local, os.path.join(one_device_run, "checkpoints"), dataset=data_dir))
  assert os.listdir(cwd) == []

  copy = str(tmp_path / "copy")  # what the comparison reads (a whole-run download took minutes on the emulator)
  bucket.get(f"{fake_gcs.BUCKET}/run/checkpoints/8", os.path.join(copy, "checkpoints", "8"), recursive=True)
  bucket.get(f"{fake_gcs.BUCKET}/run/metrics.jsonl", os.path.join(copy, "metrics.jsonl"))
  assert_same_run(copy, local, with_eval_at_start=True)
  # The weights came from the bucket whole: at step 0 they score what the run they were copied from ended with.
  first_eval = next(row for row in metric_writer.read_metrics(copy) if "eval/top1" in row)
  last_eval = [row for row in metric_writer.read_metrics(one_device_run) if "eval/top1" in row][-1]
  assert first_eval["step"] == 0 and first_eval["eval/loss"] == last_eval["eval/loss"]


def test_pytorch_layout_weights_on_remote_storage_are_read_through_a_local_copy(tmp_path, fake_gcs_endpoint):
  script = ("import numpy as np; from etils import epath; from hrnet_jax.model import convert;"
            f"path = epath.Path('gs://{fake_gcs.BUCKET}/weights/w.npz');"
            "path.parent.mkdir(parents=True, exist_ok=True);"
            "f = path.open('wb'); np.savez(f, **{'conv1.weight': np.arange(6.0).reshape(1, 1, 2, 3)}); f.close();"
            "print(convert.read_state_dict(str(path))['conv1.weight'].sum())")
  result = subprocess.run([sys.executable, "-c", script], env={**os.environ, **fake_gcs.environment(
      fake_gcs_endpoint)}, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split()[-1] == "15.0" and os.listdir(tmp_path) == []


def test_predict_reads_images_from_and_writes_its_pictures_to_remote_storage(data_dir, tmp_path, fake_gcs_endpoint,
                                                                            bucket):
  """``predict`` (segmentation) on two images in a bucket (``gs://``), with weights from a local file, its label
  maps, overlays and JSON written into the bucket: both segmented, the progress logged, the folder it runs in left
  empty."""
  from hrnet_jax import tasks  # pylint: disable=import-outside-toplevel
  from hrnet_jax.engine import config_lib  # pylint: disable=import-outside-toplevel
  from hrnet_jax.model import convert  # pylint: disable=import-outside-toplevel
  from helpers import REPO, random_variables  # pylint: disable=import-outside-toplevel
  config = os.path.join(REPO, "configs", "cityscapes.py") + ":tiny"
  np.savez(tmp_path / "weights.npz", **convert.to_state_dict(random_variables(
      tasks.create(config_lib.load(config)).create_model())))
  images = [f"gs://{fake_gcs.BUCKET}/images/image{k}.png" for k in range(2)]
  for k, image in enumerate(images):
    data = io.BytesIO()
    Image.new("RGB", (64, 48), (60 * k, 90, 120)).save(data, "PNG")
    bucket.pipe(image.removeprefix("gs://"), data.getvalue())
  env = {**os.environ, **fake_gcs.environment(fake_gcs_endpoint)}
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  output_dir = f"gs://{fake_gcs.BUCKET}/out"
  result = subprocess.run(
      [sys.executable, "-m", "hrnet_jax.predict", f"--config={config}", f"--checkpoint={tmp_path / 'weights.npz'}",
       f"--config.data.data_dir={data_dir}", f"--output_dir={output_dir}", *images],
      env=env, cwd=str(cwd), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "segmenting images: 2/2 (100%)" in result.stderr
  predictions = json.loads(bucket.cat(f"{fake_gcs.BUCKET}/out/predictions.json"))
  assert [p["file"] for p in predictions] == images
  for k in range(2):
    with Image.open(io.BytesIO(bucket.cat(f"{fake_gcs.BUCKET}/out/image{k}_overlay.png"))) as overlay:
      assert overlay.size == (64, 48)
    assert predictions[k]["outputs"]["labels"] == f"{output_dir}/image{k}_labels.png"
  assert not os.listdir(cwd)


@pytest.mark.parametrize("environ, cluster", [
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, "SLURM"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),  # one task: nothing to join
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1"}, "Open MPI"),
    ({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}, "a Cloud TPU pod"),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),  # a single TPU VM
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "JOB_COMPLETION_INDEX": "0"}, "a Kubernetes indexed job"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, None),  # a pod, but not one of an indexed job
    ({}, None),
])
def test_the_launchers_that_start_several_processes_are_recognised(environ, cluster):
  assert sharding.detect_cluster(environ) == cluster


def test_distributed_off_runs_one_process_whatever_the_environment_says(monkeypatch):
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_NTASKS", "4")
  sharding.initialize_distributed(mode="off")  # would wait for 3 other processes under "auto"
  with pytest.raises(ValueError, match="--distributed='sometimes': expected one of auto, off, mpi4py"):
    sharding.initialize_distributed(mode="sometimes")
