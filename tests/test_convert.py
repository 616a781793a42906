"""Weight import: complete mapping of the official key sets, strictness, readable errors, file formats."""

import json
import os
import re

import jax
import numpy as np
import pytest

import hrnet_jax
from hrnet_jax import tasks
from hrnet_jax.engine import config_lib
from hrnet_jax.model import checkpoint_inspect, convert
from conftest import shared_path
from helpers import REPO, random_variables

# keys_<file>.json -> (variant, task)
KEY_LISTS = {
    **{f"cls_hrnet_{w}": (f"hrnet_{w}", "classification")
       for w in ("w18_small_v1", "w18_small_v2", "w18", "w30", "w32", "w40", "w44", "w48", "w64")},
    "pose_w32_256x192_adam_lr1e-3": ("hrnet_w32", "pose"),
    "pose_w32_384x288_adam_lr1e-3": ("hrnet_w32", "pose"),
    "pose_w48_256x192_adam_lr1e-3": ("hrnet_w48", "pose"),
    "seg_hrnet_w18_small_v1_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484": ("hrnet_w18_small_v1", "segmentation"),
    "seg_hrnet_w18_small_v2_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484": ("hrnet_w18_small_v2", "segmentation"),
    "seg_hrnet_w48_cityscapes": ("hrnet_w48", "segmentation"),
}


def official_shapes(name):
  return {k: tuple(v) for k, v in json.loads(shared_path("golden", f"keys_{name}.json").read_text()).items()}


def zeros_state_dict(shapes):
  """A state_dict of the right shapes that costs no memory (broadcast views)."""
  return {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}


@pytest.mark.parametrize("name,scan_repeats", [(name, False) for name in sorted(KEY_LISTS)] + [
    ("cls_hrnet_w18_small_v2", True), ("pose_w32_256x192_adam_lr1e-3", True), ("seg_hrnet_w48_cityscapes", True)])
def test_official_key_lists_map_completely(name, scan_repeats):
  variant, task = KEY_LISTS[name]
  shapes = official_shapes(name)
  expected = convert.expected_torch_shapes(hrnet_jax.create_model(variant, task=task, scan_repeats=scan_repeats))
  official = {k: s for k, s in shapes.items() if not k.endswith("num_batches_tracked")}
  assert sorted(set(official) - set(expected)) == []  # nothing unexpected
  assert sorted(set(expected) - set(official)) == []  # nothing missing
  assert {k: expected[k][1] for k in official} == official  # every shape equal


OCR_KEY_LISTS = {"cityscapes": 19, "pascal_ctx_cls59": 59, "pascal_ctx_cls60": 60, "lip": 20}


@pytest.mark.parametrize("dataset", sorted(OCR_KEY_LISTS))
def test_official_ocr_key_lists_map_completely(dataset):
  shapes = official_shapes(f"seg_hrnet_ocr_w48_{dataset}")
  model = hrnet_jax.create_model("hrnet_w48", task="segmentation", head="ocr", num_classes=OCR_KEY_LISTS[dataset],
                                 align_corners=True)
  expected = {k: shape for k, (_, shape) in convert.expected_torch_shapes(model).items()}
  assert expected == {k: s for k, s in shapes.items() if not k.endswith("num_batches_tracked")}
  assert checkpoint_inspect.describe(zeros_state_dict(shapes)) == (
      "hrnet_w48 (stage 1: 4 bottleneck blocks of 64) with OCR head (segmentation) with "
      f"{OCR_KEY_LISTS[dataset]} classes and 512 OCR channels")


