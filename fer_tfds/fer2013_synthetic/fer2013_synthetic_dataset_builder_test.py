"""TFDS's standard builder test on the `tiny` config (the default one is 9,800 faces)."""

from pathlib import Path

import tensorflow_datasets as tfds

from fer_tfds.fer2013_synthetic import fer2013_synthetic_dataset_builder


class Fer2013SyntheticTest(tfds.testing.DatasetBuilderTestCase):
  """Builds `tiny` and checks splits, features and keys."""

  DATASET_CLASS = fer2013_synthetic_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
  SPLITS = {"train": 70, "validation": 14, "test": 14}
  SKIP_CHECKSUMS = True
  # Nothing is downloaded, so there is no dummy_data/; any existing dir will do.
  EXAMPLE_DIR = str(Path(__file__).parent)


if __name__ == "__main__":
  tfds.testing.test_main()
