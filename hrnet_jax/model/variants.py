"""Named HRNet variants as data: the official stage specs, timm-style names (``hrnet_w32``)."""

from __future__ import annotations

from typing import Any, Mapping

from hrnet_jax.model.backbone import HRNetSpec, StageSpec
from hrnet_jax.registry import Registry


def _width_spec(c: int) -> HRNetSpec:
  return HRNetSpec((
      StageSpec(1, "BOTTLENECK", (4,), (64,)),
      StageSpec(1, "BASIC", (4, 4), (c, 2 * c)),
      StageSpec(4, "BASIC", (4, 4, 4), (c, 2 * c, 4 * c)),
      StageSpec(3, "BASIC", (4, 4, 4, 4), (c, 2 * c, 4 * c, 8 * c)),
  ))


# The official stage specs (HRNet-Image-Classification experiments/*.yaml).
VARIANTS: Registry = Registry("variant", {
    "hrnet_w18_small_v1": HRNetSpec((
        StageSpec(1, "BOTTLENECK", (1,), (32,)),
        StageSpec(1, "BASIC", (2, 2), (16, 32)),
        StageSpec(1, "BASIC", (2, 2, 2), (16, 32, 64)),
        StageSpec(1, "BASIC", (2, 2, 2, 2), (16, 32, 64, 128)),
    )),
    "hrnet_w18_small_v2": HRNetSpec((
        StageSpec(1, "BOTTLENECK", (2,), (64,)),
        StageSpec(1, "BASIC", (2, 2), (18, 36)),
        StageSpec(3, "BASIC", (2, 2, 2), (18, 36, 72)),
        StageSpec(2, "BASIC", (2, 2, 2, 2), (18, 36, 72, 144)),
    )),
    **{f"hrnet_w{c}": _width_spec(c) for c in (18, 30, 32, 40, 44, 48, 64)},
    # A CPU-sized network for tests and demos: every structural feature, a few thousand times fewer FLOPs.
    "hrnet_tiny": HRNetSpec((
        StageSpec(1, "BOTTLENECK", (1,), (16,)),
        StageSpec(1, "BASIC", (1, 1), (8, 16)),
        StageSpec(2, "BASIC", (1, 1, 1), (8, 16, 32)),
        StageSpec(2, "BASIC", (1, 1, 1, 1), (8, 16, 32, 64)),
    )),
})


def resolve_spec(name_or_spec: str | HRNetSpec | Mapping[str, Any]) -> HRNetSpec:
  """A named variant, an ``HRNetSpec``, or an official YAML ``MODEL.EXTRA`` mapping."""
  if isinstance(name_or_spec, HRNetSpec):
    return name_or_spec
  if isinstance(name_or_spec, Mapping):
    return HRNetSpec.from_official(name_or_spec)
  return VARIANTS[name_or_spec]
