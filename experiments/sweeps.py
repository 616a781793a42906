"""The paper's tables and ablations as data: each sweep lists its rows, each row a config and a set of overrides.

    python experiments/launch.py table12_pose --root /runs/table12_pose        # one command per row
    python experiments/collect.py table12_pose --root /runs/table12_pose       # the table, the paper beside it

A row's ``overrides`` are dotted config keys (``"total_steps": 100``); ``model`` holds model options merged into
the config's ``model.overrides`` (``{"fuse_schedule": "final"}``). ``paper`` is the paper's number for the row, or
None where the paper shows it only in a figure (not transcribed here, rather than guessed).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Table 12 and Sec. 6 of the paper: trained from scratch, with the official dense-task initialisation.
FROM_SCRATCH = {"conv_init": "normal"}
COCO_W32 = "configs/coco_pose.py:w32_256x192"
CITYSCAPES_W48 = "configs/cityscapes.py:w48"


@dataclasses.dataclass(frozen=True)
class Row:
  name: str  # the row's workdir under the sweep's root, and its key in the collected table
  label: str  # what the table shows
  config: str  # configs/<file>.py[:arg], relative to the repository root
  paper: float | None
  model: dict[str, Any] = dataclasses.field(default_factory=dict)
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
  series: str = ""  # plots: the line or bar group (e.g. "W32")
  x: str = ""  # plots: the position on the x axis (e.g. "2x")


@dataclasses.dataclass(frozen=True)
class Sweep:
  name: str
  title: str
  metric: str  # the metrics.jsonl key collected
  scale: float  # metric x scale is in the paper's unit (COCO AP is stored in [0, 1], the paper gives %)
  unit: str
  rows: tuple[Row, ...]
  plot: str = ""  # '' (table only), 'bars' or 'lines'
  proxy: str = ""  # for proxies: what stands in for the paper's setting; the numbers are the proxy's own

  def row(self, name: str) -> Row:
    for row in self.rows:
      if row.name == name:
        return row
    raise KeyError(f"sweep {self.name} has no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")


FUSION_ROWS = (  # (name, label, model options, paper pose AP, paper seg mIoU)
    ("final", "fusion at the end only", {"fuse_schedule": "final"}, 70.8, 74.8),
    ("across", "+ across stages", {"fuse_schedule": "across"}, 71.9, 75.4),
    ("within", "+ within stages (HRNet)", {"fuse_schedule": "every"}, 73.4, 76.4),
    ("bilinear_down", "bilinear downsampling instead of strided convs", {"fusion_downsample": "bilinear"}, 72.6,
     74.2),
    ("product", "product instead of sum", {"fusion_op": "product"}, 54.7, 66.0),
    ("four_streams", "four streams from the start", {"four_streams": True}, 72.5, 75.7),
)


def table12_pose() -> Sweep:
  rows = tuple(Row(name, label, COCO_W32, pose, {**FROM_SCRATCH, **options}, series="HRNetV1-W32", x=name)
               for name, label, options, pose, _ in FUSION_ROWS)
  return Sweep("table12_pose", "Table 12: multi-resolution fusion, COCO val pose (HRNetV1-W32, 256x192, from scratch)",
               "eval/AP", 100.0, "AP", rows, plot="bars")


def table12_segmentation() -> Sweep:
  rows = tuple(Row(name, label, CITYSCAPES_W48, seg, {**FROM_SCRATCH, **options}, series="HRNetV2-W48", x=name)
               for name, label, options, _, seg in FUSION_ROWS)
  return Sweep("table12_segmentation",
               "Table 12: multi-resolution fusion, Cityscapes val (HRNetV2-W48, from scratch)", "eval/miou", 1.0,
               "mIoU", rows, plot="bars")


def fig9_pose_resolution() -> Sweep:
  rows = tuple(Row(f"{width}_{label}", f"HRNetV1-{width.upper()}, heatmaps from the {label} branch",
                   f"configs/coco_pose.py:{width}_256x192", None, {"head_branch": branch}, series=width.upper(),
                   x=label)
               for width in ("w32", "w48") for branch, label in enumerate(("1x", "2x", "4x")))
  return Sweep("fig9_pose_resolution", "Fig. 9: resolution of the representation, COCO val pose (256x192)",
               "eval/AP", 100.0, "AP", rows, plot="lines")


def _representation_rows(config: str, widths: dict[str, dict[str, Any]], paper: dict[tuple[str, str], float]):
  return tuple(Row(f"{width}_{head}", f"HRNet{head.upper()}-{width.upper()}", config,
                   paper.get((width, head)), {"head": head}, overrides, series=width.upper(), x=head.upper())
               for width, overrides in widths.items() for head in ("v1", "v1h", "v2"))


def fig10_cityscapes() -> Sweep:
  widths = {"w18": {"model.name": "hrnet_w18"}, "w48": {}}
  return Sweep("fig10_cityscapes", "Fig. 10: HRNetV1 / V1h / V2 representations, Cityscapes val", "eval/miou", 1.0,
               "mIoU", _representation_rows(CITYSCAPES_W48, widths, {}), plot="bars")


def fig10_pascal_context() -> Sweep:
  widths = {"w18": {"model.name": "hrnet_w18"}, "w48": {}}
  return Sweep("fig10_pascal_context", "Fig. 10: HRNetV1 / V1h / V2 representations, PASCAL-Context val (59)",
               "eval/miou", 1.0, "mIoU", _representation_rows("configs/pascal_context.py:59", widths, {}),
               plot="bars")


def fig10_pose() -> Sweep:
  rows = _representation_rows(COCO_W32, {"w32": {}}, {("w32", "v1"): 73.4, ("w32", "v2"): 73.6})
  return Sweep("fig10_pose", "Fig. 10 / Sec. 6: HRNetV1 / V1h / V2 for COCO val pose (W32, 256x192)", "eval/AP", 100.0,
               "AP", rows, plot="bars")


def fig10_detection() -> Sweep:
  """Fig. 10(b): Faster R-CNN (1x) on pyramids built from HRNetV1's 1x branch, V1h's widened one, and V2p."""
  rows = tuple(Row(f"{width}_{representation}", f"HRNet{representation.upper()}p-{width.upper()}",
                   f"configs/coco_detection.py:faster_rcnn_{width}", None, {"fpn_representation": representation},
                   series=width.upper(), x=f"{representation.upper()}p")
               for width in ("w18", "w32") for representation in ("v1", "v1h", "v2"))
  return Sweep("fig10_detection", "Fig. 10(b): HRNetV1p / V1hp / V2p under Faster R-CNN, COCO val box AP",
               "eval/bbox_AP", 100.0, "AP", rows, plot="bars")


def _main_table(name: str, title: str, config_file: str, papers: str, metric: str, scale: float, unit: str,
                arg: str = "{}", protocol: Callable[[str], dict[str, Any]] = lambda variant: {}) -> Sweep:
  """One row per variant of a config file, with the paper's numbers the config file itself lists (``papers``);
  ``protocol(variant)``: the overrides that evaluate as the paper's number was (e.g. multi-scale + flip)."""
  from hrnet_jax.engine import config_lib  # pylint: disable=import-outside-toplevel
  numbers = getattr(config_lib.config_module(os.path.join(REPO, "configs", config_file)), papers)
  rows = tuple(Row(variant, variant, f"configs/{config_file}:{arg.format(variant)}", paper,
                   overrides=protocol(variant), series=unit, x=variant)
               for variant, paper in numbers.items())
  return Sweep(name, title, metric, scale, unit, rows)


