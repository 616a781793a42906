"""Demo: a tiny HRNet on the embedded synthetic shapes (no download), on a laptop CPU in minutes.

    python -m hrnet_jax.train --config configs/demo.py --workdir /tmp/demo

4 polygon classes (chance 25% top-1). The other tasks have their own ``tiny`` configs on the same data
(``configs/cityscapes.py:tiny`` for segmentation, ``configs/coco_pose.py:tiny``, ``configs/face_landmarks.py:tiny``).
Expected figures and timings are in the README, with the command that produced them.
"""

from hrnet_jax.engine import config_lib


def get_config(arg=None):
  config_lib.parse_arg(arg)  # no options
  config = config_lib.base_config("classification", "synthetic_classification")
  config.model.name = "hrnet_tiny"
  config.data.name = "synthetic_shapes"
  config.global_batch_size = 32
  config.eval_batch_size = 128
  config.num_epochs = 8  # 4096 images an epoch: 1024 steps
  config.optimizer.update(name="sgd", learning_rate=0.2, momentum=0.9, nesterov=True, weight_decay=1e-4,
                          weight_decay_mask="kernels")
  config.schedule.update(name="cosine", warmup_epochs=0.25)
  config.log_every = 20
  config.eval_every = 256
  config.checkpoint_every = 256
  # A classification head scaled to the tiny backbone (the official one is 2048 wide, 11M parameters).
  config.model.overrides = {"num_classes": 4, "head_channels": (8, 16, 32, 64), "final_channels": 256}
  config.best_metric = "eval/top1"
  return config
