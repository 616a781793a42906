"""ImageNet-1k classification pretraining, the official HRNet-Image-Classification recipe.

    python -m hrnet_jax.train --config configs/imagenet.py:variant=w18 --workdir /runs/w18 \\
        --config.data.data_dir=/data/tensorflow_datasets
    python -m hrnet_jax.train --config configs/imagenet.py:tiny --workdir /tmp/in_tiny   # CPU, image_folder

Recipe (``cls_hrnet_*_sgd_lr5e-2_wd1e-4_bs32_x100.yaml``): SGD with Nesterov momentum 0.9, weight decay 1e-4 on
every parameter, 100 epochs, learning rate x0.1 at epochs 30, 60 and 90, 224 random-resized crops with flips,
eval at shorter side 256 / center 224. The official run used 4 GPUs x 32 = 128 images at lr 0.05; the learning
rate follows the linear rule lr = 0.05 * global_batch / 128 (``batch=...`` sets the global batch; default 256 ->
lr 0.1).

Top-1 of the official models (paper, TPAMI 2020, Table 9, and the official README; single 224 crop):

    variant        params  GMACs  top-1
    w18_small_v1   13.2M   1.49   72.3
    w18_small_v2   15.6M   2.42   75.1
    w18            21.3M   3.99   76.8
    w30            37.7M   7.55   78.2
    w32            41.2M   8.31   78.5
    w40            57.6M  11.8    78.9
    w44            67.1M  13.9    78.9
    w48            77.5M  16.1    79.3
    w64           128.1M  26.9    79.5

``classes=N``: another class count (default 1000; 4 with ``tiny``), e.g. for your own ``image_folder`` data.
``tiny``: hrnet_tiny on an ``image_folder`` dataset at 64x64 crops, for CPU runs and tests (set
``--config.data.data_dir`` to a folder of class sub-directories; see the README).
"""

from hrnet_jax.engine import config_lib

PAPER_TOP1 = {"w18_small_v1": 72.3, "w18_small_v2": 75.1, "w18": 76.8, "w30": 78.2, "w32": 78.5, "w40": 78.9,
              "w44": 78.9, "w48": 79.3, "w64": 79.5}
OFFICIAL_BATCH, OFFICIAL_LR = 128, 0.05
IMAGENET_TRAIN_IMAGES = 1_281_167


def get_config(arg=None):
  options = config_lib.parse_arg(arg, positional="variant", variant="w18", batch=256, tiny=False, classes=0)
  if not options.tiny:
    config_lib.check_choice("variant", options.variant, PAPER_TOP1)
  config = config_lib.base_config("classification", "imagenet")  # its crops and resize are the official ones
  config.model.name = "hrnet_tiny" if options.tiny else f"hrnet_{options.variant}"
  config.model.overrides = {"num_classes": options.classes or (4 if options.tiny else 1000)}
  config.data.update(name="imagenet2012", train_split="train", eval_split="validation", image_size=224)
  config.global_batch_size = options.batch
  config.eval_batch_size = 250  # divides the 50,000 validation images; any size is exact (padding is masked)
  config.num_epochs = 100
  config.optimizer.update(name="sgd", learning_rate=OFFICIAL_LR * options.batch / OFFICIAL_BATCH, momentum=0.9,
                          nesterov=True, weight_decay=1e-4, weight_decay_mask="all")
  config.schedule.update(name="step", warmup_epochs=0.0, milestones=(30, 60, 90), decay_factor=0.1)
  config.log_every = 100
  config.eval_every = IMAGENET_TRAIN_IMAGES // options.batch  # once an epoch
  config.checkpoint_every = 1000
  config.best_metric = "eval/top1"
  if options.tiny:
    # A classification head scaled to the tiny backbone (the official one is 2048 wide, 11M parameters).
    config.model.overrides.update(head_channels=(8, 16, 32, 64), final_channels=256)
    config.data.update(name="image_folder", train_split="train", eval_split="val", image_size=64)
    config.global_batch_size = 32
    config.eval_batch_size = 64
    config.num_epochs = 10
    config.optimizer.learning_rate = 0.1
    config.schedule.update(name="cosine", warmup_epochs=0.5)
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 200
  return config
