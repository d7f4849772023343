"""Reads a FER2013 input into one in-memory table of examples.

Every reader validates everything before anything is written, so a bad file
fails the build up front, and returns the unusable rows as `Problem`s for the
builder to fail on (strict) or to skip and record (`skip_bad_rows`).
"""

from __future__ import annotations

import csv
import io
import re
import sys
import tarfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from absl import logging
from PIL import Image, UnidentifiedImageError

from fer_tfds.features import EMOTIONS

from .errors import Fer2013InputError, Problem
from .pixels import IMAGE_SHAPE, IMAGE_SIZE, parse_pixel_string
from .sources import (
  CSV_KINDS,
  IMAGE_MEMBER,
  IMAGE_SUFFIXES,
  Kind,
  Source,
  iter_image_files,
  open_csv_binary,
)

USAGES = ("Training", "PublicTest", "PrivateTest")
UNKNOWN_USAGE = ""  # the input says nothing: the split is carved out later
_USAGE_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_")
# The columns each CSV kind must have (header names are compared stripped).
REQUIRED_COLUMNS = {
    Kind.FER2013_CSV: ("emotion", "pixels", "Usage"),
    Kind.ICML_CSV: ("emotion", "Usage", "pixels"),
    Kind.CHALLENGE_TRAIN_CSV: ("emotion", "pixels"),
}


@dataclass
class ExampleTable:
  """All examples of one input, in input order."""

  ids: list[str]
  images: np.ndarray  # (n, 48, 48, 1) uint8
  labels: np.ndarray  # (n,) int64 in 0..6
  usages: list[str]  # one of USAGES, or UNKNOWN_USAGE

  def __len__(self) -> int:
    return len(self.ids)

  def select(self, keep: np.ndarray) -> ExampleTable:
    """The rows where `keep` is true (a boolean mask)."""
    index = np.flatnonzero(keep)
    return ExampleTable(
        ids=[self.ids[i] for i in index],
        images=self.images[index],
        labels=self.labels[index],
        usages=[self.usages[i] for i in index],
    )


def read_source(source: Source) -> tuple[ExampleTable, list[Problem]]:
  """Reads and validates the whole input."""
  if source.kind is Kind.IMAGE_FOLDERS:
    return read_image_folders(source)
  return read_csv(source)


def read_csv(source: Source) -> tuple[ExampleTable, list[Problem]]:
  """Reads one of the CSV releases; ids are `<file>:<line>`."""
  required = REQUIRED_COLUMNS[source.kind]
  ids: list[str] = []
  pixel_rows: list[str] = []
  labels: list[int] = []
  usages: list[str] = []
  problems: list[Problem] = []
  try:
    with open_csv_binary(source) as stream:
      data = stream.read().removeprefix(_UTF8_BOM)
  except (EOFError, OSError, zlib.error, zipfile.BadZipFile, tarfile.TarError,
          UnicodeDecodeError) as error:
    raise Fer2013InputError(
        f"{source.name}: cannot read the file ({type(error).__name__}: {error}). "
        "It is truncated or corrupt: download it again."
    ) from None
  lines = _fast_lines(data) or _exact_lines(data, source)
  if not lines:
    raise Fer2013InputError(
        f"{source.name}: the file is empty; expected a header "
        f"{','.join(required)} and one row per image. Download it again."
    )
  _, header = lines[0]
  columns = {name.strip(): i for i, name in enumerate(header)}
  missing = [c for c in required if c not in columns]
  if missing:
    raise Fer2013InputError(
        f"{source.name}: missing column(s) {', '.join(missing)} in the header "
        f"(found: {', '.join(n.strip() for n in header)[:200]}). A "
        f"{source.kind.value} needs the columns {', '.join(required)}."
    )
  emotion_col, pixels_col = columns["emotion"], columns["pixels"]
  usage_col = columns.get("Usage")
  for line, row in lines[1:]:
    location = f"{source.name}:{line}"
    if not any(field.strip() for field in row):
      continue  # a blank line holds no example (trailing newlines, editors)
    if len(row) != len(header):
      problems.append(
          Problem(location, f"has {len(row)} fields, expected {len(header)} "
                  f"({','.join(header)}); the row is truncated or malformed")
      )
      continue
    emotion = row[emotion_col].strip()
    if emotion not in _EMOTION_CODES:
      problems.append(
          Problem(location, f"unknown emotion code {emotion[:20]!r}, expected 0..6")
      )
      continue
    usage = UNKNOWN_USAGE
    if usage_col is not None:
      usage = row[usage_col].strip()
      if usage not in USAGES:
        problems.append(Problem(
            location, f"unknown Usage {usage[:20]!r}, expected one of {', '.join(USAGES)}"
        ))
        continue
    ids.append(location)
    pixel_rows.append(row[pixels_col])
    labels.append(_EMOTION_CODES[emotion])
    usages.append(usage)
  if not ids and not problems:
    raise Fer2013InputError(
        f"{source.name}: the file has a header but no rows. Download it again."
    )

  images = np.zeros((len(ids), *IMAGE_SHAPE), dtype=np.uint8)
  good = np.ones(len(ids), dtype=bool)
  for index, pixels in enumerate(pixel_rows):
    try:
      images[index] = parse_pixel_string(pixels)
    except ValueError as error:
      problems.append(Problem(ids[index], str(error)))
      good[index] = False
  table = ExampleTable(ids, images, np.asarray(labels, dtype=np.int64), usages)
  problems.sort(key=_line_of)
  return (table if good.all() else table.select(good)), problems


