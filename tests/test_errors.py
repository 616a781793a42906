"""Nothing a user types produces a traceback: every program answers a bad input with one line, ``error: ...``,
naming the offending value, exit status 2, and writes nothing outside its workdir."""

import os
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

import hrnet_jax
from hrnet_jax.model import convert
from helpers import REPO, cli_env, random_variables

CONFIGS = os.path.join(REPO, "configs")
DEMO = os.path.join(CONFIGS, "demo.py")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir):
  """The files the bad inputs point at: broken images, JSON and datasets, another task's checkpoint."""
  root = tmp_path_factory.mktemp("bad_inputs")
  (root / "file").write_text("a file, not a folder")
  (root / "not_an_image.png").write_bytes(b"\x89PNG\r\n\x1a\n but no image")
  (root / "not_json.json").write_text("{'boxes': [1, 2")
  (root / "syntax_error.py").write_text("def get_config(arg=None):\n  return (\n")
  coco = root / "coco"  # an annotation file that is not JSON
  (coco / "annotations").mkdir(parents=True)
  (coco / "annotations" / "person_keypoints_val2017.json").write_text("not json")
  city = root / "cityscapes"  # a label of the wrong size
  for folder, size in (("leftImg8bit", (8, 6)), ("gtFine", (4, 3))):
    path = city / folder / "val" / "aachen" / f"aachen_1_{'leftImg8bit' if folder == 'leftImg8bit' else 'gtFine_labelIds'}.png"
    path.parent.mkdir(parents=True)
    Image.new("RGB" if folder == "leftImg8bit" else "L", size).save(path)
  folders = root / "folders"  # a class-folder dataset whose eval split is empty
  (folders / "train" / "a").mkdir(parents=True)
  Image.new("RGB", (8, 8)).save(folders / "train" / "a" / "1.png")
  (folders / "val" / "a").mkdir(parents=True)
  segmentation = hrnet_jax.create_model("hrnet_tiny", task="segmentation", num_classes=5)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(root / "segmentation_checkpoint", {"step": np.int32(1), **random_variables(segmentation)})
  checkpointer.wait_until_finished()
  demo_head = {"num_classes": 4, "head_channels": (8, 16, 32, 64), "final_channels": 256}
  demo_model = hrnet_jax.create_model("hrnet_tiny", **demo_head)
  np.savez(root / "demo_weights.npz", **convert.to_state_dict(random_variables(demo_model)))
  return {"root": str(root), "data": f"--config.data.data_dir={data_dir}"}


def _train(*args):
  return ("train", f"--config={DEMO}", "--workdir={root}/run", "{data}", *args)


