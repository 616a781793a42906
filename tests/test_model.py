"""The HRNet family against the official code: parameter counts, golden outputs, MACs, options, dtypes."""

import json
import re

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hrnet_jax
from hrnet_jax import compilation, summary
from hrnet_jax.model import count_parameters, layers, scan_layout
from hrnet_jax.model import summary as model_summary
from conftest import shared_path
from helpers import initialisation_like, random_variables

OFFICIAL_CLS_PARAMS = {
    "hrnet_w18_small_v1": 13_187_464, "hrnet_w18_small_v2": 15_597_464, "hrnet_w18": 21_299_004,
    "hrnet_w30": 37_712_220, "hrnet_w32": 41_232_680, "hrnet_w40": 57_557_160, "hrnet_w44": 67_064_984,
    "hrnet_w48": 77_469_864, "hrnet_w64": 128_059_944,
}
OFFICIAL_CLS_GMACS = {
    "hrnet_w18_small_v1": 1.602, "hrnet_w18_small_v2": 2.596, "hrnet_w18": 4.284, "hrnet_w30": 8.106,
    "hrnet_w32": 8.921, "hrnet_w40": 12.692, "hrnet_w44": 14.883, "hrnet_w48": 17.278, "hrnet_w64": 28.895,
}
GOLDEN = {  # file -> (task, overrides)
    "cls_tiny": ("classification", {}),
    "pose_tiny": ("pose", {}),
    "seg_tiny": ("segmentation", {}),
    "seg_tiny_align_corners": ("segmentation", {"align_corners": True}),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_CLS_PARAMS))
def test_classification_parameter_counts_equal_official(name):
  assert count_parameters(hrnet_jax.create_model(name)) == OFFICIAL_CLS_PARAMS[name]


@pytest.mark.parametrize("name,task,expected", [
    ("hrnet_w32", "pose", 28_536_113),
    ("hrnet_w48", "pose", 63_595_745),
    ("hrnet_w18_small_v1", "segmentation", 1_540_819),
    ("hrnet_w18_small_v2", "segmentation", 3_939_579),
    ("hrnet_w48", "segmentation", 65_859_379),
])
def test_task_parameter_counts_equal_official(name, task, expected):
  assert count_parameters(hrnet_jax.create_model(name, task=task)) == expected


def load_golden(name):
  meta = json.loads(shared_path("golden", f"{name}.json").read_text())
  with np.load(shared_path("golden", f"{name}.npz")) as archive:
    arrays = {k: archive[k] for k in archive.files}
  task, overrides = GOLDEN[name]
  model = hrnet_jax.create_model(meta["extra"], task=task, final_conv_kernel=meta["extra"]["FINAL_CONV_KERNEL"],
                                 **overrides)
  state_dict = {k[len("sd/"):]: v for k, v in arrays.items() if k.startswith("sd/")}
  return meta, arrays, model, state_dict


def nchw(x):
  x = np.asarray(x)
  return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


@pytest.mark.parametrize("scan_repeats", [False, True])
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_parity_with_official_pytorch(name, scan_repeats):
  meta, arrays, model, state_dict = load_golden(name)
  model = model.clone(backbone=model.backbone.clone(scan_repeats=scan_repeats))
  assert count_parameters(model, (1, 64, 96, 3)) == meta["params"]
  variables = hrnet_jax.load_pytorch_weights(model, state_dict)
  images = jnp.asarray(arrays["input"].transpose(0, 2, 3, 1))
  output, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(variables, images)
  chex.assert_shape(nchw(output), tuple(meta["output_shape"]))
  np.testing.assert_allclose(nchw(output), arrays["output"], atol=1e-4, rtol=0)
  stages = state["intermediates"]["backbone"]
  compared = 0
  for key in meta["intermediates"]:
    stage, branch = key.split("/")
    np.testing.assert_allclose(nchw(stages[stage][0][int(branch)]), arrays[key], atol=1e-4, rtol=0, err_msg=key)
    compared += 1
  assert compared == len(meta["intermediates"]) > 0


OFFICIAL_OCR_PARAMS = {19: 70_372_678, 59: 70_422_038, 60: 70_423_272, 20: 70_373_912}  # Cityscapes, PC, LIP


