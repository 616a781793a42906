"""Export a trained model for deployment: the task's prediction (``Task.serving``) as StableHLO with ``jax.export``.

    python -m hrnet_jax.export --config configs/coco_pose.py:w32_256x192 --checkpoint PATH --output DIR \\
        [--size 256x192 ...] [--batch dynamic|N] [--platforms cpu,cuda,tpu] [--format jax|saved_model]

What is exported is what evaluation computes, after the image crop: classification probabilities and logits; pose
keypoints in image pixels (flip test as the config says, decoded through the box's ``center`` and ``scale``);
landmarks likewise; segmentation class scores and labels (the config's ``test`` protocol); detection boxes after NMS.
The input image is RGB in 0..255, float32 [B, H, W, 3], already resized or cropped to H x W as the eval
preprocessing does; the normalisation runs inside. One file per size (``HxW.jax``) and ``export.json``, the sidecar
that says what goes in and comes out. ``load(DIR)`` needs only JAX:

    model = hrnet_jax.export.load("DIR")
    outputs = model(images, center=centers, scale=scales)  # a dict of NumPy arrays

The batch is symbolic (any size) unless ``--batch N``. ``--format saved_model`` also writes a TensorFlow SavedModel
per size (``saved_model_HxW/``, through ``jax2tf``, which embeds the StableHLO in an XlaCallModule op: TF Serving
runs it where its TensorFlow has that op, TF >= 2.12). ``--format tflite`` converts that SavedModel to
``HxW.tflite``: tested for classification and pose; the README's export section lists what else converts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hrnet_jax import cli, files, tasks
from hrnet_jax.engine import config_lib, weights
from hrnet_jax.model.normalization import IMAGENET_MEAN, IMAGENET_STD

SIDECAR = "export.json"
FORMATS = ("jax", "saved_model", "tflite")


def _file_name(size: tuple[int, int]) -> str:
  return f"{size[0]}x{size[1]}.jax"


def _normalised(image: jax.Array) -> jax.Array:
  return (image.astype(jnp.float32) / 255.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def serving_function(config: ml_collections.ConfigDict, variables: Any) -> tuple[Any, Any]:
  """``(fn, serving)``: ``fn(image, *inputs)`` -> the task's outputs for images in 0..255, with ``variables``
  inside; ``serving`` the task's ``Serving`` declaration."""
  task = tasks.create(config)
  serving = task.serving()
  if serving is None:
    raise ValueError(f"task {config.task!r} has nothing to export yet")
  model = task.create_model()

  def fn(image, *inputs):
    # A task's run may hand the network more than the images (a two-stage detector's image sizes).
    apply = lambda x, **head_inputs: model.apply(variables, x, train=False, **head_inputs)  # noqa: E731
    return dict(serving.run(apply, _normalised(image), **dict(zip(serving.inputs, inputs))))
  return fn, serving


def input_specs(serving: Any, size: tuple[int, int], batch: int | None) -> list[jax.ShapeDtypeStruct]:
  """The arguments of one export: the image, then the task's inputs; ``batch`` None is symbolic."""
  rows = jax.export.symbolic_shape("batch")[0] if batch is None else batch
  shapes = [(*size, 3)] + [shape for shape, _ in serving.inputs.values()]
  return [jax.ShapeDtypeStruct((rows, *shape), jnp.float32) for shape in shapes]


def export_size(fn: Any, serving: Any, size: tuple[int, int], batch: int | None,
                platforms: Sequence[str] = ("cpu",)) -> jax.export.Exported:
  return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*input_specs(serving, size, batch))


