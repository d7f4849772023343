"""Finds the FER2013 input in the manual directory and opens it.

Accepted inputs, plain or compressed (`.csv`, `.csv.gz`, `.zip`, `.tar`,
`.tar.gz`/`.tgz`):

  * `fer2013.csv`          original release: emotion,pixels,Usage
  * `icml_face_data.csv`   challenge release: emotion, Usage, pixels
  * image folders          `train/<emotion>/*.jpg`, `test/<emotion>/*.jpg`
  * `train.csv`            challenge training file: emotion,pixels (no usage)

When several are present, the one that keeps most of the original release is
used: that order, first by path within a kind (`PREFERENCE`).
"""

from __future__ import annotations

import enum
import gzip
import io
import re
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from absl import logging

from .errors import Fer2013InputError


class Kind(enum.Enum):
  """The accepted input formats, in order of preference."""

  FER2013_CSV = "fer2013.csv"
  ICML_CSV = "icml_face_data.csv"
  IMAGE_FOLDERS = "train/ and test/ image folders"
  CHALLENGE_TRAIN_CSV = "train.csv"


PREFERENCE = list(Kind)
CSV_KINDS = {kind.value: kind for kind in Kind if kind.value.endswith(".csv")}
# Files of the challenge download that are not inputs, and why.
KNOWN_NON_INPUTS = {
    "test.csv": "the challenge's test.csv has no labels",
    "example_submission.csv": "a Kaggle submission template",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
# `<root>/train|test/<emotion>/<file>`, at any depth inside a folder or archive.
IMAGE_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)$")
_MAX_DEPTH = 3


@dataclass(frozen=True)
class Source:
  """One usable input: a path, and the member inside it for archives."""

  kind: Kind
  path: Path
  member: str | None = None  # CSV member of an archive; image root is implied

  @property
  def name(self) -> str:
    """How messages and example ids refer to this input."""
    return f"{self.path.name}:{self.member}" if self.member else self.path.name

  @property
  def is_archive(self) -> bool:
    return _is_archive(self.path)


def find_sources(manual_dir: Path) -> list[Source]:
  """All recognised inputs under `manual_dir`, best first."""
  found: list[Source] = []
  if (manual_dir / "train").is_dir() or (manual_dir / "test").is_dir():
    found.append(Source(Kind.IMAGE_FOLDERS, manual_dir))
  for path in _walk(manual_dir):
    if path.is_dir():
      if (path / "train").is_dir() or (path / "test").is_dir():
        found.append(Source(Kind.IMAGE_FOLDERS, path))
      continue
    name = path.name.lower()
    csv_name = name[: -len(".gz")] if name.endswith(".csv.gz") else name
    if csv_name in CSV_KINDS:
      found.append(Source(CSV_KINDS[csv_name], path))
    elif csv_name in KNOWN_NON_INPUTS:
      logging.info("Ignoring %s: %s.", path, KNOWN_NON_INPUTS[csv_name])
    elif _is_archive(path):
      found.extend(_archive_sources(path))
  return sorted(found, key=lambda s: (PREFERENCE.index(s.kind), str(s.path), s.member or ""))


def choose_source(manual_dir: Path, instructions: str = "") -> Source:
  """The input to build from, logged with the alternatives it won over."""
  sources = find_sources(manual_dir)
  if not sources:
    found = ", ".join(p.name for p in sorted(manual_dir.iterdir())[:10])
    raise Fer2013InputError(
        f"no FER2013 input found in {manual_dir} (it holds: {found}).\n{instructions}"
    )
  chosen = sources[0]
  if len(sources) > 1:
    others = ", ".join(f"{s.name} ({s.kind.value})" for s in sources[1:])
    logging.warning(
        "Several FER2013 inputs in %s; using %s (%s) by the preference order "
        "%s. Not used: %s.",
        manual_dir, chosen.name, chosen.kind.value,
        " > ".join(k.value for k in PREFERENCE), others,
    )
  else:
    logging.info("Building FER2013 from %s (%s).", chosen.path, chosen.kind.value)
  return chosen


