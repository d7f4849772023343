"""End-to-end builds of `fer2013` from every accepted input format (drawn data only)."""

import io
import re

import fer_helpers as helpers
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fer_tfds.fer2013 import fake_data
from fer_tfds.fer2013.readers import EMOTIONS

# name -> (writes the input into a manual dir, source name in metadata, expected examples).
# Expected examples are `{split: {id: (label, image)}}`; None for carved inputs.


def _csv(file_name, layout="fer2013"):
  def write(manual, rows):
    fake_data.write_csv(manual / file_name, rows, layout)
  return write, file_name, lambda rows: helpers.csv_expected(rows, file_name)


def _csv_in_archive(archive_name, member):
  def write(manual, rows):
    data = fake_data.csv_bytes(rows)
    fake_data.write_archive(manual / archive_name, {member: data})
  name = f"{archive_name}:{member}"
  return write, name, lambda rows: helpers.csv_expected(rows, name)


def _images(archive_name, root=""):
  def write(manual, rows):
    files = {root + path: data for path, data in fake_data.image_files(rows).items()}
    if archive_name is None:
      fake_data.write_folder(manual / "fer2013", files)
    else:
      fake_data.write_archive(manual / archive_name, files)
  return write, archive_name or "fer2013", helpers.image_expected


FORMATS = {
    "fer2013.csv": _csv("fer2013.csv"),
    "fer2013.csv.gz": _csv("fer2013.csv.gz"),
    "icml_face_data.csv": _csv("icml_face_data.csv", "icml"),
    "image folder": _images(None),
    "images.zip": _images("images.zip"),
    "images.tar": _images("images.tar"),
    "images.tar.gz": _images("fer2013_images.tar.gz", root="fer2013/"),
    "csv in zip": _csv_in_archive("fer2013.zip", "fer2013.csv"),
    "csv in tar.gz": _csv_in_archive("fer2013.tar.gz", "fer2013/fer2013.csv"),
}


@pytest.fixture(scope="module", params=list(FORMATS))
def built(request, rows, tmp_path_factory):
  """One build per format, shared by the tests of this module."""
  write, source_name, expected = FORMATS[request.param]
  root = tmp_path_factory.mktemp("fmt")
  write(root / "manual", rows)
  builder = helpers.build(root / "manual", root / "data")
  return {
      "builder": builder,
      "examples": helpers.read_all(builder),
      "expected": expected(rows),
      "source": source_name,
      "root": root,
  }


@pytest.fixture(scope="module")
def challenge_train(rows, tmp_path_factory):
  """A build from the challenge's train.csv (no usage: validation and test carved)."""
  root = tmp_path_factory.mktemp("train_csv")
  fake_data.write_csv(root / "manual" / "train.csv", rows, "train")
  builder = helpers.build(root / "manual", root / "data")
  return {"builder": builder, "examples": helpers.read_all(builder), "root": root}


@pytest.fixture(scope="module")
def unprefixed(rows, tmp_path_factory):
  """A build from image folders whose files lack the Training_/PublicTest_ prefix."""
  root = tmp_path_factory.mktemp("unprefixed")
  fake_data.write_archive(root / "manual" / "faces.zip", fake_data.image_files(rows, False))
  builder = helpers.build(root / "manual", root / "data")
  return {"builder": builder, "examples": helpers.read_all(builder), "root": root}


def test_split_sizes(built):
  """Training/PublicTest/PrivateTest rows become train/validation/test, all of them."""
  assert helpers.split_sizes(built["builder"]) == {"train": 14, "validation": 7, "test": 7}


def test_examples_round_trip(built):
  """Every example has the drawn pixels exactly, its label, and its `file:line`/path id."""
  helpers.assert_matches(built["examples"], built["expected"])


def test_metadata_names_source(built):
  """info.metadata says which input was used; nothing was carved or skipped."""
  metadata = built["builder"].info.metadata
  assert metadata["source"] == built["source"]
  assert metadata["carved_splits"] == []
  assert metadata["skipped_rows"] == []


def test_features(built):
  """Label names in FER2013 code order; image (48, 48, 1) uint8; supervised (image, label)."""
  info = built["builder"].info
  assert info.features["label"].names == [
      "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
  ]
  assert info.features["image"].shape == (48, 48, 1)
  assert info.features["image"].np_dtype == np.uint8
  assert info.supervised_keys == ("image", "label")


def test_tfds_load_reads_the_build(built):
  """A fresh `tfds.load` from the data_dir reads the examples (as_supervised too)."""
  data_dir = str(built["root"] / "data")
  ds = tfds.load("fer2013", data_dir=data_dir, split="validation", download=False,
                 as_supervised=True)
  pairs = list(tfds.as_numpy(ds))
  expected = built["expected"]["validation"].values()
  assert sorted((int(label), image.tobytes()) for image, label in pairs) == sorted(
      (label, image.reshape(48, 48, 1).tobytes()) for label, image in expected
  )


