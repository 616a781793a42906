"""Facial landmarks with HRNetV2-W18 (the paper's Appendix D; HRNet-Facial-Landmark-Detection):

    python -m hrnet_jax.train --config configs/face_landmarks.py:wflw --workdir /runs/wflw \\
        --config.data.data_dir=$TFDS_DATA_DIR --config.init_from=hrnetv2_w18_imagenet_pretrained.pth
    python -m hrnet_jax.train --config configs/face_landmarks.py:tiny --workdir /tmp/faces_tiny   # CPU, synthetic

Recipe (``experiments/<dataset>/face_alignment_<dataset>_hrnet_w18.yaml``): Adam lr 1e-4 (AFLW 2e-4), no weight
decay, 60 epochs, x0.1 at epochs 30 and 50, batch 16; 256x256 crops of the official box (x1.25), scale +-25%,
rotation +-30 degrees with probability 0.6, flip with the dataset's pairs; Gaussian targets at 64x64, sigma 1.5
(300W: 1.0); MSE loss; evaluation without flip test.

NME (%) of the official models (paper Tables 13-16 / the official README), the split each is measured on:

    dataset  eval split   landmarks  NME                                     normalised by
    wflw     test         98         4.60                                    inter-ocular (outer corners 60, 72)
    300w     valid        68         3.34 (common 2.91, challenging 5.11)    inter-ocular (36, 45)
    cofw     test         29         3.45 (failure rate at 0.1: 0.20%)        inter-ocular (8, 9)
    aflw     test         19         1.57                                    box size

``dataset`` is the first arg (``face_landmarks.py:300w``); ``split=`` evaluates another split (e.g.
``split=test_largepose`` for a WFLW subset, ``split=valid_challenge`` for 300W); ``tiny``: hrnet_tiny on the
synthetic shapes (polygon vertices as 6 landmarks, normalised by the box size) at 64x64.
"""

from hrnet_jax.engine import config_lib

PAPER_NME = {"wflw": 4.60, "300w": 3.34, "cofw": 3.45, "aflw": 1.57}
LANDMARKS = {"wflw": 98, "300w": 68, "cofw": 29, "aflw": 19}
EVAL_SPLIT = {"wflw": "test", "300w": "valid", "cofw": "test", "aflw": "test"}


def get_config(arg=None):
  options = config_lib.parse_arg(arg, positional="dataset", dataset="wflw", split="", tiny=False, batch=16)
  config_lib.check_choice("dataset", options.dataset, PAPER_NME)
  config = config_lib.base_config("landmarks", "face_landmarks")  # the recipe's augmentation defaults are official
  config.model.name = "hrnet_w18"
  config.model.overrides = {"num_landmarks": LANDMARKS[options.dataset]}
  config.data.update(name=f"face_landmarks/{options.dataset}", train_split="train",
                     eval_split=options.split or EVAL_SPLIT[options.dataset], keypoints=options.dataset)
  config.data.sigma = 1.0 if options.dataset == "300w" else 1.5
  config.flip_test = False
  config.global_batch_size = options.batch
  config.eval_batch_size = 64
  config.num_epochs = 60
  config.optimizer.update(name="adam", learning_rate=2e-4 if options.dataset == "aflw" else 1e-4, weight_decay=0.0)
  config.schedule.update(name="step", warmup_epochs=0.0, milestones=(30, 50), decay_factor=0.1)
  config.log_every = 100
  config.checkpoint_every = 1000
  config.best_metric = "eval/nme"
  config.best_mode = "min"
  if options.tiny:
    config.model.name = "hrnet_tiny"
    config.model.overrides = {"num_landmarks": 6}
    config.data.update(name="synthetic_shapes", train_split="train", eval_split="validation",
                       keypoints="synthetic_shapes", input_size=64, sigma=1.0)
    # A vertex's slot is the direction it points to, which a rotation would change under the label.
    config.data.rotation_prob = 0.0
    config.global_batch_size = 32
    config.eval_batch_size = 128
    config.num_epochs = 4
    config.optimizer.learning_rate = 1e-3
    config.schedule.milestones = (3,)
    config.log_every = 20
    config.checkpoint_every = 200
  return config