@pytest.mark.parametrize("source_task", ["classification", "segmentation"])
def test_imagenet_or_v2_segmentation_weights_start_an_ocr_model(source_task):
  """The backbone loads and the OCR head starts fresh; from a V2 segmentation checkpoint its ``last_layer`` becomes
  the ``aux_head``, as the official loader renames it."""
  source = hrnet_jax.create_model("hrnet_tiny", task=source_task, num_classes=5)
  ocr = hrnet_jax.create_model("hrnet_tiny", task="segmentation", num_classes=5, head="ocr", ocr_mid_channels=16,
                               ocr_key_channels=8)
  trained = random_variables(source)
  variables, report = convert.convert_state_dict(ocr, convert.to_state_dict(trained), reinit_head=True)
  np.testing.assert_array_equal(variables["params"]["backbone"]["stage4_0"]["branches_3_0"]["conv1"]["kernel"],
                                trained["params"]["backbone"]["stage4_0"]["branches_3_0"]["conv1"]["kernel"])
  fresh = {k.split(".")[0] for k in report.reinitialized}
  if source_task == "segmentation":
    np.testing.assert_array_equal(variables["params"]["head"]["aux_head_3"]["kernel"],
                                  trained["params"]["head"]["last_layer_3"]["kernel"])
    assert fresh == {"conv3x3_ocr", "ocr_distri_head", "cls_head"} and report.ignored == []
  else:
    assert fresh == {"aux_head", "conv3x3_ocr", "ocr_distri_head", "cls_head"}
    assert {k.split(".")[0] for k in report.ignored} == {"incre_modules", "downsamp_modules", "final_layer",
                                                         "classifier"}


def test_full_size_state_dict_loads_and_round_trips():
  shapes = official_shapes("seg_hrnet_w18_small_v1_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484")
  rng = np.random.default_rng(0)
  state = {k: rng.standard_normal(s).astype(np.float32) if s else np.int64(7) for k, s in shapes.items()}
  model = hrnet_jax.create_model("hrnet_w18_small_v1", task="segmentation")
  variables, report = convert.convert_state_dict(model, state)
  assert len(report.loaded) == len([k for k in shapes if not k.endswith("num_batches_tracked")])
  assert report.reinitialized == []
  back = convert.to_state_dict(variables)
  assert set(back) == {k for k in shapes if not k.endswith("num_batches_tracked")}
  for key, value in back.items():
    np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_either_layout_loads_the_same_state_dict_and_writes_it_back():
  shapes = official_shapes("seg_hrnet_w18_small_v2_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484")
  rng = np.random.default_rng(0)
  state = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items() if s}
  per_layer = hrnet_jax.create_model("hrnet_w18_small_v2", task="segmentation")
  scanned = hrnet_jax.create_model("hrnet_w18_small_v2", task="segmentation", scan_repeats=True)
  stacked = hrnet_jax.load_pytorch_weights(scanned, state)
  assert stacked["params"]["backbone"]["stage3_0_to_2"]["branches_2_0_to_1"]["conv1"]["kernel"].shape == (
      3, 2, 3, 3, 72, 72)
  assert convert.to_state_dict(stacked).keys() == convert.to_state_dict(
      hrnet_jax.load_pytorch_weights(per_layer, state)).keys()
  for key, value in convert.to_state_dict(stacked).items():
    np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_wrong_variant_fails_with_one_readable_error():
  state = zeros_state_dict(official_shapes("pose_w32_256x192_adam_lr1e-3"))
  model = hrnet_jax.create_model("hrnet_w48", task="pose")
  with pytest.raises(hrnet_jax.WeightMismatchError) as error:
    hrnet_jax.load_pytorch_weights(model, state)
  message = str(error.value)
  assert "with different shapes" in message
  assert "the checkpoint looks like: hrnet_w32" in message
  assert "the model is: hrnet_w48" in message
  assert "17 outputs" in message


def test_wrong_task_fails_naming_both_heads():
  state = zeros_state_dict(official_shapes("cls_hrnet_w32"))
  model = hrnet_jax.create_model("hrnet_w32", task="pose")
  with pytest.raises(hrnet_jax.WeightMismatchError, match=r"(?s)looks like: hrnet_w32 .*classification head with "
                     r"1000 classes.*the model is: hrnet_w32 .*V1 heatmap head \(pose\) with 17.*missing from the "
                     r"checkpoint.*final_layer\.weight.*unexpected in the checkpoint.*classifier\.weight"):
    hrnet_jax.load_pytorch_weights(model, state)


