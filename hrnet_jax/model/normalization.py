"""The input normalisation of every official HRNet code: ImageNet statistics on RGB in [0, 1]."""

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A black pixel after normalisation: what the official segmentation code pads images with.
NORMALIZED_BLACK = tuple(float(v) for v in -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD))
