"""TFDS's standard builder test, on the drawn faces in `dummy_data/`."""

import tensorflow_datasets as tfds

from fer_tfds.fer2013 import fer2013_dataset_builder


class Fer2013Test(tfds.testing.DatasetBuilderTestCase):
  """Builds both configs from dummy_data and checks splits, features and keys."""

  DATASET_CLASS = fer2013_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["strict", "skip_bad_rows"]
  SPLITS = {"train": 14, "validation": 7, "test": 7}


if __name__ == "__main__":
  tfds.testing.test_main()
