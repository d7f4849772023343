"""The opt-in `fer2013/skip_bad_rows` config: bad rows are skipped, logged and recorded."""

import logging
import re

import fer_helpers as helpers
import numpy as np
import pytest
import tensorflow_datasets as tfds

from fer_tfds.fer2013 import fake_data
from fer_tfds.fer2013.errors import Fer2013InputError

# Line number -> (bad line, regex of the recorded reason). Other lines are good rows.
_PIXELS = fake_data.pixel_string(fake_data.fake_images(1, seed=11)[0]).split()
BAD_LINES = {
    4: (f"0,{' '.join(_PIXELS[:-1])},Training", r"2303 pixel values"),
    7: (f"1,{' '.join(['1.5'] + _PIXELS[1:])},Training", r"pixel 0\b.*1\.5"),
    9: (f"2,{' '.join(_PIXELS[:9] + ['256'] + _PIXELS[10:])},PublicTest", r"pixel 9\b.*256"),
    12: (f"7,{' '.join(_PIXELS)},PrivateTest", r"emotion.*'7'"),
    15: (f"x,{' '.join(_PIXELS)},Training", r"emotion.*'x'"),
    18: (f"3,{' '.join(_PIXELS)},Train", r"Usage.*'Train'"),
    21: (f"4,{' '.join(_PIXELS[:1000])}", r"fields|truncated"),
}
N_LINES = 24  # header + 23 rows


def _rows_and_lines():
  """The good rows by line, and the file's lines."""
  rows = fake_data.fake_rows((12, 6, 5), seed=4)
  good, lines = {}, []
  for line in range(2, N_LINES + 1):
    if line in BAD_LINES:
      lines.append(BAD_LINES[line][0])
    else:
      label, usage, image = rows[len(good)]
      good[line] = (label, usage, image)
      lines.append(f"{label},{fake_data.pixel_string(image)},{usage}")
  return good, lines


@pytest.fixture(scope="module")
def skipped_build(tmp_path_factory):
  """A skip_bad_rows build of a fer2013.csv with 7 bad rows of different kinds among 23."""
  root = tmp_path_factory.mktemp("skip")
  good, lines = _rows_and_lines()
  helpers.write_bad_csv(root / "manual" / "fer2013.csv", lines)
  handler = _Collect()
  logging.getLogger().addHandler(handler)
  try:
    builder = helpers.build(root / "manual", root / "data", config="skip_bad_rows")
  finally:
    logging.getLogger().removeHandler(handler)
  return {"builder": builder, "good": good, "root": root, "logs": handler.messages}


class _Collect(logging.Handler):
  """Collects log messages (absl logs through the `absl` Python logger)."""

  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def _expected(good):
  expected = {"train": {}, "validation": {}, "test": {}}
  for line, (label, usage, image) in good.items():
    expected[helpers.SPLIT_OF_USAGE[usage]][f"fer2013.csv:{line}"] = (label, image)
  return expected


def test_good_rows_are_built(skipped_build):
  """Exactly the good rows are built, with their pixels, labels and ids."""
  builder = skipped_build["builder"]
  assert builder.info.full_name == "fer2013/skip_bad_rows/1.0.0"
  helpers.assert_matches(helpers.read_all(builder), _expected(skipped_build["good"]))


def test_skipped_rows_recorded_in_metadata(skipped_build):
  """Every skipped row is in info.metadata['skipped_rows'] as {id, reason}, in line order."""
  skipped = skipped_build["builder"].info.metadata["skipped_rows"]
  assert [s["id"] for s in skipped] == [f"fer2013.csv:{line}" for line in sorted(BAD_LINES)]
  for entry, line in zip(skipped, sorted(BAD_LINES), strict=True):
    assert set(entry) == {"id", "reason"}
    assert re.search(BAD_LINES[line][1], entry["reason"]), entry


def test_skipped_rows_survive_reload(skipped_build):
  """A fresh tfds.builder from disk has the same skipped_rows (and the other metadata)."""
  fresh = tfds.builder("fer2013/skip_bad_rows", data_dir=str(skipped_build["root"] / "data"))
  assert fresh.info.metadata["skipped_rows"] == skipped_build["builder"].info.metadata[
      "skipped_rows"]
  assert len(fresh.info.metadata["skipped_rows"]) == len(BAD_LINES)
  assert fresh.info.metadata["source"] == "fer2013.csv"
  ds = tfds.load("fer2013/skip_bad_rows", data_dir=str(skipped_build["root"] / "data"),
                 split="train", download=False)
  assert len(list(ds)) == 12