def default_size(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """The eval input size of the config's recipe."""
  _, evaluation = tasks.create(config).batch_keys()
  return tuple(evaluation["image"].shape[:2])


def sidecar(config: ml_collections.ConfigDict, serving: Any, sizes: Sequence[tuple[int, int]], batch: int | None,
            platforms: Sequence[str], checkpoint: str) -> dict[str, Any]:
  return {
      "task": config.task, "model": config.model.name, "checkpoint": checkpoint, "jax_version": jax.__version__,
      "batch": "any" if batch is None else batch, "platforms": list(platforms),
      "sizes": {_file_name(size): list(size) for size in sizes},
      "inputs": {"image": "[H, W, 3] float32 RGB in 0..255, resized or cropped to the size as the eval "
                          "preprocessing; normalised inside",
                 **{name: f"{list(shape)} float32 {meaning}" for name, (shape, meaning) in serving.inputs.items()}},
      "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "of": "RGB / 255"},
      "outputs": dict(serving.outputs), "names": list(serving.names) or None,
      "flip_test": config.get("flip_test"),  # pose and landmarks (segmentation: its test protocol, in outputs)
  }


def export(config: ml_collections.ConfigDict, variables: Any, output: str, sizes: Sequence[tuple[int, int]],
           batch: int | None = None, platforms: Sequence[str] = ("cpu",), formats: Sequence[str] = ("jax",),
           checkpoint: str = "") -> dict[str, Any]:
  """Writes one serialized export per size and the sidecar into ``output``; returns the sidecar."""
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown:
    raise ValueError(f"unknown export format(s) {unknown}; known: {', '.join(FORMATS)}")
  fn, serving = serving_function(config, variables)
  directory = files.path(output)
  directory.mkdir(parents=True, exist_ok=True)
  for size in sizes:
    exported = export_size(fn, serving, size, batch, platforms)
    files.write_bytes(os.path.join(output, _file_name(size)), bytes(exported.serialize()))
    if "saved_model" in formats or "tflite" in formats:
      saved_model = os.path.join(output, f"saved_model_{size[0]}x{size[1]}")
      save_saved_model(fn, serving, size, batch, saved_model)
      if "tflite" in formats:
        files.write_bytes(os.path.join(output, f"{size[0]}x{size[1]}.tflite"), tflite_model(saved_model))
  described = sidecar(config, serving, sizes, batch, platforms, checkpoint)
  files.write_json(os.path.join(output, SIDECAR), described)
  return described


def save_saved_model(fn: Any, serving: Any, size: tuple[int, int], batch: int | None, path: str) -> None:
  """A TensorFlow SavedModel whose ``serving_default`` signature takes the export's inputs by name."""
  import tensorflow as tf  # only this format needs TensorFlow
  from jax.experimental import jax2tf

  names = ["image", *serving.inputs]
  specs = input_specs(serving, size, batch)
  polymorphic = [None if batch is not None else "(b, " + ", ".join(map(str, spec.shape[1:])) + ")"
                 for spec in specs]
  converted = jax2tf.convert(fn, polymorphic_shapes=polymorphic, with_gradient=False)
  signature = [tf.TensorSpec([batch, *spec.shape[1:]], tf.float32, name=name) for name, spec in zip(names, specs)]
  module = tf.Module()
  module.serve = tf.function(lambda *args: converted(*args), input_signature=signature, autograph=False)
  # Saving sets the "absl" logger to WARNING and adds a root handler (TF 2.21): put the process's logging back.
  absl_logger = logging.getLogger("absl")
  level, handlers = absl_logger.level, list(logging.root.handlers)
  try:
    tf.saved_model.save(module, path, signatures=module.serve.get_concrete_function())
  finally:
    absl_logger.setLevel(level)
    logging.root.handlers[:] = handlers


def tflite_model(saved_model: str) -> bytes:
  """The TFLite flatbuffer of a SavedModel written by ``save_saved_model`` (the converter legalises its StableHLO)."""
  import tensorflow as tf
  try:
    return tf.lite.TFLiteConverter.from_saved_model(saved_model).convert()
  except Exception as error:  # the converter's errors are pages of MLIR locations: keep the first error line
    lines = str(error).splitlines()
    first = next((line for line in lines if "error:" in line), lines[0] if lines else type(error).__name__)
    raise ValueError(f"TFLite cannot convert this export ({first.split('error:')[-1].strip()}); it converts "
                     "classification, and pose and landmarks with a fixed --batch") from None


@dataclasses.dataclass
class ExportedModel:
  """A loaded export: ``model(image, **inputs)`` runs the export of the image's size."""
  sidecar: dict[str, Any]
  exports: dict[tuple[int, int], jax.export.Exported]

  @property
  def input_names(self) -> list[str]:
    return list(self.sidecar["inputs"])

  def __call__(self, image: Any, **inputs: Any) -> dict[str, np.ndarray]:
    image = np.asarray(image, np.float32)
    size = tuple(image.shape[1:3])
    if image.ndim != 4 or size not in self.exports:
      raise ValueError(f"image of shape {list(image.shape)}: this export takes [batch, H, W, 3] with H x W one of "
                       f"{[f'{h}x{w}' for h, w in self.exports]}")
    missing = set(self.input_names[1:]) - set(inputs)
    extra = set(inputs) - set(self.input_names[1:])
    if missing or extra:
      raise ValueError(f"this {self.sidecar['task']} export takes {self.input_names[1:] or 'no inputs'} besides the "
                       f"image; got {sorted(inputs)}")
    arguments = [np.asarray(inputs[name], np.float32) for name in self.input_names[1:]]
    return {key: np.asarray(value) for key, value in self.exports[size].call(image, *arguments).items()}


def load(directory: str) -> ExportedModel:
  """The exports in ``directory`` (written by ``export``), ready to call; needs only JAX."""
  described = files.read_json(os.path.join(directory, SIDECAR), "export sidecar")
  exports = {}
  for name, size in described["sizes"].items():
    data = files.path(os.path.join(directory, name)).read_bytes()
    exports[tuple(size)] = jax.export.deserialize(bytearray(data))
  return ExportedModel(described, exports)


def main(argv: Sequence[str]) -> None:
  del argv
  config = _CONFIG.value
  config_lib.validate(config)
  sizes = [cli.parse_size(size) for size in _SIZE.value] or [default_size(config)]
  batch = None if _BATCH.value == "dynamic" else int(_BATCH.value)
  _, _, variables = weights.load_for_inference(config, _CHECKPOINT.value)
  described = export(config, variables, _OUTPUT.value, sizes, batch, _PLATFORMS.value, _FORMAT.value,
                     checkpoint=_CHECKPOINT.value)
  for name in described["sizes"]:
    print(f"wrote {os.path.join(_OUTPUT.value, name)}")
  print(f"wrote {os.path.join(_OUTPUT.value, SIDECAR)}: inputs {list(described['inputs'])}, outputs "
        f"{list(described['outputs'])}, batch {described['batch']}, platforms {','.join(described['platforms'])}")


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/coco_pose.py:w32_256x192.",
                                            lock_config=True)
  _CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Orbax checkpoint dir or PyTorch-layout weights file.")
  _OUTPUT = flags.DEFINE_string("output", None, "The export directory (made if missing).")
  _SIZE = flags.DEFINE_multi_string("size", [], "Input HxW; repeat for several (default: the config's eval size).")
  _BATCH = flags.DEFINE_string("batch", "dynamic", "'dynamic' (any batch size) or a fixed batch size.")
  _PLATFORMS = flags.DEFINE_list("platforms", ["cpu"], "Platforms to lower for: cpu, cuda, rocm, tpu.")
  _FORMAT = flags.DEFINE_list("format", ["jax"], "jax (StableHLO, always written), saved_model, tflite.")
  flags.mark_flags_as_required(["config", "checkpoint", "output"])
  cli.run(main)