@pytest.mark.parametrize("classes", sorted(OFFICIAL_OCR_PARAMS))
def test_ocr_parameter_counts_equal_official(classes):
  model = hrnet_jax.create_model("hrnet_w48", task="segmentation", head="ocr", num_classes=classes,
                                 align_corners=True)
  assert count_parameters(model) == OFFICIAL_OCR_PARAMS[classes]


def ocr_golden_model(**options):
  meta = json.loads(shared_path("golden", "ocr_tiny.json").read_text())
  return meta, hrnet_jax.create_model(
      meta["extra"], task="segmentation", head="ocr", num_classes=meta["num_classes"],
      align_corners=meta["align_corners"], ocr_mid_channels=meta["ocr_mid_channels"],
      ocr_key_channels=meta["ocr_key_channels"], **options)


def ocr_golden_inputs():
  with np.load(shared_path("golden", "ocr_tiny.npz")) as archive:
    arrays = {k: archive[k] for k in archive.files}
  state_dict = {k[len("sd/"):]: v for k, v in arrays.items() if k.startswith("sd/")}
  return arrays, state_dict, jnp.asarray(arrays["input"].transpose(0, 2, 3, 1))


@pytest.mark.parametrize("scan_repeats", [False, True])
def test_ocr_golden_parity_with_official_pytorch(scan_repeats):
  """Both outputs and the two OCR representations of the official seg_hrnet_ocr, from its weights."""
  meta, model = ocr_golden_model(scan_repeats=scan_repeats)
  arrays, state_dict, images = ocr_golden_inputs()
  assert count_parameters(model, (1, 64, 96, 3)) == meta["params"]
  variables = hrnet_jax.load_pytorch_weights(model, state_dict)
  outputs, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(variables, images)
  chex.assert_shape([nchw(outputs.ocr), nchw(outputs.aux)], tuple(meta["output_shape"]))
  np.testing.assert_allclose(nchw(outputs.ocr), arrays["output"], atol=1e-4, rtol=0)
  np.testing.assert_allclose(nchw(outputs.aux), arrays["output_aux"], atol=1e-4, rtol=0)
  for name in ("ocr_input", "ocr_features"):
    np.testing.assert_allclose(nchw(state["intermediates"]["head"][name][0]), arrays[name], atol=1e-4, rtol=0,
                               err_msg=name)


def test_ocr_in_bfloat16_is_close_to_float32_with_float32_softmaxes():
  _, model = ocr_golden_model()
  _, bf16_model = ocr_golden_model(dtype=jnp.bfloat16)
  _, state_dict, images = ocr_golden_inputs()
  variables = hrnet_jax.load_pytorch_weights(model, state_dict)
  out32 = jax.jit(model.apply)(variables, images).ocr
  out16 = jax.jit(bf16_model.apply)(variables, images).ocr
  assert out16.dtype == jnp.float32
  relative = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
  assert relative < 2e-2, relative
  # Both softmaxes (over positions, over classes) exponentiate in float32 inside the bfloat16 model.
  exponentials = [eqn.outvars[0].aval.dtype for eqn in all_equations(jax.make_jaxpr(bf16_model.apply)(
      variables, images).jaxpr) if eqn.primitive.name == "exp"]
  assert len(exponentials) == 2 and set(exponentials) == {jnp.dtype(jnp.float32)}, exponentials