def test_skipped_rows_are_logged(skipped_build):
  """Each skipped row is logged with its id and reason."""
  logs = "\n".join(skipped_build["logs"])
  for line, (_, reason) in BAD_LINES.items():
    assert re.search(rf"fer2013\.csv:{line}\b[^\n]*({reason})", logs), line


def test_skip_config_does_not_touch_strict(skipped_build):
  """The lenient build lives in its own config dir; the strict config stays unbuilt."""
  data = skipped_build["root"] / "data"
  assert (data / "fer2013" / "skip_bad_rows" / "1.0.0").is_dir()
  assert not (data / "fer2013" / "strict" / "1.0.0").exists()


def test_strict_fails_on_same_input(skipped_build, tmp_path):
  """The same file fails the strict default build and reports 7 bad rows (5 listed)."""
  with pytest.raises(Fer2013InputError, match=r"7 bad row[\s\S]*and 2 more rows have problems"):
    helpers.build(skipped_build["root"] / "manual", tmp_path / "data")


def test_more_than_five_all_recorded(tmp_path):
  """The 5-problem cap is only for the error message: every skipped row is recorded."""
  lines = [helpers.good_line(i % 7, seed=i) for i in range(3)]
  lines += [f"9,{' '.join(_PIXELS)},Training"] * 12
  helpers.write_bad_csv(tmp_path / "manual" / "fer2013.csv", lines)
  builder = helpers.build(tmp_path / "manual", tmp_path / "data", config="skip_bad_rows")
  skipped = builder.info.metadata["skipped_rows"]
  assert [s["id"] for s in skipped] == [f"fer2013.csv:{n}" for n in range(5, 17)]
  assert helpers.split_sizes(builder) == {"train": 3}


def test_bad_images_skipped(tmp_path, rows, caplog):
  """Image input: unreadable, wrong-size and unknown-emotion files are skipped and recorded."""
  (big,) = fake_data.image_files([(0, "Training", np.zeros((64, 64), np.uint8))]).values()
  (face,) = fake_data.image_files(rows[:1]).values()
  bad = {
      "fer2013/train/angry/Training_90.png": b"garbage bytes",
      "fer2013/test/happy/PublicTest_91.png": big,
      "fer2013/train/joy/Training_92.png": face,
  }
  files = {f"fer2013/{k}": v for k, v in fake_data.image_files(rows).items()}
  fake_data.write_archive(tmp_path / "manual" / "faces.tar.gz", {**files, **bad})
  builder = helpers.build(tmp_path / "manual", tmp_path / "data", config="skip_bad_rows")
  helpers.assert_matches(helpers.read_all(builder), helpers.image_expected(rows))
  skipped = {s["id"]: s["reason"] for s in builder.info.metadata["skipped_rows"]}
  assert set(skipped) == {
      "faces.tar.gz:train/angry/Training_90.png",
      "faces.tar.gz:test/happy/PublicTest_91.png",
      "faces.tar.gz:train/joy/Training_92.png",
  }
  assert re.search(r"unreadable|cannot", skipped["faces.tar.gz:train/angry/Training_90.png"])
  assert "64x64" in skipped["faces.tar.gz:test/happy/PublicTest_91.png"]
  assert "'joy'" in skipped["faces.tar.gz:train/joy/Training_92.png"]
  assert all(item in caplog.text for item in skipped)


def test_all_rows_bad_is_an_error(tmp_path):
  """Skipping every row must not produce an empty dataset silently."""
  lines = [f"{code},{' '.join(_PIXELS)},Training" for code in (7, 8, 9)]
  helpers.write_bad_csv(tmp_path / "manual" / "fer2013.csv", lines)
  with pytest.raises(Fer2013InputError, match=r"fer2013\.csv"):
    helpers.build(tmp_path / "manual", tmp_path / "data", config="skip_bad_rows")


def test_skip_reasons_are_reproducible(tmp_path):
  """Two builds of the same bad input record identical skipped_rows (no memory addresses)."""
  files = {**fake_data.image_files(helpers.default_rows()),
           "train/angry/Training_90.png": b"garbage bytes"}
  fake_data.write_archive(tmp_path / "manual" / "faces.zip", files)
  first = helpers.build(tmp_path / "manual", tmp_path / "a", config="skip_bad_rows")
  second = helpers.build(tmp_path / "manual", tmp_path / "b", config="skip_bad_rows")
  reasons = [s["reason"] for s in first.info.metadata["skipped_rows"]]
  assert len(reasons) == 1
  assert " at 0x" not in reasons[0]
  assert second.info.metadata["skipped_rows"] == first.info.metadata["skipped_rows"]
