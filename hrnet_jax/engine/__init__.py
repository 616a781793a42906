"""The training engine, the same for every task: the loop (``trainer``), checkpoints, sharding over devices and
hosts, optimizers and schedules, configs, metric writing, and loading weights for a run or for inference.

JAX only: TensorFlow is imported by the data code, which ``trainer`` opens when a run starts.
"""