def main_imagenet() -> Sweep:
  return _main_table("main_imagenet", "ImageNet val top-1, single 224 crop (Table 9)", "imagenet.py", "PAPER_TOP1",
                     "eval/top1", 1.0, "top-1", arg="variant={}")


def main_coco() -> Sweep:
  return _main_table("main_coco", "COCO val2017 AP, detector boxes, flip test (Table 1)", "coco_pose.py", "PAPER_AP",
                     "eval/AP", 100.0, "AP")


def main_cityscapes() -> Sweep:
  return _main_table("main_cityscapes", "Cityscapes val mIoU, single scale (official READMEs)", "cityscapes.py",
                     "PAPER_MIOU", "eval/miou", 1.0, "mIoU")


def _pascal_context_protocol(benchmark: str) -> dict[str, Any]:
  # The official READMEs' test commands: scales 0.5-1.75 (HRNetV2) or 0.5-2.0 (OCR), with flip.
  scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) + ((2.0,) if benchmark.startswith("ocr_") else ())
  return {"test.scales": scales, "test.flip": True}


def main_pascal_context() -> Sweep:
  return _main_table("main_pascal_context", "PASCAL-Context val (testval) mIoU, multi-scale + flip (Table 8; OCR: "
                     "official README)", "pascal_context.py", "PAPER_MIOU", "eval/miou", 1.0, "mIoU",
                     protocol=_pascal_context_protocol)


def main_lip() -> Sweep:
  return _main_table("main_lip", "LIP val mIoU, flip test (Table 10; OCR: official README)", "lip.py", "PAPER_MIOU",
                     "eval/miou", 1.0, "mIoU")