def all_equations(jaxpr):
  """The equations of ``jaxpr`` and of every jaxpr nested in them."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      inner = getattr(param, "jaxpr", param)
      if hasattr(inner, "eqns"):
        yield from all_equations(inner)


def test_the_ocr_head_brings_its_official_network_defaults_and_owns_its_options():
  """align_corners=True and BatchNorm momentum 0.1 (HRNet-OCR's code), unless given; OCR options need the head."""
  model = hrnet_jax.create_model("hrnet_tiny", task="segmentation", head="ocr", num_classes=5)
  assert model.backbone.fusion.align_corners and model.head.align_corners
  assert model.backbone.bn_momentum == model.head.bn_momentum == 0.1
  given = hrnet_jax.create_model("hrnet_tiny", task="segmentation", head="ocr", num_classes=5, align_corners=False)
  assert not given.backbone.fusion.align_corners and not given.head.align_corners
  assert not hrnet_jax.create_model("hrnet_tiny", task="segmentation", num_classes=5).backbone.fusion.align_corners
  with pytest.raises(ValueError, match="ocr_key_channels only apply to head='ocr'"):
    hrnet_jax.create_model("hrnet_tiny", task="segmentation", ocr_key_channels=8)


@pytest.mark.parametrize("name", sorted(OFFICIAL_CLS_GMACS))
def test_classification_macs_match_official(name):
  macs = sum(model_summary.conv_macs(hrnet_jax.create_model(name), (1, 224, 224, 3)).values())
  assert macs / 1e9 == pytest.approx(OFFICIAL_CLS_GMACS[name], rel=0.03)


def test_summary_reports_xla_cost_analysis_beside_the_tap_count():
  result = model_summary.summarize("hrnet_w18", "classification", (224, 224))
  assert result.macs / 1e9 == pytest.approx(OFFICIAL_CLS_GMACS["hrnet_w18"], rel=0.03)
  # XLA skips the zero-padding taps but adds elementwise work: a few percent below, never above.
  assert 0.9 < result.xla_macs / result.macs < 1.0
  assert result.params == OFFICIAL_CLS_PARAMS["hrnet_w18"]


def test_summary_command_prints_breakdown(capsys):
  summary.main(["hrnet_tiny", "--task", "pose", "--size", "96x64"])
  out = capsys.readouterr().out
  for part in ("parameters", "MACs", "stem", "stage1", "transition1", "stage4", "head"):
    assert part in out


def test_tiny_model_jits_forward_and_backward_and_bfloat16_is_close():
  _, arrays, model, state_dict = load_golden("cls_tiny")
  variables = hrnet_jax.load_pytorch_weights(model, state_dict)
  images = jnp.asarray(arrays["input"].transpose(0, 2, 3, 1))

  def loss_fn(params):
    logits, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, images,
                                  train=True, mutable=["batch_stats"])
    return jnp.mean(logits**2), updates

  (loss, updates), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
  assert np.isfinite(float(loss))
  chex.assert_trees_all_equal_shapes(grads, variables["params"])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(variables["batch_stats"])

  bf16_model = model.clone(backbone=model.backbone.clone(dtype=jnp.bfloat16),
                           head=model.head.clone(dtype=jnp.bfloat16))
  out32 = jax.jit(model.apply)(variables, images)
  out16 = jax.jit(bf16_model.apply)(variables, images)
  assert out16.dtype == jnp.float32  # heads return float32 for the loss
  relative = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
  assert relative < 2e-2


def test_bfloat16_keeps_float32_parameters_and_batch_statistics():
  model = hrnet_jax.create_model("hrnet_tiny", task="segmentation", num_classes=3, dtype=jnp.bfloat16)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  dtypes = {leaf.dtype for leaf in jax.tree.leaves(variables)}
  assert dtypes == {jnp.dtype(jnp.float32)}


def test_norm_eval_trains_batchnorm_scales_on_running_statistics_it_leaves_alone():
  """MMDetection's ``norm_eval``: in training the backbone's BatchNorm normalises with its running statistics and
  does not update them; its scale and bias still get gradients. The head's norms (here segmentation's) train."""
  model = hrnet_jax.create_model("hrnet_tiny", task="segmentation", num_classes=3, norm_eval=True)
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = random_variables(model, images.shape)
  variables["params"] = jax.tree.map(lambda p: 0.2 * p, variables["params"])
  stats = jax.tree_util.tree_map_with_path(  # statistics other than the initial 0 / 1, so that their use shows
      lambda path, v: 0.1 * v if path[-1].key == "mean" else 1.0 + np.abs(v), variables["batch_stats"])
  backbone = lambda module, x, train: module.backbone(x, train=train)

  @jax.jit
  def run(params):
    def loss(params):
      logits, state = model.apply({"params": params, "batch_stats": stats}, images, train=True,
                                  mutable=["batch_stats"])
      return jnp.sum(logits**2), state["batch_stats"]
    grads, new_stats = jax.grad(loss, has_aux=True)(params)
    features = [model.apply({"params": params, "batch_stats": stats}, images, train, method=backbone,
                            mutable=["batch_stats"])[0] for train in (True, False)]
    return grads, new_stats, features

  grads, new_stats, (in_training, in_inference) = run(variables["params"])
  chex.assert_trees_all_equal(new_stats["backbone"], stats["backbone"])
  assert not np.allclose(new_stats["head"]["last_layer_1"]["mean"], stats["head"]["last_layer_1"]["mean"])
  assert np.abs(grads["backbone"]["bn1"]["scale"]).max() > 0 and np.abs(grads["backbone"]["bn1"]["bias"]).max() > 0
  chex.assert_trees_all_close(in_training, in_inference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task,size,out_shape", [
    ("classification", (64, 64), (2, 7)),
    ("pose", (96, 64), (2, 24, 16, 7)),
    ("segmentation", (72, 100), (2, 18, 25, 7)),
    ("landmarks", (64, 64), (2, 16, 16, 7)),
])
def test_every_task_head_output_shape(task, size, out_shape):
  count = {"classification": "num_classes", "segmentation": "num_classes", "pose": "num_keypoints",
           "landmarks": "num_landmarks"}[task]
  model = hrnet_jax.create_model("hrnet_tiny", task=task, **{count: 7})
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((2, *size, 3)))[0])
  chex.assert_shape(out, out_shape)
  assert out.dtype == jnp.float32