@contextmanager
def open_csv_binary(source: Source) -> Iterator[IO[bytes]]:
  """Opens a CSV input (plain, gzipped, or inside an archive) as bytes."""
  with _open_binary(source) as raw:
    if _name_of(source).lower().endswith(".gz"):
      raw = gzip.GzipFile(fileobj=raw)
    yield raw


@contextmanager
def open_csv(source: Source) -> Iterator[IO[str]]:
  """Opens a CSV input as text.

  `utf-8-sig` also reads files that spreadsheet programs saved with a BOM.
  """
  with open_csv_binary(source) as raw:
    yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def iter_image_files(source: Source) -> Iterator[tuple[str, bytes]]:
  """Yields `(path, bytes)` for every file in `train/` or `test/` folders.

  Paths are relative to the folder that holds `train/` and `test/`, in a
  deterministic order (sorted for folders, archive order for archives).
  """
  path = source.path
  if path.is_dir():
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
      relative = file.relative_to(path).as_posix()
      if IMAGE_MEMBER.search(relative):
        yield relative, file.read_bytes()
  elif zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      for info in archive.infolist():
        if not info.is_dir() and IMAGE_MEMBER.search(info.filename):
          yield _strip_root(info.filename), archive.read(info)
  else:
    with tarfile.open(path, mode="r|*") as archive:
      for member in archive:
        if member.isfile() and IMAGE_MEMBER.search(member.name):
          data = archive.extractfile(member)
          assert data is not None
          yield _strip_root(member.name), data.read()


def _strip_root(member: str) -> str:
  """`fer2013/train/angry/x.jpg` -> `train/angry/x.jpg`."""
  match = IMAGE_MEMBER.search(member)
  assert match is not None
  return member[match.start() :].lstrip("/")


def _walk(root: Path, depth: int = 0) -> Iterator[Path]:
  for path in sorted(root.iterdir()):
    if path.name.startswith("."):
      continue
    yield path
    if path.is_dir() and depth + 1 < _MAX_DEPTH and path.name not in ("train", "test"):
      yield from _walk(path, depth + 1)


def _is_archive(path: Path) -> bool:
  return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _archive_sources(path: Path) -> list[Source]:
  """Inputs inside an archive: CSV members, or train/test image folders."""
  try:
    if path.name.lower().endswith(".zip"):
      with zipfile.ZipFile(path) as archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
    else:
      with tarfile.open(path, mode="r:*") as archive:
        names = [m.name for m in archive.getmembers() if m.isfile()]
  except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as error:
    raise Fer2013InputError(
        f"{path}: cannot read the archive ({error}). It is truncated or corrupt: "
        "download it again."
    ) from None
  found = []
  for name in names:
    base = name.rsplit("/", 1)[-1].lower()
    csv_name = base[: -len(".gz")] if base.endswith(".csv.gz") else base
    if csv_name in CSV_KINDS:
      found.append(Source(CSV_KINDS[csv_name], path, member=name))
  if any(IMAGE_MEMBER.search(name) for name in names):
    found.append(Source(Kind.IMAGE_FOLDERS, path))
  return found


def _name_of(source: Source) -> str:
  return source.member or source.path.name


@contextmanager
def _open_binary(source: Source) -> Iterator[IO[bytes]]:
  if source.member is None:
    with open(source.path, "rb") as f:
      yield f
  elif zipfile.is_zipfile(source.path):
    with zipfile.ZipFile(source.path) as archive, archive.open(source.member) as f:
      yield f
  else:
    with tarfile.open(source.path, mode="r:*") as archive:
      member = archive.extractfile(source.member)
      if member is None:
        raise Fer2013InputError(f"{source.name}: not a regular file in the archive.")
      with member:
        yield member