def test_reinit_head_keeps_backbone_and_reports_new_head():
  meta = json.loads(shared_path("golden", "cls_tiny.json").read_text())
  with np.load(shared_path("golden", "cls_tiny.npz")) as archive:
    state = {k[3:]: archive[k] for k in archive.files if k.startswith("sd/")}
  model = hrnet_jax.create_model(meta["extra"], task="classification", num_classes=10)
  with pytest.raises(hrnet_jax.WeightMismatchError, match="classifier.weight: checkpoint \\[1000, 2048\\]"):
    convert.convert_state_dict(model, state)
  variables, report = convert.convert_state_dict(model, state, reinit_head=True)
  assert report.reinitialized == ["classifier.bias", "classifier.weight"]
  assert variables["params"]["head"]["classifier"]["kernel"].shape == (2048, 10)
  np.testing.assert_array_equal(variables["params"]["backbone"]["conv1"]["kernel"],
                                state["conv1.weight"].astype(np.float32).transpose(2, 3, 1, 0))

  # An ImageNet backbone into a segmentation model: the classification head is dropped, the V2 head is new.
  seg = hrnet_jax.create_model(meta["extra"], task="segmentation", num_classes=5)
  _, report = convert.convert_state_dict(seg, state, reinit_head=True)
  assert report.reinitialized and all(k.startswith("last_layer.") for k in report.reinitialized)
  assert "re-initialised" in report.summary()


def test_an_openmmlab_checkpoint_loads_as_a_backbone_and_its_head_is_reported(tmp_path):
  """mmpose's layout (``backbone.`` + ``keypoint_head.``, in a ``state_dict`` wrapper with ``meta``): the backbone
  loads, the head is re-initialised, and the report lists both the new head and the checkpoint's head keys."""
  meta = json.loads(shared_path("golden", "pose_tiny.json").read_text())
  with np.load(shared_path("golden", "pose_tiny.npz")) as archive:
    official = {k[3:]: archive[k] for k in archive.files if k.startswith("sd/")}
  mmpose = {("keypoint_head." if k.startswith("final_layer.") else "backbone.") + k: v for k, v in official.items()}
  path = tmp_path / "mmpose_hrnet.npz"
  np.savez(path, **mmpose)
  model = hrnet_jax.create_model(meta["extra"], task="pose", num_keypoints=17)
  with pytest.raises(hrnet_jax.WeightMismatchError, match=r"(?s)looks like: .* with no head .*2 missing from the "
                                                        r"checkpoint:.*final_layer\.weight \[17, 8, 1, 1\]"):
    convert.convert_state_dict(model, path)
  variables, report = convert.convert_state_dict(model, path, reinit_head=True)
  assert report.reinitialized == ["final_layer.bias", "final_layer.weight"]
  assert {"keypoint_head.final_layer.bias", "keypoint_head.final_layer.weight"} <= set(report.ignored)
  assert "re-initialised 2: final_layer.bias, final_layer.weight" in report.summary()
  assert "keypoint_head.final_layer.weight" in report.summary()
  np.testing.assert_array_equal(variables["params"]["backbone"]["conv1"]["kernel"],
                                official["conv1.weight"].astype(np.float32).transpose(2, 3, 1, 0))
  assert len(report.loaded) == len(official) - 2 - sum(k.endswith("num_batches_tracked") for k in official)


def _mmdetection_key(key):
  """The key MMDetection's FCOS with HRNetV2p gives a tensor of ours: mmcv's ``ConvModule`` holds a conv as ``.conv``
  and its GroupNorm as ``.gn``, ``AnchorFreeHead`` names its predictors ``conv_cls`` / ``conv_reg``, ``FCOSHead``
  adds ``conv_centerness`` and one ``Scale`` (``.scale``) per level; the HRNet is under ``backbone.``."""
  for pattern, name in ((r"^neck\.(reduction_conv|fpn_convs\.\d+)\.", r"neck.\1.conv."),
                        (r"^bbox_head\.(cls|reg)_convs\.(\d+)\.", r"bbox_head.\1_convs.\2.conv."),
                        (r"^bbox_head\.(cls|reg)_gn\.(\d+)\.", r"bbox_head.\1_convs.\2.gn."),
                        (r"^bbox_head\.fcos_(cls|reg|centerness)\.", r"bbox_head.conv_\1."),
                        (r"^bbox_head\.scales\.(\d+)\.weight$", r"bbox_head.scales.\1.scale")):
    key = re.sub(pattern, name, key)
  return key if key.startswith(("neck.", "bbox_head.")) else "backbone." + key


