"""Semantic-segmentation label sets as data: class names, colours, left/right pairs, class weights, label-id maps.

Every set follows its official definition: Cityscapes' ``cityscapesscripts/helpers/labels.py`` (the 19 train ids,
the rest ignored), PASCAL-Context's 59 most frequent of its 459 classes as HRNet's ``pascal_ctx.py`` selects them,
and LIP's 20 parsing labels; your own folder's classes are its ``classes.json`` (``data.labels=dataset``). Labels are
stored as train ids (0..K-1, ``IGNORE_LABEL`` for pixels without one).
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from hrnet_jax.registry import Registry

IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class LabelSet:
  class_names: tuple[str, ...]
  palette: np.ndarray  # [K, 3] uint8 RGB colour per class
  flip_pairs: tuple[tuple[int, int], ...] = ()  # classes that swap under a horizontal flip (LIP's left/right parts)
  class_weights: tuple[float, ...] | None = None  # cross-entropy weights of the official recipe
  train_to_label_id: np.ndarray | None = None  # [K] the dataset's own label ids (for test-server submissions)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def flip_permutation(self) -> np.ndarray:
    """Class order after a horizontal flip: output channel k of a flipped image predicts class perm[k]."""
    permutation = np.arange(self.num_classes)
    for left, right in self.flip_pairs:
      permutation[left], permutation[right] = right, left
    return permutation


def voc_palette(count: int) -> np.ndarray:
  """The PASCAL VOC colour map (the official HRNet ``get_palette``): class bits spread over the RGB high bits."""
  palette = np.zeros((count, 3), np.uint8)
  for label in range(count):
    value, bit = label, 0
    while value:
      for channel in range(3):
        palette[label, channel] |= ((value >> channel) & 1) << (7 - bit)
      bit += 1
      value >>= 3
  return palette


# cityscapesscripts' labels table: (name, label id, train id, colour); train id 255 is ignored in training and eval.
CITYSCAPES_LABELS = (
    ("unlabeled", 0, 255, (0, 0, 0)), ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)), ("out of roi", 3, 255, (0, 0, 0)), ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)), ("ground", 6, 255, (81, 0, 81)), ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)), ("parking", 9, 255, (250, 170, 160)), ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)), ("wall", 12, 3, (102, 102, 156)), ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)), ("bridge", 15, 255, (150, 100, 100)), ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)), ("polegroup", 18, 255, (153, 153, 153)), ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)), ("vegetation", 21, 8, (107, 142, 35)), ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)), ("person", 24, 11, (220, 20, 60)), ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)), ("truck", 27, 14, (0, 0, 70)), ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)), ("trailer", 30, 255, (0, 0, 110)), ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)), ("bicycle", 33, 18, (119, 11, 32)),
)


def cityscapes_id_to_train_id() -> np.ndarray:
  """[256] lookup from a ``*_gtFine_labelIds.png`` value to its train id (``IGNORE_LABEL`` when it has none)."""
  table = np.full(256, IGNORE_LABEL, np.uint8)
  for _, label_id, train_id, _ in CITYSCAPES_LABELS:
    table[label_id] = train_id
  return table


def _cityscapes() -> LabelSet:
  trained = sorted((train_id, name, label_id, colour) for name, label_id, train_id, colour in CITYSCAPES_LABELS
                   if train_id != IGNORE_LABEL)
  return LabelSet(
      class_names=tuple(name for _, name, _, _ in trained),
      palette=np.array([colour for *_, colour in trained], np.uint8),
      # HRNet's cityscapes.py: the weights of its weighted cross-entropy, per train id.
      class_weights=(0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023, 0.9539, 0.9843,
                     1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507),
      train_to_label_id=np.array([label_id for _, _, label_id, _ in trained], np.uint8))


# PASCAL-Context: the ids (in its 459-class ``labels.txt``) of the 59 classes of the benchmark, ascending, and their
# names; every other class is background. Index 0 is background in the 60-class set; the 59-class set ignores it.
PASCAL_CONTEXT_IDS = (2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115,
                      144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347,
                      349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)
PASCAL_CONTEXT_NAMES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood")


def pascal_context_index(label_map: np.ndarray) -> np.ndarray:
  """A 459-class ``LabelMap`` to the 60-class index: 0 background (and every class outside the 59), 1..59."""
  table = np.zeros(max(PASCAL_CONTEXT_IDS) + 1, np.uint8)
  table[list(PASCAL_CONTEXT_IDS)] = np.arange(1, len(PASCAL_CONTEXT_IDS) + 1)
  inside = label_map <= max(PASCAL_CONTEXT_IDS)
  return np.where(inside, table[np.where(inside, label_map, 0)], 0).astype(np.uint8)


# LIP's 20 parsing labels (index = label value in its annotation PNGs).
LIP_NAMES = ("background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants",
             "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg", "right-leg", "left-shoe",
             "right-shoe")

SYNTHETIC_SHAPES_NAMES = ("background", "triangle", "square", "pentagon", "hexagon")

# ``data.labels`` naming no set but the prepared dataset's own classes (``semantic_segmentation/folder``).
DATASET_LABELS = "dataset"


def label_set(data: ml_collections.ConfigDict) -> LabelSet:
  """The label set ``data.labels`` names; ``dataset`` reads the prepared dataset's classes (names, colours)."""
  if data.labels != DATASET_LABELS:
    return LABEL_SETS[data.labels]
  from hrnet_jax.data import sources  # pylint: disable=import-outside-toplevel  (TensorFlow, only for this)
  recorded = sources.recorded_metadata(data.name, data.data_dir, data.manual_dir)
  if "palette" not in recorded:
    raise ValueError(f"dataset {data.name} records no classes; set data.labels to one of {', '.join(LABEL_SETS)}")
  return LabelSet(tuple(recorded["class_names"]), np.asarray(recorded["palette"], np.uint8))


LABEL_SETS = Registry("label set", {
    "cityscapes": _cityscapes(),
    "pascal_context_60": LabelSet(("background",) + PASCAL_CONTEXT_NAMES, voc_palette(60)),
    "pascal_context_59": LabelSet(PASCAL_CONTEXT_NAMES, voc_palette(60)[1:]),
    # HRNet's lip.py swaps these when it flips an image (and the output channels in its flip test).
    "lip": LabelSet(LIP_NAMES, voc_palette(20), flip_pairs=((14, 15), (16, 17), (18, 19))),
    "synthetic_shapes": LabelSet(SYNTHETIC_SHAPES_NAMES, voc_palette(5)),
})