def test_ids_name_file_and_line_or_path(built):
  """Ids are `<csv file>:<line>` (line 1 is the header) or `train|test/<emotion>/<file>`."""
  ids = [ex["id"] for examples in built["examples"].values() for ex in examples]
  if built["source"].endswith((".csv", ".csv.gz")):
    pattern = rf"{built['source']}:\d+"
  else:
    pattern = rf"(train|test)/({'|'.join(EMOTIONS)})/\w+\.png"
  assert all(re.fullmatch(pattern, i) for i in ids), ids[:3]
  assert len(set(ids)) == len(ids)


# The challenge's train.csv: no usage, so validation and test are carved out.


def test_challenge_train_csv_carves_splits(challenge_train, rows):
  """train.csv: validation and test are carved, one example per class each (4 per class)."""
  builder, examples = challenge_train["builder"], challenge_train["examples"]
  assert builder.info.metadata["source"] == "train.csv"
  assert builder.info.metadata["carved_splits"] == ["validation", "test"]
  assert helpers.split_sizes(builder) == {"train": 14, "validation": 7, "test": 7}
  for split in ("validation", "test"):
    assert sorted(ex["label"] for ex in examples[split]) == list(range(7)), split
  assert sorted(ex["label"] for ex in examples["train"]) == sorted(list(range(7)) * 2)


def test_challenge_train_csv_round_trip(challenge_train, rows):
  """train.csv examples keep pixels, labels and `train.csv:<line>` ids, each used once."""
  expected = {}
  for index, (label, _, image) in enumerate(rows):
    expected[f"train.csv:{index + 2}"] = (label, image)
  seen = []
  for examples in challenge_train["examples"].values():
    for ex in examples:
      label, image = expected[ex["id"]]
      assert ex["label"] == label
      np.testing.assert_array_equal(ex["image"][..., 0], image)
      seen.append(ex["id"])
  assert sorted(seen) == sorted(expected)


def test_challenge_test_csv_ignored(rows, tmp_path, absl_info):
  """The challenge's test.csv next to train.csv is ignored, with a log line saying so."""
  manual = tmp_path / "manual"
  fake_data.write_csv(manual / "train.csv", rows, "train")
  (manual / "test.csv").write_text("pixels\n" + fake_data.pixel_string(rows[0][2]) + "\n")
  builder = helpers.build(manual, tmp_path / "data")
  assert builder.info.metadata["source"] == "train.csv"
  assert sum(helpers.split_sizes(builder).values()) == len(rows)
  assert any("test.csv" in r.getMessage() for r in absl_info.records)


def test_unprefixed_images(unprefixed, rows):
  """train/angry/im0.png style: test/ files are the test split, validation carved from train/."""
  builder, examples = unprefixed["builder"], unprefixed["examples"]
  assert builder.info.metadata["carved_splits"] == ["validation"]
  assert builder.info.metadata["source"] == "faces.zip"
  # 14 Training rows (2 per class) -> 7 train + 7 validation; 14 test/ rows -> test.
  assert helpers.split_sizes(builder) == {"train": 7, "validation": 7, "test": 14}
  test_ids = sorted(ex["id"] for ex in examples["test"])
  assert test_ids == sorted(
      f"test/{EMOTIONS[label]}/im{i}.png" for i, (label, usage, _) in enumerate(rows)
      if usage != "Training"
  )
  for split in ("train", "validation"):
    assert all(ex["id"].startswith("train/") for ex in examples[split])
    assert sorted(ex["label"] for ex in examples[split]) == list(range(7))
  by_id = {f"{'train' if u == 'Training' else 'test'}/{EMOTIONS[lb]}/im{i}.png": (lb, img)
           for i, (lb, u, img) in enumerate(rows)}
  for split_examples in examples.values():
    for ex in split_examples:
      assert ex["label"] == by_id[ex["id"]][0]
      np.testing.assert_array_equal(ex["image"][..., 0], by_id[ex["id"]][1])


def test_image_folders_directly_in_manual_dir(rows, tmp_path):
  """The image release extracted straight into the manual dir builds (README: 'as you got it')."""
  fake_data.write_folder(tmp_path / "manual", fake_data.image_files(rows))
  builder = helpers.build(tmp_path / "manual", tmp_path / "data")
  helpers.assert_matches(helpers.read_all(builder), helpers.image_expected(rows))


def test_os_clutter_is_ignored(rows, tmp_path):
  """macOS zips (__MACOSX/, ._ files) and .DS_Store files do not become examples or errors."""
  files = {f"fer2013/{name}": data for name, data in fake_data.image_files(rows).items()}
  clutter = {
      "__MACOSX/fer2013/train/angry/._Training_0.png": b"\0\5\x16\x07resource fork",
      "fer2013/train/angry/.DS_Store": b"\0\0\0\1Bud1",
      "fer2013/.DS_Store": b"\0\0\0\1Bud1",
  }
  fake_data.write_archive(tmp_path / "manual" / "archive.zip", {**files, **clutter})
  builder = helpers.build(tmp_path / "manual", tmp_path / "data")
  helpers.assert_matches(helpers.read_all(builder), helpers.image_expected(rows))


