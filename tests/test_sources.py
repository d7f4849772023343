"""Unit tests of fer_tfds/fer2013/sources.py: finding, ranking and opening the inputs."""

import logging

import pytest

from fer_tfds.fer2013 import fake_data
from fer_tfds.fer2013.errors import Fer2013InputError
from fer_tfds.fer2013.sources import (
  PREFERENCE,
  Kind,
  Source,
  choose_source,
  find_sources,
  iter_image_files,
  open_csv,
)


@pytest.fixture(scope="module")
def small_rows():
  return fake_data.fake_rows((2, 1, 1))


@pytest.fixture(scope="module")
def csv_bytes(small_rows):
  return fake_data.csv_bytes(small_rows)


def _kinds(sources):
  return [s.kind for s in sources]


def test_preference_order_is_documented():
  """The documented order: fer2013.csv > icml_face_data.csv > image folders > train.csv."""
  assert PREFERENCE == [
      Kind.FER2013_CSV, Kind.ICML_CSV, Kind.IMAGE_FOLDERS, Kind.CHALLENGE_TRAIN_CSV,
  ]


@pytest.mark.parametrize(
    ("file_name", "layout", "kind"),
    [
        ("fer2013.csv", "fer2013", Kind.FER2013_CSV),
        ("fer2013.csv.gz", "fer2013", Kind.FER2013_CSV),
        ("icml_face_data.csv", "icml", Kind.ICML_CSV),
        ("icml_face_data.csv.gz", "icml", Kind.ICML_CSV),
        ("train.csv", "train", Kind.CHALLENGE_TRAIN_CSV),
    ],
)
def test_finds_csv_files(tmp_path, small_rows, file_name, layout, kind):
  """Each CSV release is recognised by its file name, plain or gzipped."""
  path = fake_data.write_csv(tmp_path / file_name, small_rows, layout)
  assert find_sources(tmp_path) == [Source(kind, path)]


@pytest.mark.parametrize(
    "archive_name", ["images.zip", "images.tar", "images.tar.gz", "images.tgz"]
)
@pytest.mark.parametrize("root", ["", "fer2013/"])
def test_finds_image_archives(tmp_path, small_rows, archive_name, root):
  """An archive with train/<emotion>/ and test/<emotion>/ members is an image-folder input."""
  files = {root + name: data for name, data in fake_data.image_files(small_rows).items()}
  path = fake_data.write_archive(tmp_path / archive_name, files)
  assert find_sources(tmp_path) == [Source(Kind.IMAGE_FOLDERS, path)]


def test_finds_nested_image_folder(tmp_path, small_rows):
  """An extracted image release in a sub-folder (manual/fer2013/train/...) is found."""
  fake_data.write_folder(tmp_path / "fer2013", fake_data.image_files(small_rows))
  assert find_sources(tmp_path) == [Source(Kind.IMAGE_FOLDERS, tmp_path / "fer2013")]


def test_finds_image_folders_at_top_of_manual_dir(tmp_path, small_rows):
  """The image release extracted straight into the manual dir (manual/train, manual/test)."""
  fake_data.write_folder(tmp_path, fake_data.image_files(small_rows))
  assert find_sources(tmp_path) == [Source(Kind.IMAGE_FOLDERS, tmp_path)]


@pytest.mark.parametrize("archive_name", ["fer2013.zip", "fer2013.tar.gz", "fer2013.tar"])
def test_finds_csv_inside_archives(tmp_path, csv_bytes, archive_name):
  """A CSV member of an archive is an input; the source names the member."""
  path = fake_data.write_archive(tmp_path / archive_name, {"fer2013/fer2013.csv": csv_bytes})
  (source,) = find_sources(tmp_path)
  assert source == Source(Kind.FER2013_CSV, path, member="fer2013/fer2013.csv")
  assert source.name == f"{archive_name}:fer2013/fer2013.csv"
  with open_csv(source) as text:
    assert text.read().encode() == csv_bytes


def test_opens_gzipped_csv(tmp_path, small_rows, csv_bytes):
  """open_csv decompresses a .csv.gz transparently."""
  path = fake_data.write_csv(tmp_path / "fer2013.csv.gz", small_rows)
  with open_csv(Source(Kind.FER2013_CSV, path)) as text:
    assert text.read().encode() == csv_bytes


def test_challenge_test_csv_is_ignored_and_logged(tmp_path, small_rows, absl_info):
  """The challenge's unlabeled test.csv (and the submission template) are not inputs."""
  train = fake_data.write_csv(tmp_path / "train.csv", small_rows, "train")
  (tmp_path / "test.csv").write_text("pixels\n1 2 3\n")
  (tmp_path / "example_submission.csv").write_text("Emotion\n0\n")
  assert find_sources(tmp_path) == [Source(Kind.CHALLENGE_TRAIN_CSV, train)]
  messages = [r.getMessage() for r in absl_info.records]
  assert any("test.csv" in m for m in messages), messages


