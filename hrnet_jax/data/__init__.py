"""What every task's input shares: opening datasets (``sources``), the deterministic order (``order``, NumPy) and
pipeline (``pipeline``, tf.data), a run's inputs (``inputs``), image operations, the synthetic shapes, class folders,
``prepare`` and the pipeline benchmark. Each task's own builders and recipes live in its folder.

Importing this package imports nothing; ``order``, ``synthetic`` and ``image_folder`` are TensorFlow-free.
"""