def test_features_and_detection_outputs():
  x = jnp.zeros((1, 128, 128, 3))
  features = jax.eval_shape(lambda: hrnet_jax.create_model("hrnet_w18", task="features").init_with_output(
      jax.random.key(0), x)[0])
  assert [f.shape for f in features] == [(1, 32, 32, 18), (1, 16, 16, 36), (1, 8, 8, 72), (1, 4, 4, 144)]
  pyramid = hrnet_jax.create_model("hrnet_tiny", task="detection", head="v2p")  # the bare V2p pyramid
  levels = jax.eval_shape(lambda: pyramid.init_with_output(jax.random.key(0), x)[0])
  assert [lv.shape for lv in levels] == [(1, 32 // 2**k, 32 // 2**k, 256) for k in range(5)]
  # FCOS's neck (MMDetection's HRFPN with stride=2): strides 8 ... 128; max pooling as its pooling_type="MAX".
  image = jax.random.normal(jax.random.key(1), x.shape)
  pooled = {}
  for pooling in ("avg", "max"):
    model = hrnet_jax.create_model("hrnet_tiny", task="detection", head="v2p", fpn_stride=2, fpn_pooling=pooling,
                                   fpn_channels=8)
    pooled[pooling] = model.apply(model.init(jax.random.key(0), x), image)
  assert [lv.shape for lv in pooled["max"]] == [(1, 16 // 2**k, 16 // 2**k, 8) for k in range(5)]
  chex.assert_trees_all_close(pooled["max"][0], pooled["avg"][0])  # the same weights; level 0 is not pooled
  assert not np.allclose(pooled["max"][1], pooled["avg"][1])
  with pytest.raises(ValueError, match="fpn_pooling must be one of"):
    hrnet_jax.create_model("hrnet_tiny", task="detection", head="v2p", fpn_pooling="median").init(
        jax.random.key(0), x)


# Every kind of repeat: stage 1's blocks after the first, the blocks of each branch, and a stage's modules (the pose
# network's last module outputs one branch, so it is not stacked with the others).
REPEATING_SPEC = hrnet_jax.HRNetSpec((
    hrnet_jax.StageSpec(1, "BOTTLENECK", (3,), (8,)),
    hrnet_jax.StageSpec(1, "BASIC", (1, 1), (4, 8)),
    hrnet_jax.StageSpec(2, "BASIC", (2, 1, 1), (4, 8, 16)),
    hrnet_jax.StageSpec(3, "BASIC", (1, 1, 1, 1), (4, 8, 16, 32)),
))


def test_scanned_repeats_are_stacked_and_compute_exactly_the_same():
  options = {"num_keypoints": 3, "fixed_stage1": False}
  per_layer = hrnet_jax.create_model(REPEATING_SPEC, task="pose", **options)
  scanned = hrnet_jax.create_model(REPEATING_SPEC, task="pose", scan_repeats=True, **options)
  images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
  variables = initialisation_like(random_variables(per_layer, images.shape))  # no initialisation to compile
  like = jax.eval_shape(scanned.init, jax.random.key(0), images)
  stacked = {c: scan_layout.stack(variables[c], like[c]) for c in variables}
  chex.assert_trees_all_equal_shapes_and_dtypes(stacked, like)
  backbone = stacked["params"]["backbone"]
  assert backbone["layer1_1_to_2"]["conv1"]["kernel"].shape == (2, 1, 1, 32, 8)
  assert backbone["stage3_0_to_1"]["branches_0_0_to_1"]["conv1"]["kernel"].shape == (2, 2, 3, 3, 4, 4)
  assert backbone["stage4_0_to_1"]["fuse_layers_3_0_2_0"]["kernel"].shape == (2, 3, 3, 4, 32)
  assert "stage4_2" in backbone and "stage2_0" in backbone
  assert count_parameters(scanned) == count_parameters(per_layer)
  assert model_summary.conv_macs(scanned, images.shape) == model_summary.conv_macs(per_layer, images.shape)

  def loss_and_stats(model, params, batch_stats):
    def loss_fn(p):
      out, updates = model.apply({"params": p, "batch_stats": batch_stats}, images, train=True,
                                 mutable=["batch_stats"])
      return jnp.sum(out * jnp.arange(out.size, dtype=out.dtype).reshape(out.shape) / out.size), (out, updates)
    (_, (out, updates)), grads = compilation.run_once(jax.value_and_grad(loss_fn, has_aux=True), params)
    return out, updates["batch_stats"], grads

  out, stats, grads = loss_and_stats(per_layer, variables["params"], variables["batch_stats"])
  scanned_out, scanned_stats, scanned_grads = loss_and_stats(scanned, stacked["params"], stacked["batch_stats"])
  np.testing.assert_allclose(scanned_out, out, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(scan_layout.unstack(scanned_stats), stats, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(scan_layout.unstack(scanned_grads), grads, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_equal(scan_layout.unstack(stacked), jax.tree.map(np.asarray, variables))


def _fusing_modules(model, size=(64, 64)):
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *size, 3)))["params"]["backbone"]
  return sorted(name for name, sub in params.items()
                if name.startswith("stage") and any(k.startswith("fuse_layers") for k in sub))


@pytest.mark.parametrize("schedule,expected", [("every", 8), ("across", 3), ("final", 1)])
def test_fuse_schedule_counts_fusions_as_table_12(schedule, expected):
  model = hrnet_jax.create_model("hrnet_w32", task="pose", fuse_schedule=schedule)
  fusing = _fusing_modules(model)
  assert len(fusing) == expected
  assert "stage4_2" in fusing  # the very last module always fuses


def test_fusion_variants_change_the_network():
  base = hrnet_jax.create_model("hrnet_tiny", task="segmentation")
  bilinear = hrnet_jax.create_model("hrnet_tiny", task="segmentation", fusion_downsample="bilinear")
  base_params = flax.traverse_util.flatten_dict(
      jax.eval_shape(base.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"], sep="/")
  bilinear_params = flax.traverse_util.flatten_dict(
      jax.eval_shape(bilinear.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"], sep="/")
  # Strided downsampling from branch 0 to branch 3 is a chain of three 3x3 convs; bilinear uses one 1x1 conv.
  assert "backbone/stage4_1/fuse_layers_3_0_2_0/kernel" in base_params
  assert bilinear_params["backbone/stage4_1/fuse_layers_3_0_0/kernel"].shape == (1, 1, 8, 64)

  images = jax.random.normal(jax.random.key(1), (1, 64, 64, 3))
  variables = compilation.run_once(base.init, jax.random.key(0), images)
  product = hrnet_jax.create_model("hrnet_tiny", task="segmentation", fusion_op="product")
  assert not np.allclose(jax.jit(base.apply)(variables, images), jax.jit(product.apply)(variables, images))


def test_four_streams_from_the_start():
  spec = hrnet_jax.HRNetSpec((
      hrnet_jax.StageSpec(1, "BOTTLENECK", (1,), (16,)),
      hrnet_jax.StageSpec(1, "BASIC", (1,) * 4, (8, 16, 32, 64)),
      hrnet_jax.StageSpec(1, "BASIC", (1,) * 4, (8, 16, 32, 64)),
      hrnet_jax.StageSpec(1, "BASIC", (1,) * 4, (8, 16, 32, 64)),
  ))
  model = hrnet_jax.create_model(spec, task="features")
  (_, state) = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                                            mutable=True))
  stage2 = state["intermediates"]["backbone"]["stage2"][0]
  assert [x.shape for x in stage2] == [(1, 16, 16, 8), (1, 8, 8, 16), (1, 4, 4, 32), (1, 2, 2, 64)]
  # The 1/32 branch comes from the 1/4 branch by three stride-2 convs.
  assert "transition1_3_2_0" in state["params"]["backbone"]


@pytest.mark.parametrize("branch", [0, 1, 2, 3])
def test_v1_head_from_any_branch_outputs_quarter_resolution(branch):
  model = hrnet_jax.create_model("hrnet_tiny", task="pose", head_branch=branch)
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, 96, 64, 3)))[0])
  chex.assert_shape(out, (1, 24, 16, 17))


@pytest.mark.parametrize("head,mixing_width", [("v1", 8), ("v1h", 15 * 8), ("v2", 8 + 16 + 32 + 64)])
def test_representation_heads(head, mixing_width):
  model = hrnet_jax.create_model("hrnet_tiny", task="segmentation", head=head)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]["head"]
  assert params["last_layer_0"]["kernel"].shape[-1] == mixing_width


def test_pose_last_module_outputs_only_the_high_resolution_branch():
  model = hrnet_jax.create_model("hrnet_tiny", task="pose")
  (_, state) = model.init_with_output(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), mutable=True)
  assert len(state["intermediates"]["backbone"]["stage4"][0]) == 1
  assert set(state["params"]["backbone"]["stage4_1"]) >= {"fuse_layers_0_1_0"}
  assert not any(k.startswith("fuse_layers_1") for k in state["params"]["backbone"]["stage4_1"])


