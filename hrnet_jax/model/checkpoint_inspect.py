"""Reads the architecture off an official HRNet state_dict: which variant, which head, how many outputs.

Used to turn "232 missing keys" into "this is an hrnet_w48 pose checkpoint; the model is hrnet_w32".
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from hrnet_jax.model.backbone import HRNetSpec, StageSpec
from hrnet_jax.model.variants import VARIANTS

HEAD_PREFIXES = ("incre_modules", "downsamp_modules", "final_layer", "classifier", "last_layer", "head",
                 "reduction_conv", "fpn_convs", "aux_head", "conv3x3_ocr", "ocr_distri_head", "cls_head",
                 "neck", "bbox_head", "rpn_head", "mask_head", "hm", "wh", "reg")  # the detectors' (CenterNet: hm ...)


def _indices(keys: list[str], pattern: str) -> list[int]:
  regex = re.compile(pattern)
  return sorted({int(m.group(1)) for k in keys if (m := regex.match(k))})


def infer_spec(state: Mapping[str, Any]) -> HRNetSpec | None:
  """The ``HRNetSpec`` a state_dict was made from, or None if it is not an HRNet."""
  keys = list(state)
  layer1_blocks = _indices(keys, r"layer1\.(\d+)\.")
  if not layer1_blocks or "layer1.0.conv1.weight" not in state:
    return None
  stages = [StageSpec(1, "BOTTLENECK" if "layer1.0.conv3.weight" in state else "BASIC", (len(layer1_blocks),),
                      (int(state["layer1.0.conv1.weight"].shape[0]),))]
  for s in (2, 3, 4):
    modules = _indices(keys, rf"stage{s}\.(\d+)\.")
    branches = _indices(keys, rf"stage{s}\.0\.branches\.(\d+)\.")
    if not modules or not branches:
      return None
    bottleneck = f"stage{s}.0.branches.0.0.conv3.weight" in state
    blocks = tuple(len(_indices(keys, rf"stage{s}\.0\.branches\.{i}\.(\d+)\.")) for i in branches)
    channels = tuple(int(state[f"stage{s}.0.branches.{i}.0.conv1.weight"].shape[0]) for i in branches)
    stages.append(StageSpec(len(modules), "BOTTLENECK" if bottleneck else "BASIC", blocks, channels))
  return HRNetSpec(tuple(stages))


def infer_head(state: Mapping[str, Any]) -> str:
  """A phrase naming the head in a state_dict and its output count."""
  if "classifier.weight" in state:
    return f"classification head with {state['classifier.weight'].shape[0]} classes"
  if "final_layer.weight" in state:
    return f"V1 heatmap head (pose) with {state['final_layer.weight'].shape[0]} outputs"
  if "cls_head.weight" in state and "aux_head.3.weight" in state:
    return (f"OCR head (segmentation) with {state['cls_head.weight'].shape[0]} classes and "
            f"{state['conv3x3_ocr.0.weight'].shape[0]} OCR channels")
  if "aux_head.3.weight" in state:  # a V2 head, renamed as the OCR model's auxiliary head
    return f"V2 head (segmentation) with {state['aux_head.3.weight'].shape[0]} outputs, as an OCR auxiliary head"
  if "last_layer.3.weight" in state:
    return f"V2 head (segmentation/landmarks) with {state['last_layer.3.weight'].shape[0]} outputs"
  if "reduction_conv.kernel" in state or "reduction_conv.weight" in state:
    return "HRFPN (V2p) head"
  if "neck.reduction_conv.weight" in state:
    if "bbox_head.fcos_cls.weight" in state:
      return f"HRFPN (V2p) neck and FCOS head with {state['bbox_head.fcos_cls.weight'].shape[0]} classes"
    return "HRFPN (V2p) neck and a detection head"
  return "no head (features only)"


def describe(state: Mapping[str, Any]) -> str:
  """E.g. ``hrnet_w48 with V1 heatmap head (pose) with 17 outputs``."""
  spec = infer_spec(state)
  if spec is None:
    return "not an HRNet state_dict (no layer1/stage2-4 keys)"
  names = [name for name, known in VARIANTS.items() if known.stages[1:] == spec.stages[1:]]
  if names:
    body = names[0]
  else:
    body = "an unnamed HRNet (stage channels " + ", ".join(str(s.num_channels) for s in spec.stages[1:]) + ")"
  stage1 = spec.stages[0]
  return (f"{body} (stage 1: {stage1.num_blocks[0]} {stage1.block.lower()} blocks of {stage1.num_channels[0]}) "
          f"with {infer_head(state)}")
