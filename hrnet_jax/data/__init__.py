"""What every task's input shares: opening datasets (``sources``), the deterministic order (``order``, NumPy) and
pipeline (``pipeline``, tf.data), a run's inputs (``inputs``), image operations, the synthetic shapes, class folders,
``prepare`` and the pipeline benchmark. Each task's own builders and recipes live in its folder.

Importing this package imports nothing; ``order``, ``synthetic`` and ``image_folder`` are TensorFlow-free.
"""


def keep_tensorflow_on_the_host(tf) -> None:
  """Hides the GPUs from TensorFlow (the module ``tf``): tf.data runs on the host, and TensorFlow would otherwise
  reserve the GPU memory JAX needs. Done as TensorFlow loads (``cli`` for the programs, ``pipeline`` for library
  use); once TensorFlow has started its devices, they stay as they are."""
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow ran something already: too late to change, and not ours to change
    pass