def test_unknown_variant_task_and_option_errors_list_valid_ones():
  with pytest.raises(ValueError, match=r"unknown variant 'hrnet_w33'.*hrnet_w32.*known: .*hrnet_w18_small_v1"):
    hrnet_jax.create_model("hrnet_w33")
  with pytest.raises(ValueError, match=r"unknown task 'posee'.*did you mean pose"):
    hrnet_jax.create_model("hrnet_w32", task="posee")
  with pytest.raises(ValueError, match=r"task 'pose' takes its output count as num_keypoints, not num_classes"):
    hrnet_jax.create_model("hrnet_w32", task="pose", num_classes=3)


def test_nearest_fusion_needs_sizes_divisible_by_32():
  model = hrnet_jax.create_model("hrnet_tiny", task="pose")
  with pytest.raises(ValueError, match="divisible by 32"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 72, 100, 3)))


@pytest.mark.parametrize("in_size,out_size", [(5, 18), (9, 18), (3, 7), (18, 5), (1, 4), (4, 1)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_interpolation_matrix_matches_pytorch_formula(in_size, out_size, align_corners):
  """Reference: PyTorch's upsample_bilinear2d index arithmetic (aten/src/ATen/native/UpSample.h), per output."""
  matrix = layers.interpolation_matrix(in_size, out_size, align_corners)
  for o in range(out_size):
    if align_corners:
      src = o * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
      src = max((o + 0.5) * in_size / out_size - 0.5, 0.0)
    i0 = min(int(np.floor(src)), in_size - 1)
    i1 = i0 + 1 if i0 < in_size - 1 else i0
    lam = src - i0
    expected = np.zeros(in_size)
    expected[i0] += 1 - lam
    expected[i1] += lam
    np.testing.assert_allclose(matrix[o], expected, atol=1e-6)


def test_bilinear_upsampling_agrees_with_jax_image_resize():
  x = jax.random.normal(jax.random.key(0), (2, 5, 7, 3))
  ours = layers.resize_bilinear(x, (18, 25), align_corners=False)
  theirs = jax.image.resize(x, (2, 18, 25, 3), "bilinear")
  np.testing.assert_allclose(ours, theirs, atol=1e-5)
  np.testing.assert_array_equal(layers.upsample_nearest(x, 4), jnp.repeat(jnp.repeat(x, 4, 1), 4, 2))


def test_official_dense_init_draws_every_conv_from_normal_0_001():
  """conv_init='normal' is the official pose/segmentation init that the paper's from-scratch rows start from."""
  model = hrnet_jax.create_model("hrnet_tiny", task="segmentation", conv_init="normal")
  params = compilation.run_once(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  kernels = {k: v for k, v in flax.traverse_util.flatten_dict(params, sep="/").items() if k.endswith("kernel")}
  values = np.concatenate([np.ravel(v) for v in kernels.values()])
  assert abs(values.std() - 0.001) < 5e-5 and abs(values.mean()) < 5e-5


@pytest.mark.parametrize("shape,kernel,stride", [((2, 9, 7, 3), 3, 2), ((2, 8, 8, 4), 3, 1), ((1, 5, 6, 4), 1, 2),
                                                 ((2, 10, 10, 3), 3, 2)])
def test_loop_safe_conv_gradient_equals_jax_and_stays_channels_last_in_a_scan(shape, kernel, stride):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, shape[-1], 5)), jnp.float32)
  pad = ((kernel // 2, kernel // 2),) * 2
  nhwc = ("NHWC", "HWIO", "NHWC")
  highest = jax.lax.Precision.HIGHEST

  def loss(conv):
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (stride, stride), pad, dimension_numbers=nhwc, precision=highest)))

  expected = jax.grad(loss(jax.lax.conv_general_dilated), (0, 1))(x, w)
  chex.assert_trees_all_close(jax.grad(loss(layers.loop_safe_conv), (0, 1))(x, w), expected, rtol=1e-5, atol=1e-5)

  def scanned(w, x):  # the same kernel applied twice in a loop, as nn.scan runs repeated layers
    def body(carry, kernel_):
      return jnp.tanh(layers.loop_safe_conv(carry, kernel_, (1, 1), pad, dimension_numbers=nhwc)), None
    return jnp.sum(jax.lax.scan(body, x, jnp.stack([w[..., :shape[-1]]] * 2))[0])

  hlo = jax.jit(jax.grad(scanned)).lower(w, x).compile().as_text()
  labels = set(re.findall(r"convolution\(.*dim_labels=(\S+?),", hlo))
  assert labels == {"b01f_01io->b01f"}  # the only form XLA:CPU runs on its fast kernels


