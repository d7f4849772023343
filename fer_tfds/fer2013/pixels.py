"""Parsing of FER2013 pixel strings into images, strictly.

The CSV releases store each 48x48 face as 2304 space-separated integers. The
notebook way (``[int(p) for p in row.split()]``, one Python call per pixel)
costs 11-25 s for the full file here (tools/bench/build.py). Here each row is
parsed by numpy's C tokenizer in one call (about 2 s for the file), and every
malformed row is reported with what is wrong instead of being coerced.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


@dataclass(frozen=True)
class RowProblem:
  """One unusable row: its index in the parsed sequence and what is wrong."""

  row: int
  reason: str


def parse_pixel_string(text: str) -> np.ndarray:
  """Parses one row into a ``(48, 48, 1)`` uint8 image.

  Raises:
    ValueError: with a one-line description of the first problem found.
  """
  with warnings.catch_warnings():
    # numpy warns (rather than fails) when it stops at an unparsable token.
    warnings.simplefilter("error", DeprecationWarning)
    try:
      values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (DeprecationWarning, ValueError):
      raise ValueError(_describe_bad_token(text)) from None
  if values.size != NUM_PIXELS:
    raise ValueError(f"has {values.size} pixel values, expected {NUM_PIXELS}")
  if values.min() < 0 or values.max() > 255:
    position = int(np.flatnonzero((values < 0) | (values > 255))[0])
    token = text.split()[position]
    raise ValueError(f"pixel {position} has value {token[:20]}, outside 0..255")
  return values.astype(np.uint8).reshape(IMAGE_SHAPE)


def parse_pixel_rows(rows: Sequence[str]) -> tuple[np.ndarray, list[RowProblem]]:
  """Parses pixel strings into a ``(len(rows), 48, 48, 1)`` uint8 array.

  Returns:
    The images, and the rows that could not be parsed. Their images are left
    zero: the caller decides whether to fail or to skip (and record) them.
  """
  images = np.zeros((len(rows), *IMAGE_SHAPE), dtype=np.uint8)
  problems = []
  for index, text in enumerate(rows):
    try:
      images[index] = parse_pixel_string(text)
    except ValueError as error:
      problems.append(RowProblem(index, str(error)))
  return images, problems


def _describe_bad_token(text: str) -> str:
  for position, token in enumerate(text.split()):
    if not token.isdigit():
      return f"pixel {position} is {token[:20]!r}, not a non-negative integer"
  return "contains characters other than digits and spaces"
