"""Bad input under the strict default config: a clear Fer2013InputError and nothing built."""

import gzip
import io
import re

import fer_helpers as helpers
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fer_tfds.fer2013 import fake_data
from fer_tfds.fer2013.errors import Fer2013InputError
from fer_tfds.fer2013.fer2013_dataset_builder import Builder

GOOD_PIXELS = fake_data.pixel_string(fake_data.fake_images(1, seed=5)[0]).split()


def _pixels(position=None, token=None, count=None):
  tokens = list(GOOD_PIXELS)
  if position is not None:
    tokens[position] = token
  return " ".join(tokens[:count] if count is not None else tokens)


def _fer_csv(bad_line, at=3, n_good=6):
  """fer2013.csv with good rows and `bad_line` as line `at` (line 1 is the header)."""
  def write(manual):
    lines = [helpers.good_line(i % 7, "Training", seed=i) for i in range(n_good)]
    lines.insert(at - 2, bad_line)
    helpers.write_bad_csv(manual / "fer2013.csv", lines)
  return write


def _png(size=(48, 48), mode="L"):
  buffer = io.BytesIO()
  image = Image.fromarray(fake_data.fake_images(1)[0]).resize(size).convert(mode)
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def _images_with(extra, archive=None):
  """The default drawn image release plus `extra` files, as a folder or an archive."""
  def write(manual):
    files = {**fake_data.image_files(helpers.default_rows()), **extra}
    if archive:
      fake_data.write_archive(manual / archive, files)
    else:
      fake_data.write_folder(manual / "fer2013", files)
  return write


def _raw(name, data):
  def write(manual):
    manual.mkdir(parents=True, exist_ok=True)
    (manual / name).write_bytes(data() if callable(data) else data)
  return write


def _full_csv():
  return fake_data.csv_bytes(helpers.default_rows())


def _truncated_csv():
  data = _full_csv()
  # Cut the last row (line 29) in the middle of its pixels.
  last = data.rstrip(b"\n").rfind(b"\n") + 1
  return data[: last + 500]