def test_relu_kept_equals_relu_in_values_and_gradient():
  # The suite runs on CPU, so this checks the branch written differently from nn.relu.
  x = jnp.array([-2.0, -0.0, 0.0, 1e-30, 3.0, -jnp.inf, jnp.inf, jnp.nan])
  chex.assert_trees_all_equal(jax.jit(layers.relu_kept)(x), jax.nn.relu(x))
  weights = jnp.arange(1.0, 8.0)
  chex.assert_trees_all_equal(jax.grad(lambda v: jnp.sum(layers.relu_kept(v) * weights))(x[:7]),
                              jax.grad(lambda v: jnp.sum(jax.nn.relu(v) * weights))(x[:7]))


def test_cpu_fusions_never_recompute_earlier_modules_in_the_train_step():
  # Without relu_kept, XLA's CPU fusion recomputed every earlier block's BN, sum and ReLU inside each later
  # consumer: fusions spanning a whole stage (W18: 900 HLO lines; 40% of the train step, and 2x its compile time).
  model = hrnet_jax.create_model("hrnet_tiny", num_classes=4, head_channels=(8, 16, 32, 64), final_channels=64)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))

  def loss(params, images):
    logits, _ = model.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"])
    return jnp.sum(logits)

  hlo = jax.jit(jax.grad(loss)).lower(variables["params"], jnp.ones((2, 32, 32, 3))).compile().as_text()
  # The residual blocks whose ops each fusion holds: a block's own and at most its neighbour's (5 without the fix).
  blocks_per_fusion = [set(re.findall(r"backbone/(\w+/branches_\d+_\d+|layer1_\d+)/", body))
                       for body in re.findall(r"\n%fused_computation[^\n]*\n(.*?)\n}", hlo, re.S)]
  assert blocks_per_fusion and max(len(blocks) for blocks in blocks_per_fusion) <= 2
