"""Full-size builds from the real FER2013 release in ../shared/data (skipped when absent)."""

import re
import subprocess
import sys
from pathlib import Path

import fer_helpers as helpers
import numpy as np
import pytest
import tensorflow_datasets as tfds

from fer_tfds.fer2013.readers import EMOTIONS

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "fer2013"
ARCHIVE = DATA / "fer2013_images.tar.gz"
MAKE_CSV = DATA / "make_csv.py"

SPLIT_SIZES = {"train": 28709, "validation": 3589, "test": 3589}
TRAIN_PER_CLASS = {
    "angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215,
    "sad": 4830, "surprise": 3171, "neutral": 4965,
}
_IMAGE_NUMBER = re.compile(r"_(\d+)\.\w+$")


def _require_data():
  for path in (ARCHIVE, MAKE_CSV):
    if not path.exists():
      pytest.skip(f"{path} not found: real-data check needs ../shared/data/fer2013 "
                  "(fer2013_images.tar.gz and make_csv.py) next to the repository")


def _read(builder):
  """{split: (ids, labels, images)} of a full build, in stored order."""
  out = {}
  for split in builder.info.splits:
    ds = builder.as_dataset(split=split, shuffle_files=False, batch_size=4096)
    ids, labels, images = [], [], []
    for batch in tfds.as_numpy(ds):
      ids.extend(i.decode() for i in batch["id"])
      labels.append(batch["label"])
      images.append(batch["image"])
    out[split] = (ids, np.concatenate(labels), np.concatenate(images))
  return out


@pytest.fixture(scope="module")
def image_build(tmp_path_factory):
  """Built from the image archive, with its read-only folder as the manual dir."""
  _require_data()
  data_dir = tmp_path_factory.mktemp("real_images")
  builder = helpers.build(DATA, data_dir)
  return builder, _read(builder)


@pytest.fixture(scope="module")
def csv_build(tmp_path_factory):
  """Built from a fer2013.csv that make_csv.py writes from the archive (once per module)."""
  _require_data()
  manual = tmp_path_factory.mktemp("real_csv_manual")
  subprocess.run(
      [sys.executable, str(MAKE_CSV), str(ARCHIVE), str(manual / "fer2013.csv")],
      cwd=REPO, check=True, capture_output=True, timeout=600,
  )
  builder = helpers.build(manual, tmp_path_factory.mktemp("real_csv"))
  return builder, _read(builder)


@pytest.fixture(params=["image_build", "csv_build"])
def real_build(request):
  return request.getfixturevalue(request.param)


def test_split_sizes(real_build):
  """The standard FER2013 splits: 28709 / 3589 / 3589."""
  builder, examples = real_build
  assert helpers.split_sizes(builder) == SPLIT_SIZES
  assert {split: len(ids) for split, (ids, _, _) in examples.items()} == SPLIT_SIZES


def test_train_class_counts(real_build):
  """Per-class train counts of the original release."""
  _, examples = real_build
  counts = np.bincount(examples["train"][1], minlength=len(EMOTIONS))
  assert dict(zip(EMOTIONS, counts.tolist(), strict=True)) == TRAIN_PER_CLASS


def test_metadata(image_build, csv_build):
  """Each build names its source; nothing carved or skipped."""
  assert image_build[0].info.metadata["source"] == ARCHIVE.name
  assert csv_build[0].info.metadata["source"] == "fer2013.csv"
  for builder, _ in (image_build, csv_build):
    assert builder.info.metadata["carved_splits"] == []
    assert builder.info.metadata["skipped_rows"] == []


def _in_release_order(split_examples, key):
  ids, labels, images = split_examples
  order = sorted(range(len(ids)), key=lambda i: key(ids[i], labels[i]))
  return labels[order], images[order]


def test_builds_agree_per_example(image_build, csv_build):
  """Image and CSV builds hold the same labels (and pixels) per split, example by example.

  make_csv.py writes the rows of each usage sorted by (image number, label), so sorting the
  CSV build by line and the image build by (number, label) pairs up the same faces.
  """
  for split in SPLIT_SIZES:
    image_labels, image_pixels = _in_release_order(
        image_build[1][split], lambda i, label: (int(_IMAGE_NUMBER.search(i).group(1)), label))
    csv_labels, csv_pixels = _in_release_order(
        csv_build[1][split], lambda i, _: int(i.rpartition(":")[2]))
    assert np.array_equal(np.bincount(image_labels), np.bincount(csv_labels)), split
    assert np.array_equal(image_labels, csv_labels), split
    assert np.array_equal(image_pixels, csv_pixels), split


def test_improved_cnn_standardises_with_the_train_split_statistics(image_build):
  """improved_cnn's fixed input standardisation uses FER2013's train pixel mean and std
  (on the [0, 1] scale the pipeline feeds), to the 4 decimals it states."""
  from trainers.models.improved_cnn import FER2013_PIXEL_MEAN, FER2013_PIXEL_STD

  _, examples = image_build
  pixels = examples["train"][2].astype(np.float64) / 255.0
  assert abs(pixels.mean() - FER2013_PIXEL_MEAN) < 5e-4
  assert abs(pixels.std() - FER2013_PIXEL_STD) < 5e-4