def read_image_folders(source: Source) -> tuple[ExampleTable, list[Problem]]:
  """Reads `train/<emotion>/*` and `test/<emotion>/*`; ids are member paths.

  The usage comes from the `Training_`/`PublicTest_`/`PrivateTest_` file name
  prefix. Without one, files in `test/` are test examples and files in
  `train/` have no usage: validation is carved out of them later.
  """
  ids: list[str] = []
  images: list[np.ndarray] = []
  labels: list[int] = []
  usages: list[str] = []
  problems: list[Problem] = []
  converted: Counter[str] = Counter()
  try:
    for path, data in iter_image_files(source):
      location = f"{source.path.name}:{path}" if source.is_archive else path
      folder, emotion, file_name = IMAGE_MEMBER.search(path).groups()  # type: ignore[union-attr]
      if file_name.startswith("."):
        logging.info("Ignoring hidden file %s.", location)
        continue
      try:
        pixels, mode = _decode_image(emotion, file_name, data)
      except _BadImage as error:
        problems.append(Problem(location, str(error)))
        continue
      if mode != "L":
        converted[mode] += 1
      prefix = _USAGE_PREFIX.match(file_name)
      if prefix:
        usages.append(prefix.group(1))
      else:
        usages.append("PrivateTest" if folder == "test" else UNKNOWN_USAGE)
      ids.append(path)
      images.append(pixels)
      labels.append(EMOTIONS.index(emotion))
  except (EOFError, OSError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as error:
    raise Fer2013InputError(
        f"{source.name}: cannot read the image archive ({type(error).__name__}: {error}). "
        "It is truncated or corrupt: download it again."
    ) from None
  for mode, count in sorted(converted.items()):
    logging.info("Converted %d %s-mode images of %s to grayscale.", count, mode, source.name)
  if not ids and not problems:
    raise Fer2013InputError(
        f"{source.name}: no images under train/<emotion>/ or test/<emotion>/."
    )
  stacked = np.stack(images) if images else np.zeros((0, *IMAGE_SHAPE), np.uint8)
  return ExampleTable(ids, stacked, np.asarray(labels, dtype=np.int64), usages), problems


class _BadImage(ValueError):
  """An image file that cannot be an example; the message says why."""


def _decode_image(emotion: str, file_name: str, data: bytes) -> tuple[np.ndarray, str]:
  """The (48, 48, 1) grayscale pixels of one image file, and its original mode."""
  if emotion not in EMOTIONS:
    raise _BadImage(f"unknown emotion folder {emotion!r}, expected one of {', '.join(EMOTIONS)}")
  if not file_name.lower().endswith(IMAGE_SUFFIXES):
    raise _BadImage(f"not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        raise _BadImage(f"image is {image.size[0]}x{image.size[1]}, expected 48x48")
      pixels = np.asarray(image.convert("L"), dtype=np.uint8)
      return pixels.reshape(IMAGE_SHAPE), image.mode
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    # PIL's messages name a memory address; keep the reason reproducible.
    raise _BadImage(f"unreadable image ({type(error).__name__}: not a valid image file)") from None


_UTF8_BOM = b"\xef\xbb\xbf"
_EMOTION_CODES = {str(code): code for code in range(len(EMOTIONS))}
Lines = list[tuple[int, list[str]]]  # (line number in the file, fields)


def _fast_lines(data: bytes) -> Lines | None:
  """pyarrow's CSV reader (about 10x faster than `csv`) for well-formed files.

  Used only when every line of the file is exactly one row with no empty
  field, so that row i is line i + 1; anything else (short, ragged or blank
  rows, quoted newlines, bad UTF-8) returns None and the exact `csv` reader
  takes over, with its line numbers.
  """
  end = data.find(b"\n")  # not data.split(): that copies the whole file (0.2 s for FER2013)
  first_line = data if end < 0 else data[:end]
  names = [f"column{i}" for i in range(first_line.count(b",") + 1)]
  try:
    table = pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(column_names=names),
        parse_options=pa_csv.ParseOptions(ignore_empty_lines=False),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False
        ),
    )
  except (pa.ArrowInvalid, ValueError):
    return None
  newlines = data.count(b"\n") + (not data.endswith(b"\n"))
  columns = [column.to_pylist() for column in table.columns]
  if table.num_rows != newlines or any("" in column for column in columns):
    return None
  return list(enumerate((list(row) for row in zip(*columns, strict=True)), start=1))


def _exact_lines(data: bytes, source: Source) -> Lines:
  csv.field_size_limit(sys.maxsize)
  try:
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    return [(reader.line_num, row) for row in reader]
  except UnicodeDecodeError as error:
    raise Fer2013InputError(
        f"{source.name}: not UTF-8 text ({error}). Download it again."
    ) from None
  except csv.Error as error:
    raise Fer2013InputError(
        f"{source.name}:{reader.line_num}: not valid CSV ({error}). Download it again."
    ) from None
assert set(CSV_KINDS.values()) == set(REQUIRED_COLUMNS)


def _line_of(problem: Problem) -> int:
  _, _, line = problem.location.rpartition(":")
  return int(line) if line.isdigit() else 0