def test_an_mmdetection_fcos_checkpoint_loads_its_neck_and_head_by_their_mmdetection_names():
  config = config_lib.load(os.path.join(REPO, "configs", "coco_detection.py:fcos_w18,tiny"))
  model = tasks.create(config).create_model()
  variables = random_variables(model, (1, 128, 128, 3))
  mmdet = {_mmdetection_key(k): v for k, v in convert.to_state_dict(variables).items()}
  mmdet["bbox_head.loss_cls.unused"] = np.zeros(1)  # another module's tensor: reported, never loaded
  # MMDetection's own names, as its modules make them (4 stacked convs per tower, 5 levels, GroupNorm, no conv bias).
  convs = [f"bbox_head.{tower}_convs.{i}.{leaf}" for tower in ("cls", "reg") for i in range(4)
           for leaf in ("conv.weight", "gn.weight", "gn.bias")]
  predictors = [f"bbox_head.conv_{name}.{leaf}" for name in ("cls", "reg", "centerness") for leaf in ("weight", "bias")]
  neck = [f"neck.{conv}.conv.{leaf}" for conv in ["reduction_conv", *[f"fpn_convs.{i}" for i in range(5)]]
          for leaf in ("weight", "bias")]
  scales = [f"bbox_head.scales.{i}.scale" for i in range(5)]
  assert sorted(k for k in mmdet if not k.startswith("backbone.")) == sorted(
      convs + predictors + neck + scales + ["bbox_head.loss_cls.unused"])
  loaded, report = convert.convert_state_dict(model, mmdet, reinit_head=True)
  assert report.reinitialized == [] and report.ignored == ["bbox_head.loss_cls.unused"]
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.tree.map(np.asarray, variables))
  assert "HRFPN (V2p) neck and FCOS head with 4 classes" in checkpoint_inspect.describe(
      convert.to_state_dict(variables))


def test_wrapper_prefixes_aliases_and_file_formats(tmp_path):
  model = hrnet_jax.create_model("hrnet_tiny", task="landmarks", num_landmarks=5)
  variables = random_variables(model, seed=3)
  state = convert.to_state_dict(variables)
  # As the official landmark code names its head, inside a DataParallel wrapper, with BN counters.
  wrapped = {"module." + k.replace("last_layer.", "head."): v for k, v in state.items()}
  wrapped["module.bn1.num_batches_tracked"] = np.int64(3)
  np.savez(tmp_path / "weights.npz", **wrapped)
  from safetensors.numpy import save_file
  save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp_path / "weights.safetensors"))
  for source in (wrapped, tmp_path / "weights.npz", str(tmp_path / "weights.safetensors")):
    loaded = hrnet_jax.load_pytorch_weights(model, source)
    jax.tree.map(np.testing.assert_array_equal, loaded, jax.tree.map(np.asarray, variables))


def test_pth_files_load_through_torch(tmp_path):
  torch = pytest.importorskip("torch", reason="reading .pth needs the optional [torch] extra")
  model = hrnet_jax.create_model("hrnet_tiny", task="pose")
  variables = random_variables(model)
  state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in convert.to_state_dict(variables).items()}
  torch.save({"state_dict": state}, tmp_path / "model.pth")
  loaded = hrnet_jax.load_pytorch_weights(model, tmp_path / "model.pth")
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.tree.map(np.asarray, variables))


def test_bad_sources_are_clear_errors(tmp_path):
  model = hrnet_jax.create_model("hrnet_tiny")
  with pytest.raises(FileNotFoundError, match="no checkpoint at"):
    hrnet_jax.load_pytorch_weights(model, tmp_path / "missing.pth")
  (tmp_path / "weights.ckpt").write_text("x")
  with pytest.raises(ValueError, match="unknown checkpoint format '.ckpt'"):
    hrnet_jax.load_pytorch_weights(model, tmp_path / "weights.ckpt")
  with pytest.raises(hrnet_jax.WeightMismatchError, match="not an HRNet state_dict"):
    hrnet_jax.load_pytorch_weights(model, {"fc.weight": np.zeros((2, 2))})
  # A checkpoint of an older version: a variable no layer has is named, not a KeyError.
  with pytest.raises(hrnet_jax.WeightMismatchError, match="params head/bbox_head/scales_0 is no variable"):
    convert.flax_state({"params": {"head": {"bbox_head": {"scales_0": np.ones(())}}}})
  (tmp_path / "cut.safetensors").write_bytes(b"x" * 1000)  # a download cut short
  with pytest.raises(ValueError, match="cut.safetensors is not a readable safetensors file"):
    hrnet_jax.load_pytorch_weights(model, tmp_path / "cut.safetensors")