def test_only_test_csv_is_no_input(tmp_path):
  """A manual dir holding only test.csv has no usable input."""
  (tmp_path / "test.csv").write_text("pixels\n1 2 3\n")
  assert find_sources(tmp_path) == []


def test_hidden_files_and_folders_are_ignored(tmp_path, small_rows):
  """Hidden files (.fer2013.csv, .cache/...) and macOS resource forks are not inputs."""
  fake_data.write_csv(tmp_path / ".fer2013.csv", small_rows)
  fake_data.write_csv(tmp_path / ".cache" / "fer2013.csv", small_rows)
  fake_data.write_folder(tmp_path / ".trash" / "fer2013", fake_data.image_files(small_rows))
  assert find_sources(tmp_path) == []
  archive = fake_data.write_archive(tmp_path / "x.zip", {"__MACOSX/._fer2013.csv": b"\0\1"})
  assert find_sources(tmp_path) == []
  archive.unlink()
  icml = fake_data.write_csv(tmp_path / "icml_face_data.csv", small_rows, "icml")
  assert find_sources(tmp_path) == [Source(Kind.ICML_CSV, icml)]


def test_all_inputs_are_ranked(tmp_path, small_rows, csv_bytes):
  """With every kind present, find_sources lists them best first."""
  train = fake_data.write_csv(tmp_path / "a" / "train.csv", small_rows, "train")
  images = fake_data.write_archive(tmp_path / "b.zip", fake_data.image_files(small_rows))
  icml = fake_data.write_csv(tmp_path / "c" / "icml_face_data.csv", small_rows, "icml")
  fer = fake_data.write_csv(tmp_path / "d" / "fer2013.csv.gz", small_rows)
  assert find_sources(tmp_path) == [
      Source(Kind.FER2013_CSV, fer),
      Source(Kind.ICML_CSV, icml),
      Source(Kind.IMAGE_FOLDERS, images),
      Source(Kind.CHALLENGE_TRAIN_CSV, train),
  ]


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        (("fer2013.csv", "images.tar.gz"), Kind.FER2013_CSV),
        (("icml_face_data.csv", "train.csv"), Kind.ICML_CSV),
        (("images.zip", "train.csv"), Kind.IMAGE_FOLDERS),
        (("images.tar", "icml_face_data.csv"), Kind.ICML_CSV),
        (("fer2013.csv.gz", "icml_face_data.csv", "images.zip", "train.csv"), Kind.FER2013_CSV),
    ],
)
def test_choose_source_prefers_and_logs(tmp_path, small_rows, present, chosen, caplog):
  """choose_source takes the preferred input and logs what it did not use."""
  layouts = {"fer2013": "fer2013", "icml_face_data": "icml", "train": "train"}
  for name in present:
    stem = name.split(".")[0]
    if stem in layouts:
      fake_data.write_csv(tmp_path / name, small_rows, layouts[stem])
    else:
      fake_data.write_archive(tmp_path / name, fake_data.image_files(small_rows))
  source = choose_source(tmp_path)
  assert source.kind is chosen
  # One warning names the input used and every input not used.
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert any(all(name in w for name in present) for w in warnings), warnings


def test_choose_source_without_input_gives_instructions(tmp_path):
  """No recognised input: the error lists what the dir holds and carries the instructions."""
  (tmp_path / "notes.txt").write_text("x")
  (tmp_path / "faces.csv").write_text("a,b\n")
  with pytest.raises(Fer2013InputError) as info:
    choose_source(tmp_path, "HOW TO DOWNLOAD")
  message = str(info.value)
  assert str(tmp_path) in message
  assert "notes.txt" in message and "faces.csv" in message
  assert "HOW TO DOWNLOAD" in message


@pytest.mark.parametrize("archive_name", ["broken.zip", "broken.tar.gz"])
def test_corrupt_archive_is_an_input_error(tmp_path, small_rows, archive_name):
  """A truncated archive fails with a message naming the file, not a zipfile/tarfile error."""
  good = fake_data.write_archive(tmp_path / "src" / archive_name, fake_data.image_files(small_rows))
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / archive_name).write_bytes(good.read_bytes()[: good.stat().st_size // 3])
  with pytest.raises(Fer2013InputError, match=rf"{archive_name}.*(truncated|corrupt)"):
    find_sources(manual)


@pytest.mark.parametrize("container", ["folder", "images.zip", "images.tar", "images.tar.gz"])
def test_iter_image_files_paths(tmp_path, small_rows, container):
  """Image paths are `train|test/<emotion>/<file>` whatever the container and its root folder."""
  files = fake_data.image_files(small_rows)
  rooted = {f"fer2013/{name}": data for name, data in files.items()}
  if container == "folder":
    path = fake_data.write_folder(tmp_path / "fer2013", files)
  else:
    path = fake_data.write_archive(tmp_path / container, rooted)
  found = dict(iter_image_files(Source(Kind.IMAGE_FOLDERS, path)))
  assert found == files