def test_color_images_become_grayscale(rows, tmp_path):
  """RGB images of the image release are converted to the (48, 48, 1) grayscale pixels."""
  files = {}
  for name, data in fake_data.image_files(rows).items():
    with Image.open(io.BytesIO(data)) as gray:
      buffer = io.BytesIO()
      gray.convert("RGB").save(buffer, format="PNG")
    files[name] = buffer.getvalue()
  fake_data.write_folder(tmp_path / "manual" / "fer2013", files)
  builder = helpers.build(tmp_path / "manual", tmp_path / "data")
  helpers.assert_matches(helpers.read_all(builder), helpers.image_expected(rows))


def test_challenge_zip_as_downloaded(rows, tmp_path):
  """The challenge zip (icml_face_data.csv, train.csv, test.csv, ...) builds from icml."""
  members = {
      "icml_face_data.csv": fake_data.csv_bytes(rows, "icml"),
      "train.csv": fake_data.csv_bytes(helpers.default_rows(seed=3), "train"),
      "test.csv": b"pixels\n1 2 3\n",
      "example_submission.csv": b"Emotion\n0\n",
  }
  name = "challenges-in-representation-learning-facial-expression-recognition-challenge.zip"
  fake_data.write_archive(tmp_path / "manual" / name, members)
  builder = helpers.build(tmp_path / "manual", tmp_path / "data")
  assert builder.info.metadata["source"] == f"{name}:icml_face_data.csv"
  expected = helpers.csv_expected(rows, f"{name}:icml_face_data.csv")
  helpers.assert_matches(helpers.read_all(builder), expected)


def test_tfds_load_with_manual_dir(rows, tmp_path):
  """The README's Python route: tfds.load with download_and_prepare_kwargs builds and reads."""
  fake_data.write_csv(tmp_path / "manual" / "fer2013.csv", rows)
  ds = tfds.load(
      "fer2013", split="train", data_dir=str(tmp_path / "data"),
      download_and_prepare_kwargs={
          "download_config": tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")),
      },
  )
  assert len(list(ds)) == 14


# Preference between several inputs.

PAIRS = [
    (("fer2013.csv", "images.tar.gz"), "fer2013.csv"),
    (("icml_face_data.csv", "train.csv"), "icml_face_data.csv"),
    (("fer2013.csv", "icml_face_data.csv"), "fer2013.csv"),
    (("images.zip", "train.csv"), "images.zip"),
    (("icml_face_data.csv", "images.zip"), "icml_face_data.csv"),
]


@pytest.mark.parametrize(("present", "winner"), PAIRS)
def test_preference_between_inputs(tmp_path, present, winner):
  """With two inputs the documented preference picks one; metadata names it, data is its own."""
  # Different drawn images per input, so the built pixels show which one was read.
  inputs = {name: helpers.default_rows(seed=i + 1) for i, name in enumerate(present)}
  manual = tmp_path / "manual"
  for name, input_rows in inputs.items():
    if name.endswith(".csv"):
      layout = {"fer2013.csv": "fer2013", "icml_face_data.csv": "icml"}.get(name, "train")
      fake_data.write_csv(manual / name, input_rows, layout)
    else:
      fake_data.write_archive(manual / name, fake_data.image_files(input_rows))
  builder = helpers.build(manual, tmp_path / "data")
  assert builder.info.metadata["source"] == winner
  expected = (helpers.csv_expected(inputs[winner], winner) if winner.endswith(".csv")
              else helpers.image_expected(inputs[winner]))
  helpers.assert_matches(helpers.read_all(builder), expected)


# Determinism.


def _stored(builder):
  return {split: [(ex["id"], ex["label"], ex["image"].tobytes()) for ex in examples]
          for split, examples in helpers.read_all(builder).items()}


def test_two_builds_are_identical(built, tmp_path):
  """Rebuilding the same input elsewhere gives the same examples in the same stored order."""
  again = helpers.build(built["root"] / "manual", tmp_path / "data")
  assert _stored(again) == _stored(built["builder"])
  assert again.info.metadata == built["builder"].info.metadata


@pytest.mark.parametrize("which", ["challenge_train", "unprefixed"])
def test_carved_builds_are_identical(request, which, tmp_path):
  """Carving is seeded: two builds of an input without usage give identical splits and order."""
  first = request.getfixturevalue(which)
  again = helpers.build(first["root"] / "manual", tmp_path / "data")
  assert _stored(again) == _stored(first["builder"])


# The opt-in skip_bad_rows config.


def test_default_config_is_strict(tmp_path, rows):
  """`fer2013` means `fer2013/strict`; skip_bad_rows is opt-in and not a default build."""
  builder = tfds.builder("fer2013", data_dir=str(tmp_path))
  assert builder.builder_config.name == "strict"
  assert not builder.builder_config.skip_bad_rows
  assert tfds.builder("fer2013/skip_bad_rows", data_dir=str(tmp_path)).builder_config.skip_bad_rows
