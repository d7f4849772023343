"""fer2013_synthetic: procedurally drawn 48x48 faces, a drop-in stand-in for fer2013.

Why: a fresh machine has no FER2013 (Kaggle needs a login), yet training,
tuning and serving should run end to end. This dataset has the same features
and split names as `fer2013`, needs no download, and is learnable but not
trivial (fer_tfds/synthetic/faces.py). It is NOT FER2013: see README.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from fer_tfds.features import HOMEPAGE, OptInConfigs, face_features
from fer_tfds.sharding import ShardedSplits
from fer_tfds.synthetic.faces import EMOTIONS, draw_faces

# One fixed seed per split: every build gives the same faces, and the splits
# never share a face.
SPLIT_SEEDS = {"train": 20130, "validation": 20131, "test": 20132}
# The faces get their own seed, so the label order and the drawing jitter are
# independent random streams.
_FACE_SEED_OFFSET = 1000


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  """`sizes`: examples per split (multiples of 7 keep the classes exactly balanced)."""

  sizes: dict[str, int] = dataclasses.field(default_factory=dict)


class Builder(OptInConfigs, ShardedSplits, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for fer2013_synthetic: each split in 16 files, as fer2013."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SyntheticConfig(
          name="default",
          description="7,000 train, 1,400 validation and 1,400 test faces, balanced.",
          sizes={"train": 7000, "validation": 1400, "test": 1400},
      ),
  ]
  # Built only when asked for by name (`fer2013_synthetic/tiny`): fast tests.
  OPT_IN_CONFIGS = [
      SyntheticConfig(
          name="tiny",
          description="70 train, 14 validation and 14 test faces, for tests.",
          sizes={"train": 70, "validation": 14, "test": 14},
      ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    # The features of fer2013 (ids: `synthetic/<split>/<index>`), so any
    # pipeline or model takes either.
    return self.dataset_info_from_configs(
        features=face_features(), supervised_keys=("image", "label"), homepage=HOMEPAGE
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):  # noqa: ANN202
    del dl_manager  # Nothing to download: the faces are drawn.
    return {
        split: self._generate_examples(split, size)
        for split, size in self.builder_config.sizes.items()
    }

  def _generate_examples(self, split: str, size: int) -> Iterator[tuple[str, dict[str, Any]]]:
    labels = balanced_labels(size, SPLIT_SEEDS[split])
    images = draw_faces(labels, SPLIT_SEEDS[split] + _FACE_SEED_OFFSET)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
      key = f"synthetic/{split}/{index:06d}"
      yield key, {"image": image, "label": int(label), "id": key}


def balanced_labels(size: int, seed: int) -> np.ndarray:
  """`size` labels cycling through the 7 classes, in a seeded random order."""
  labels = np.arange(size) % len(EMOTIONS)
  return np.random.default_rng(seed).permutation(labels)