def _truncated_gz():
  data = gzip.compress(_full_csv(), mtime=0)
  return data[: len(data) // 2]


def _icml_bad():
  def write(manual):
    rows = helpers.default_rows()
    path = fake_data.write_csv(manual / "icml_face_data.csv", rows, "icml")
    lines = path.read_text().splitlines()
    lines[4] = f"2,PublicTest,{_pixels(count=2000)}"
    path.write_text("\n".join(lines) + "\n")
  return write


def _train_csv_bad():
  def write(manual):
    lines = [f"{i % 7},{_pixels()}" for i in range(10)]
    lines[3] = f"3,{_pixels(7, '300')}"
    helpers.write_bad_csv(manual / "train.csv", lines, header="emotion,pixels")
  return write


def _csv_in_tgz_bad():
  def write(manual):
    lines = [helpers.good_line(i % 7, "Training", seed=i) for i in range(6)]
    lines[2] = helpers.good_line(9)
    data = ("\n".join(["emotion,pixels,Usage", *lines]) + "\n").encode()
    fake_data.write_archive(manual / "fer2013.tar.gz", {"fer2013/fer2013.csv": data})
  return write


# name -> (writes the manual dir, regexes the error message must match).
CASES = {
    "too few pixels": (
        _fer_csv(f"0,{_pixels(count=2303)},Training"),
        [r"fer2013\.csv:3\b[^\n]*2303[^\n]*2304"],
    ),
    "too many pixels": (
        _fer_csv(f"0,{_pixels()} 17,Training", at=5),
        [r"fer2013\.csv:5\b[^\n]*2305[^\n]*2304"],
    ),
    "non-integer 1.5": (
        _fer_csv(f"0,{_pixels(10, '1.5')},Training"),
        [r"fer2013\.csv:3\b[^\n]*pixel 10\b[^\n]*'?1\.5'?[^\n]*integer"],
    ),
    "non-integer abc": (
        _fer_csv(f"1,{_pixels(0, 'abc')},PublicTest", at=7),
        [r"fer2013\.csv:7\b[^\n]*pixel 0\b[^\n]*abc"],
    ),
    "pixel 256": (
        _fer_csv(f"0,{_pixels(2303, '256')},Training"),
        [r"fer2013\.csv:3\b[^\n]*pixel 2303\b[^\n]*256[^\n]*0\.\.255"],
    ),
    "pixel -1": (
        _fer_csv(f"0,{_pixels(42, '-1')},Training", at=4),
        [r"fer2013\.csv:4\b[^\n]*pixel 42\b[^\n]*-1[^\n]*0\.\.255"],
    ),
    "emotion 7": (
        _fer_csv(f"7,{_pixels()},Training"),
        [r"fer2013\.csv:3\b[^\n]*emotion[^\n]*'7'[^\n]*0\.\.6"],
    ),
    "emotion x": (
        _fer_csv(f"x,{_pixels()},Training"),
        [r"fer2013\.csv:3\b[^\n]*emotion[^\n]*'x'"],
    ),
    "usage Train": (
        _fer_csv(f"0,{_pixels()},Train"),
        [r"fer2013\.csv:3\b[^\n]*Usage[^\n]*'Train'[^\n]*Training"],
    ),
    "missing pixels column": (
        lambda manual: helpers.write_bad_csv(
            manual / "fer2013.csv", ["0,Training"], header="emotion,Usage"),
        [r"fer2013\.csv\b[^\n]*missing column[^\n]*pixels", r"header"],
    ),
    "empty file": (
        _raw("fer2013.csv", b""),
        [r"fer2013\.csv\b[^\n]*empty"],
    ),
    "header only": (
        lambda manual: helpers.write_bad_csv(manual / "fer2013.csv", []),
        [r"fer2013\.csv\b[^\n]*header[^\n]*no rows"],
    ),
    "truncated row": (
        _raw("fer2013.csv", _truncated_csv),
        [r"fer2013\.csv:29\b[^\n]*(truncated|fields)"],
    ),
    "truncated csv.gz": (
        _raw("fer2013.csv.gz", _truncated_gz),
        [r"fer2013\.csv\.gz\b[^\n]*(truncated|corrupt)"],
    ),
    "icml wrong pixel count": (
        _icml_bad(),
        [r"icml_face_data\.csv:5\b[^\n]*2000[^\n]*2304"],
    ),
    "train.csv pixel 300": (
        _train_csv_bad(),
        [r"train\.csv:5\b[^\n]*pixel 7\b[^\n]*300"],
    ),
    "csv in tar.gz": (
        _csv_in_tgz_bad(),
        [r"fer2013\.tar\.gz:fer2013/fer2013\.csv:4\b[^\n]*emotion[^\n]*'9'"],
    ),
    "garbage png": (
        _images_with({"train/angry/Training_99.png": b"not an image at all"}),
        [r"train/angry/Training_99\.png\b[^\n]*(unreadable|cannot identify)"],
    ),
    "garbage png in tar.gz": (
        _images_with({"test/sad/PublicTest_99.png": b"\x89PNG garbage"}, "imgs.tar.gz"),
        [r"imgs\.tar\.gz:test/sad/PublicTest_99\.png\b[^\n]*(unreadable|cannot identify)"],
    ),
    "64x64 image": (
        _images_with({"train/happy/Training_99.png": _png((64, 64))}),
        [r"train/happy/Training_99\.png\b[^\n]*64x64[^\n]*48x48"],
    ),
    "48x40 image in zip": (
        _images_with({"train/fear/Training_99.png": _png((48, 40))}, "imgs.zip"),
        [r"imgs\.zip:train/fear/Training_99\.png\b[^\n]*48x40[^\n]*48x48"],
    ),
    "unknown emotion folder": (
        _images_with({"train/happiness/Training_99.png": _png()}),
        [r"train/happiness/Training_99\.png\b[^\n]*emotion[^\n]*'?happiness'?"],
    ),
}


def assert_nothing_built(data_dir, config="strict"):
  """No version dir, no incomplete.* leftovers, and tfds.load finds no data."""
  leftovers = [p for p in data_dir.rglob("*") if "incomplete" in p.name or "previous" in p.name]
  assert leftovers == []
  assert not (data_dir / "fer2013" / config / "1.0.0").exists()
  with pytest.raises(AssertionError, match="could not find data"):
    tfds.load(f"fer2013/{config}", data_dir=str(data_dir), download=False)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_with_clear_message(tmp_path, case):
  """Each kind of bad input fails the strict build, naming file, line/member and problem."""
  write, patterns = CASES[case]
  write(tmp_path / "manual")
  with pytest.raises(Fer2013InputError) as info:
    helpers.build(tmp_path / "manual", tmp_path / "data")
  message = str(info.value)
  for pattern in patterns:
    assert re.search(pattern, message), f"{pattern!r} not in:\n{message}"
  assert "more rows have problems" not in message
  assert_nothing_built(tmp_path / "data")


def _many_bad(n_bad):
  def write(manual):
    lines = [helpers.good_line(i % 7, seed=i) for i in range(4)]
    lines += [f"8,{_pixels()},Training" for _ in range(n_bad)]
    helpers.write_bad_csv(manual / "fer2013.csv", lines)
  return write


@pytest.mark.parametrize(("n_bad", "more"), [(5, None), (6, 1), (12, 7)])
def test_counts_further_problems(tmp_path, n_bad, more):
  """The first 5 problems are listed; beyond that the rest are counted, not listed."""
  _many_bad(n_bad)(tmp_path / "manual")
  with pytest.raises(Fer2013InputError) as info:
    helpers.build(tmp_path / "manual", tmp_path / "data")
  message = str(info.value)
  listed = re.findall(r"fer2013\.csv:(\d+)\b[^\n]*'8'", message)
  assert listed == [str(line) for line in range(6, 6 + min(n_bad, 5))]
  if more is None:
    assert "more" not in message
  else:
    assert re.search(rf"\b{more} more rows have problems", message), message
  assert re.search(rf"\b{n_bad} bad row", message), message


def test_mixed_problems_listed_in_line_order(tmp_path):
  """Different problems in one file are all reported, in line order, with their reasons."""
  lines = [
      helpers.good_line(0),
      f"1,{_pixels(3, '999')},Training",  # line 3
      f"9,{_pixels()},Training",  # line 4
      f"2,{_pixels(count=100)},PublicTest",  # line 5
      f"3,{_pixels()},Validation",  # line 6
      helpers.good_line(4, "PrivateTest"),
  ]
  helpers.write_bad_csv(tmp_path / "manual" / "fer2013.csv", lines)
  with pytest.raises(Fer2013InputError) as info:
    helpers.build(tmp_path / "manual", tmp_path / "data")
  message = str(info.value)
  found = re.findall(r"fer2013\.csv:(\d+): ([^\n]*)", message)
  assert [line for line, _ in found] == ["3", "4", "5", "6"]
  assert "999" in found[0][1] and "'9'" in found[1][1]
  assert "100" in found[2][1] and "Validation" in found[3][1]
  assert "skip_bad_rows" in message  # says how to build anyway


def test_trailing_blank_line_is_not_a_bad_row(tmp_path):
  """An extra empty line at the end of an otherwise valid CSV is not a bad row."""
  data = _full_csv() + b"\n"
  (tmp_path / "manual").mkdir()
  (tmp_path / "manual" / "fer2013.csv").write_bytes(data)
  builder = helpers.build(tmp_path / "manual", tmp_path / "data")
  assert sum(helpers.split_sizes(builder).values()) == 28


def test_csv_with_byte_order_mark(tmp_path):
  """A UTF-8 BOM before the header (as Excel writes) does not hide the emotion column."""
  (tmp_path / "manual").mkdir()
  (tmp_path / "manual" / "fer2013.csv").write_bytes(b"\xef\xbb\xbf" + _full_csv())
  builder = helpers.build(tmp_path / "manual", tmp_path / "data")
  assert sum(helpers.split_sizes(builder).values()) == 28


def test_crlf_line_endings_build(tmp_path):
  """Windows line endings are fine (the ids still count lines from 1 = header)."""
  (tmp_path / "manual").mkdir()
  (tmp_path / "manual" / "fer2013.csv").write_bytes(_full_csv().replace(b"\n", b"\r\n"))
  builder = helpers.build(tmp_path / "manual", tmp_path / "data")
  helpers.assert_matches(helpers.read_all(builder), helpers.csv_expected(helpers.default_rows()))


# A missing or unusable manual dir.


def _check_instructions(message):
  assert Builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip() in message
  assert "https://www.kaggle.com/datasets/deadskull7/fer2013" in message


@pytest.mark.parametrize("state", ["missing", "empty", "no input", "only test.csv"])
def test_manual_dir_problems_give_instructions(tmp_path, state):
  """No usable manual dir: a Fer2013InputError naming the dir, with the download instructions."""
  manual = tmp_path / "manual"
  if state != "missing":
    manual.mkdir()
  if state == "no input":
    (manual / "faces.csv").write_text("a,b\n1,2\n")
    (manual / "readme.txt").write_text("hello")
  if state == "only test.csv":
    (manual / "test.csv").write_text(f"pixels\n{_pixels()}\n")
  with pytest.raises(Fer2013InputError) as info:
    helpers.build(manual, tmp_path / "data")
  message = str(info.value)
  _check_instructions(message)
  assert str(manual) in message
  assert_nothing_built(tmp_path / "data")


# Failed builds leave nothing; failed rebuilds keep the earlier build.


def test_failed_build_then_fixed_build(tmp_path, rows):
  """After a failed build, fixing the input and building again in the same data_dir works."""
  helpers.write_bad_csv(tmp_path / "manual" / "fer2013.csv", [helpers.good_line(), "7,1 2,x"])
  with pytest.raises(Fer2013InputError):
    helpers.build(tmp_path / "manual", tmp_path / "data")
  assert_nothing_built(tmp_path / "data")
  fake_data.write_csv(tmp_path / "manual" / "fer2013.csv", rows)
  builder = helpers.build(tmp_path / "manual", tmp_path / "data")
  helpers.assert_matches(helpers.read_all(builder), helpers.csv_expected(rows))


def _snapshot(data_dir, config="strict"):
  """What a fresh `tfds.builder` reads from data_dir: ids, labels and pixels per split."""
  builder = tfds.builder(f"fer2013/{config}", data_dir=str(data_dir))
  return {split: [(ex["id"], ex["label"], ex["image"].tobytes()) for ex in examples]
          for split, examples in helpers.read_all(builder).items()}


MODES = [
    tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS,
    tfds.download.GenerateMode.FORCE_REDOWNLOAD,
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
@pytest.mark.parametrize("breakage", ["bad row", "manual dir emptied"])
def test_failed_overwrite_keeps_earlier_build(tmp_path, rows, mode, breakage):
  """A rebuild with overwrite that fails leaves the earlier complete build loadable, unchanged."""
  manual, data = tmp_path / "manual", tmp_path / "data"
  fake_data.write_csv(manual / "fer2013.csv", rows)
  helpers.build(manual, data)
  before = _snapshot(data)
  if breakage == "bad row":
    bad = f"0,{_pixels(1, '1.5')},Training"
    helpers.write_bad_csv(manual / "fer2013.csv", [helpers.good_line(), bad])
  else:
    (manual / "fer2013.csv").unlink()
  with pytest.raises(Fer2013InputError):
    helpers.build(manual, data, download_mode=mode)
  assert _snapshot(data) == before
  ds = tfds.load("fer2013", data_dir=str(data), split="test", download=False)
  assert len(list(ds)) == 7
  leftovers = [p.name for p in data.rglob("*") if "incomplete" in p.name or "previous" in p.name]
  assert leftovers == []


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_successful_overwrite_replaces_build(tmp_path, rows, mode):
  """A rebuild with overwrite that succeeds replaces the data and leaves no backup behind."""
  manual, data = tmp_path / "manual", tmp_path / "data"
  fake_data.write_csv(manual / "fer2013.csv", rows)
  helpers.build(manual, data)
  new_rows = fake_data.fake_rows((7, 7, 7), seed=99)
  fake_data.write_csv(manual / "fer2013.csv", new_rows)
  helpers.build(manual, data, download_mode=mode)
  builder = tfds.builder("fer2013", data_dir=str(data))
  helpers.assert_matches(helpers.read_all(builder), helpers.csv_expected(new_rows))
  leftovers = [p.name for p in data.rglob("*") if "incomplete" in p.name or "previous" in p.name]
  assert leftovers == []


def test_reuse_without_overwrite_keeps_build(tmp_path, rows):
  """Without overwrite, a second build call reuses the existing data even if the input broke."""
  manual, data = tmp_path / "manual", tmp_path / "data"
  fake_data.write_csv(manual / "fer2013.csv", rows)
  helpers.build(manual, data)
  before = _snapshot(data)
  helpers.write_bad_csv(manual / "fer2013.csv", [helpers.good_line(9)])
  helpers.build(manual, data)
  assert _snapshot(data) == before
