"""HRNetV2 + OCR (object-contextual representations; Yuan et al., ECCV 2020), as the official
HRNet-Semantic-Segmentation ``HRNet-OCR`` branch builds it in ``lib/models/seg_hrnet_ocr.py``.

On the V2 representation (the four branches at 1/4, concatenated: 15C channels):
- ``aux_head``: the V2 segmentation head, whose logits are the soft object regions (and the auxiliary output);
- ``conv3x3_ocr``: the pixel representation (``ocr_mid_channels``);
- the gather step: each class's context is the mean of the pixel representations weighted by the softmax of its
  region logits over the image's positions;
- ``ocr_distri_head``: each pixel attends over the class contexts (query from the pixel, key and value from the
  contexts, width ``ocr_key_channels``); the context it reads is concatenated with the pixel and mixed back;
- ``cls_head``: the logits.

Module and variable names follow the official ones, so official checkpoints load by the usual key rule
(``model.convert``). The model returns ``OCROutputs(aux, ocr)``, the official ``[out_aux, out]``; evaluation and
prediction use ``ocr`` (the official ``TEST.OUTPUT_INDEX = -1``). The two softmaxes run in float32 whatever the
compute dtype.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax.model import heads, layers

class OCROutputs(NamedTuple):
  """Both logits of an OCR model at 1/4 resolution, float32: the auxiliary soft object regions and the OCR output."""
  aux: jax.Array
  ocr: jax.Array


def main_output(outputs: Any) -> jax.Array:
  """The logits a model's output is evaluated by: the OCR output of an OCR model, else the output itself."""
  return outputs.ocr if isinstance(outputs, OCROutputs) else outputs


def _conv_bn_relu(x: jax.Array, name: str, widths: Sequence[int], conv, norm) -> jax.Array:
  """The official ``nn.Sequential`` of 1x1 convs without bias, each followed by ``ModuleHelper.BNReLU``: the conv is
  ``<name>.<2k>`` and its BatchNorm ``<name>.<2k+1>.0``. Called inside a compact module, which owns the layers."""
  for k, width in enumerate(widths):
    x = layers.conv1x1(conv, width, name=f"{name}_{2 * k}")(x)
    x = nn.relu(norm(name=f"{name}_{2 * k + 1}_0")(x))
  return x


class ObjectAttentionBlock(nn.Module):
  """``_ObjectAttentionBlock`` (scale 1): pixels [B, H, W, C] attend over the class contexts [B, K, C]."""
  key_channels: int
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, pixels: jax.Array, contexts: jax.Array) -> jax.Array:
    key_widths = (self.key_channels, self.key_channels)
    query = _conv_bn_relu(pixels, "f_pixel", key_widths, self.conv, self.norm)
    contexts = contexts[:, :, None, :]  # the official [B, C, K, 1]: a K x 1 "image" of contexts
    key = _conv_bn_relu(contexts, "f_object", key_widths, self.conv, self.norm)[:, :, 0]
    value = _conv_bn_relu(contexts, "f_down", (self.key_channels,), self.conv, self.norm)[:, :, 0]
    similarity = jnp.einsum("bhwc,bkc->bhwk", query.astype(jnp.float32), key.astype(jnp.float32))
    attention = jax.nn.softmax(similarity * self.key_channels**-0.5, axis=-1)
    read = jnp.einsum("bhwk,bkc->bhwc", attention, value.astype(jnp.float32)).astype(pixels.dtype)
    return _conv_bn_relu(read, "f_up", (pixels.shape[-1],), self.conv, self.norm)


def gather_class_contexts(pixels: jax.Array, region_logits: jax.Array) -> jax.Array:
  """``SpatialGather_Module``: per class, the pixel representations [B, H, W, C] averaged with the softmax of its
  region logits [B, H, W, K] over the H*W positions (the official ``dim=2``); [B, K, C], float32."""
  batch, _, _, classes = region_logits.shape
  weights = jax.nn.softmax(region_logits.astype(jnp.float32).reshape(batch, -1, classes), axis=1)
  return jnp.einsum("bpk,bpc->bkc", weights, pixels.astype(jnp.float32).reshape(batch, -1, pixels.shape[-1]))


class OCRHead(nn.Module):
  """The OCR segmentation head on the V2 representation; returns ``OCROutputs``.

  The intermediate representations are sown into the ``intermediates`` collection (``ocr_input``: the
  ``conv3x3_ocr`` output; ``ocr_features``: the ``ocr_distri_head`` output) for comparison with the official code.
  """
  # Built by ``create_model``, which passes every field: the defaults are the segmentation task's ``HeadSpec``.
  num_outputs: int
  ocr_mid_channels: int
  ocr_key_channels: int
  ocr_dropout: float
  align_corners: bool
  bn_momentum: float
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, branches: Sequence[jax.Array], train: bool = False) -> OCROutputs:
    # The official init_weights leaves the OCR head at PyTorch's default init (conv biases here start at 0).
    conv, norm = layers.conv_and_norm(self.dtype, self.param_dtype, self.bn_momentum, train, "pytorch")
    features = heads.quarter_resolution(branches, "v2", 0, self.align_corners)
    width = features.shape[-1]

    regions = layers.conv1x1(conv, width, use_bias=True, name="aux_head_0")(features)
    regions = nn.relu(norm(name="aux_head_1")(regions))
    regions = layers.conv1x1(conv, self.num_outputs, use_bias=True, name="aux_head_3")(regions)

    pixels = layers.conv3x3(conv, self.ocr_mid_channels, use_bias=True, name="conv3x3_ocr_0")(features)
    pixels = nn.relu(norm(name="conv3x3_ocr_1")(pixels))
    self.sow("intermediates", "ocr_input", pixels)

    contexts = gather_class_contexts(pixels, regions).astype(pixels.dtype)
    pixels = SpatialOCR(self.ocr_key_channels, self.ocr_dropout, conv, norm, name="ocr_distri_head")(
        pixels, contexts, train)
    self.sow("intermediates", "ocr_features", pixels)

    logits = layers.conv1x1(conv, self.num_outputs, use_bias=True, name="cls_head")(pixels)
    return OCROutputs(aux=heads.float_output(regions), ocr=heads.float_output(logits))


class SpatialOCR(nn.Module):
  """``SpatialOCR_Module``: the object attention block, then [context, pixels] mixed by a 1x1 conv (no bias) + BN +
  ReLU and ``Dropout2d`` (whole channels)."""
  key_channels: int
  dropout: float
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, pixels: jax.Array, contexts: jax.Array, train: bool) -> jax.Array:
    context = ObjectAttentionBlock(self.key_channels, self.conv, self.norm, name="object_context_block")(
        pixels, contexts)
    mixed = _conv_bn_relu(jnp.concatenate([context, pixels], axis=-1), "conv_bn_dropout", (pixels.shape[-1],),
                          self.conv, self.norm)
    return nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(mixed)