def _detection_rows(papers: str) -> tuple[Row, ...]:
  """A row per (variant, schedule, multi-scale) of ``configs/coco_detection.py``'s ``papers`` numbers."""
  from hrnet_jax.engine import config_lib  # pylint: disable=import-outside-toplevel
  numbers = getattr(config_lib.config_module(os.path.join(REPO, "configs", "coco_detection.py")), papers)
  rows = []
  for (variant, schedule, multiscale), paper in numbers.items():
    arg = variant + (f",schedule={schedule}" if schedule else "") + (",multiscale=true" if multiscale else "")
    name = "_".join(part for part in (variant, schedule, "ms" if multiscale else "") if part)
    rows.append(Row(name, name, f"configs/coco_detection.py:{arg}", paper, series=variant.rsplit("_", 1)[0],
                    x=variant.rsplit("_", 1)[1]))
  return tuple(rows)


def main_detection() -> Sweep:
  """The detectors' rows: MMDetection's COCO val2017 numbers the config file cites (CenterNet: the paper's
  test-dev number, as the paper gives no val one)."""
  return Sweep("main_detection", "COCO val2017 box AP, single scale (Tables 11 and 13: FCOS, Faster / Mask / "
               "Cascade (Mask) R-CNN as MMDetection's models; CenterNet test-dev)", "eval/bbox_AP", 100.0, "AP",
               _detection_rows("PAPER_AP"))


def main_instance_segmentation() -> Sweep:
  """Mask R-CNN and Cascade Mask R-CNN's mask AP: MMDetection's COCO val2017 numbers the config file cites."""
  return Sweep("main_instance_segmentation", "COCO val2017 mask AP, single scale (Mask R-CNN and Cascade Mask "
               "R-CNN as MMDetection's models)", "eval/segm_AP", 100.0, "AP", _detection_rows("PAPER_MASK_AP"))


# CPU proxies of Table 12 and Fig. 10: hrnet_tiny on the synthetic shapes' masks, a few hundred steps each. They
# start from He init: with N(0, 0.001) and BatchNorm momentum 0.01, a few hundred steps leave the running statistics
# far from the activations' (the official init is for runs of 100k steps).
PROXY = "hrnet_tiny on the synthetic shapes' masks (configs/cityscapes.py:tiny), from scratch (He init)"


def table12_proxy(steps: int = 300) -> Sweep:
  rows = tuple(Row(name, label, "configs/cityscapes.py:tiny", seg, options, {"total_steps": steps},
                   series="hrnet_tiny", x=name)
               for name, label, options, _, seg in FUSION_ROWS)
  return Sweep("table12_proxy", "Table 12 proxy: multi-resolution fusion (paper column: Cityscapes, HRNetV2-W48)",
               "eval/miou", 1.0, "mIoU", rows, plot="bars", proxy=PROXY)


def fig10_proxy(steps: int = 300) -> Sweep:
  rows = tuple(Row(head, head.upper(), "configs/cityscapes.py:tiny", None, {"head": head}, {"total_steps": steps},
                   series="hrnet_tiny", x=head.upper()) for head in ("v1", "v1h", "v2"))
  return Sweep("fig10_proxy", "Fig. 10 proxy: HRNetV1 / V1h / V2 representations", "eval/miou", 1.0, "mIoU", rows,
               plot="bars", proxy=PROXY)


SWEEPS: dict[str, Callable[[], Sweep]] = {
    sweep.__name__: sweep for sweep in (
        table12_pose, table12_segmentation, fig9_pose_resolution, fig10_cityscapes, fig10_pascal_context,
        fig10_pose, fig10_detection, main_imagenet, main_coco, main_cityscapes, main_pascal_context, main_lip,
        main_detection, main_instance_segmentation, table12_proxy, fig10_proxy)}


def get(name: str) -> Sweep:
  if name not in SWEEPS:
    from hrnet_jax.registry import unknown_name  # pylint: disable=import-outside-toplevel
    raise unknown_name("sweep", name, SWEEPS)
  return SWEEPS[name]()


def model_overrides(row: Row) -> dict[str, Any]:
  """The row's full ``model.overrides``: its config's, updated with the row's model options."""
  from hrnet_jax.engine import config_lib  # pylint: disable=import-outside-toplevel
  return {**config_lib.load(os.path.join(REPO, row.config)).model.overrides.to_dict(), **row.model}


def row_config(row: Row, extra: dict[str, Any] | None = None):
  """The ``ConfigDict`` the row trains with (``extra``: more dotted overrides, as launch.py's ``--set``)."""
  from hrnet_jax.engine import config_lib  # pylint: disable=import-outside-toplevel
  config = config_lib.load(os.path.join(REPO, row.config), {**row.overrides, **(extra or {})})
  config.model.overrides = model_overrides(row)
  return config