# (program and its arguments, what the error line must name). ``{root}`` and ``{data}`` come from ``inputs``.
CASES = {
    "misspelled config path": (("train", f"--config={CONFIGS}/dem.py", "--workdir={root}/run"), "dem.py"),
    "relative config outside the repository": (("train", "--config=configs/demo.py", "--workdir={root}/run"),
                                               "repository root"),
    "unknown config arg": (("train", f"--config={CONFIGS}/imagenet.py:w99", "--workdir={root}/run"), "'w99'"),
    "config that takes no arg": (("train", f"--config={DEMO}:classification", "--workdir={root}/run"),
                                 "'classification'"),
    "config arg of the wrong type": (("train", f"--config={CONFIGS}/imagenet.py:w18,batch=abc",
                                      "--workdir={root}/run"), "batch='abc'"),
    "config file with a syntax error": (("train", "--config={root}/syntax_error.py", "--workdir={root}/run"),
                                        "syntax_error.py, line"),
    "config value of the wrong type": (_train("--config.total_steps=abc"), "abc"),
    "unknown config key": (_train("--config.optimizer.learning_rat=0.1"), "learning_rat"),
    "missing --workdir": (("train", f"--config={DEMO}"), "--workdir"),
    "workdir inside a file": (("train", f"--config={DEMO}", "--workdir={root}/file/run", "{data}"), "file/run"),
    "negative steps": (_train("--config.total_steps=-1"), "total_steps=-1"),
    "zero batch": (_train("--config.global_batch_size=0"), "global_batch_size=0"),
    "negative learning rate": (_train("--config.optimizer.learning_rate=-0.1"), "learning_rate=-0.1"),
    "schedule milestone past the end": (_train("--config.schedule.name=step", "--config.schedule.milestones=(3,20)",
                                               "--config.total_steps=0"), "milestones"),
    "unknown optimizer": (_train("--config.optimizer.name=sgdd"), "'sgdd'"),
    "unknown variant": (_train("--config.model.name=hrnet_w99"), "hrnet_w99"),
    "size nearest fusion cannot use": (_train("--config.data.image_size=48"), "48x48"),
    "unknown eval split": (_train("--config.data.eval_split=valid"), "'valid'"),
    "missing dataset": (_train("--config.data.name=imagenet2012", "--config.data.data_dir={root}/nowhere"),
                        "nowhere"),
    "empty dataset split": (("train", f"--config={CONFIGS}/imagenet.py:tiny,classes=1", "--workdir={root}/run",
                             "--config.data.data_dir={root}/folders"), "val"),
    "recipe the task cannot read": (("train", f"--config={CONFIGS}/coco_pose.py:tiny", "--workdir={root}/run",
                                     "--config.data.preprocess=synthetic_classification"), "'target'"),
    "checkpoint of another task": (("evaluate", f"--config={DEMO}", "--checkpoint={root}/segmentation_checkpoint",
                                    "{data}"), "last_layer"),
    "missing checkpoint": (("evaluate", f"--config={DEMO}", "--checkpoint={root}/nowhere", "{data}"), "nowhere"),
    "evaluate output that cannot be written": (("evaluate", f"--config={DEMO}",
                                                "--checkpoint={root}/demo_weights.npz", "{data}",
                                                "--output={root}/file/metrics.json"), "--output"),
    "missing boxes file": (("predict", f"--config={DEMO}", "--checkpoint={root}/demo_weights.npz",
                            "--boxes={root}/boxes.json", "--output_dir={root}/out", "{root}/not_an_image.png"),
                           "boxes.json"),
    "boxes that are not JSON": (("predict", f"--config={DEMO}", "--checkpoint={root}/demo_weights.npz",
                                 "--boxes={root}/not_json.json", "--output_dir={root}/out",
                                 "{root}/not_an_image.png"), "not_json.json"),
    "a PNG that is not an image": (("predict", f"--config={DEMO}", "--checkpoint={root}/demo_weights.npz", "{data}",
                                    "--output_dir={root}/out", "{root}/not_an_image.png"), "not_an_image.png"),
    "predict output folder that is a file": (("predict", f"--config={DEMO}", "--checkpoint={root}/demo_weights.npz",
                                              "--output_dir={root}/file", "{root}/not_an_image.png"), "file"),
    "annotation JSON that is not JSON": (("data.prepare", "coco_keypoints", "--manual_dir={root}/coco",
                                          "--data_dir={root}/tfds_coco"), "person_keypoints_val2017.json"),
    "label PNG of the wrong size": (("data.prepare", "semantic_segmentation/cityscapes",
                                     "--manual_dir={root}/cityscapes", "--data_dir={root}/tfds_city"), "4x3"),
    "unknown dataset to prepare": (("data.prepare", "coco_keypoint", "--data_dir={root}/tfds"), "'coco_keypoint'"),
    "summary of an unknown variant": (("summary", "hrnet_w99"), "hrnet_w99"),
    "benchmark size that is not HxW": (("benchmark", "--model=hrnet_tiny", "--size=30x"), "30x"),
    "draw with an unknown keypoint set": (("draw", "--annotations={root}/not_json.json", "--images={root}",
                                           "--output_dir={root}/drawn", "--keypoints=wflx"), "'wflx'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_is_one_line_with_status_2_and_writes_nothing_outside_the_workdir(case, inputs, tmp_path):
  (program, *args), named = CASES[case]
  args = [arg.format(**inputs) for arg in args if arg.format(**inputs)]
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  result = subprocess.run([sys.executable, "-m", f"hrnet_jax.{program}", *args], env=cli_env(1), cwd=cwd,
                          capture_output=True, text=True, timeout=300)
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert result.returncode == 2, (case, result.stderr[-2000:])
  assert len(errors) == 1 and named in errors[0], (case, errors, result.stderr[-2000:])
  assert "Traceback" not in result.stderr, (case, result.stderr[-3000:])
  assert os.listdir(cwd) == [], case  # nothing written where the program was run
  assert not os.path.exists(os.path.join(inputs["root"], "out", "predictions.json"))


def test_the_experiment_scripts_share_the_boundary(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "launch.py"), "table12_pos",
                           f"--root={tmp_path}", "--mode=print"], env=cli_env(1), capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: unknown sweep")
  assert "did you mean table12_pose" in result.stderr


def test_verbose_shows_the_traceback(inputs):
  result = subprocess.run([sys.executable, "-m", "hrnet_jax.train", f"--config={DEMO}",
                           f"--workdir={inputs['root']}/run", "--config.total_steps=-1", "--verbose"],
                          env=cli_env(1), cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0 and "Traceback" in result.stderr and "total_steps=-1" in result.stderr


def test_a_failed_orbax_read_reported_by_asyncio_stays_out_of_the_log():
  """A failed checkpoint read leaves asyncio futures whose "exception was never retrieved" record names Orbax only
  in its traceback: the programs report the failure in one line, so the record is dropped; asyncio's others stay."""
  import logging  # pylint: disable=import-outside-toplevel
  from hrnet_jax import cli  # pylint: disable=import-outside-toplevel
  namespace = {}
  exec(compile("def read():\n  raise Exception('Encountered error while reading array index: 0')\n",  # noqa: S102
               "/site-packages/orbax/checkpoint/_src/serialization/serialization.py", "exec"), namespace)
  try:
    namespace["read"]()
  except Exception:  # pylint: disable=broad-except
    failure = sys.exc_info()
  record = lambda message, exc_info: logging.LogRecord(  # noqa: E731
      "asyncio", logging.ERROR, "/usr/lib/python3.11/asyncio/base_events.py", 1, message, None, exc_info)
  assert not cli._quiet_libraries(record("Future exception was never retrieved", failure))
  assert cli._quiet_libraries(record("Task exception was never retrieved", None))
