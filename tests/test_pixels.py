"""Unit tests of fer_tfds/fer2013/pixels.py: strict parsing of FER2013 pixel strings."""

import numpy as np
import pytest

from fer_tfds.fer2013 import fake_data
from fer_tfds.fer2013.pixels import (
  IMAGE_SHAPE,
  NUM_PIXELS,
  parse_pixel_rows,
  parse_pixel_string,
)


@pytest.fixture(scope="module")
def images():
  return fake_data.fake_images(3, seed=7)


def _tokens(image):
  return fake_data.pixel_string(image).split()


def test_round_trip_exact(images):
  """A drawn image survives string encoding and parsing bit for bit, as (48, 48, 1) uint8."""
  parsed = parse_pixel_string(fake_data.pixel_string(images[0]))
  assert parsed.shape == IMAGE_SHAPE == (48, 48, 1)
  assert parsed.dtype == np.uint8
  np.testing.assert_array_equal(parsed[..., 0], images[0])


def test_full_range_and_row_major_order():
  """0 and 255 are valid, and values fill the image row by row (pixel i -> [i // 48, i % 48])."""
  values = np.arange(NUM_PIXELS) % 256
  parsed = parse_pixel_string(" ".join(map(str, values)))
  np.testing.assert_array_equal(parsed.reshape(-1), values)
  assert parsed[0, 1, 0] == 1 and parsed[1, 0, 0] == 48 % 256
  assert parsed.min() == 0 and parsed.max() == 255


@pytest.mark.parametrize("spacing", ["  ", "\t", " \n "])
def test_whitespace_variants(images, spacing):
  """Leading/trailing/multiple whitespace between values is tolerated."""
  text = " " + spacing.join(_tokens(images[1])) + " \n"
  np.testing.assert_array_equal(parse_pixel_string(text)[..., 0], images[1])


@pytest.mark.parametrize("count", [0, 1, NUM_PIXELS - 1, NUM_PIXELS + 1, 2 * NUM_PIXELS])
def test_wrong_pixel_count(images, count):
  """Too few or too many values is an error that says how many there are."""
  tokens = (_tokens(images[0]) * 2)[:count]
  with pytest.raises(ValueError, match=rf"\b{count} pixel values\b.*\b{NUM_PIXELS}\b"):
    parse_pixel_string(" ".join(tokens))


@pytest.mark.parametrize("token", ["1.5", "abc", "1e3", "0x10", "12a", "nan"])
def test_non_integer_pixel(images, token):
  """A non-integer value is refused (not truncated or coerced), naming its position and text."""
  tokens = _tokens(images[0])
  tokens[100] = token
  with pytest.raises(ValueError, match=rf"pixel 100\b.*'{token}'.*integer"):
    parse_pixel_string(" ".join(tokens))


@pytest.mark.parametrize("position", [0, 1000, NUM_PIXELS - 1])
@pytest.mark.parametrize("value", ["256", "-1", "1000", "-255"])
def test_out_of_range_pixel(images, position, value):
  """Values outside 0..255 are refused (no uint8 wrap-around), naming position and value."""
  tokens = _tokens(images[0])
  tokens[position] = value
  with pytest.raises(ValueError, match=rf"pixel {position}\b.*[^\d]{value}\b.*0\.\.255"):
    parse_pixel_string(" ".join(tokens))


def test_first_bad_value_is_reported(images):
  """With several bad values the first one is named."""
  tokens = _tokens(images[0])
  tokens[5], tokens[9] = "300", "400"
  with pytest.raises(ValueError, match=r"pixel 5 has value 300"):
    parse_pixel_string(" ".join(tokens))


def test_comma_separated_is_refused(images):
  """A comma-separated pixel string is an error, not a one-value image."""
  with pytest.raises(ValueError):
    parse_pixel_string(",".join(_tokens(images[0])))


def test_error_message_is_short_for_long_garbage(images):
  """A huge bad token is cut in the message so it stays one readable line."""
  tokens = _tokens(images[0])
  tokens[3] = "x" * 5000
  with pytest.raises(ValueError) as info:
    parse_pixel_string(" ".join(tokens))
  assert len(str(info.value)) < 200
  assert "\n" not in str(info.value)


def test_parse_rows_all_good(images):
  """Good rows come back stacked in input order, with no problems."""
  parsed, problems = parse_pixel_rows([fake_data.pixel_string(i) for i in images])
  assert problems == []
  assert parsed.shape == (3, *IMAGE_SHAPE) and parsed.dtype == np.uint8
  np.testing.assert_array_equal(parsed[..., 0], images)


def test_parse_rows_reports_each_bad_row(images):
  """Each bad row is reported by index and reason; its image is left zero, others parsed."""
  good = [fake_data.pixel_string(i) for i in images]
  rows = [good[0], "1 2 3", good[1], good[2].replace(" ", " abc ", 1), good[2]]
  parsed, problems = parse_pixel_rows(rows)
  assert [p.row for p in problems] == [1, 3]
  assert "has 3 pixel values" in problems[0].reason
  assert "'abc'" in problems[1].reason
  assert parsed.shape == (5, *IMAGE_SHAPE)
  np.testing.assert_array_equal(parsed[0, ..., 0], images[0])
  np.testing.assert_array_equal(parsed[2, ..., 0], images[1])
  np.testing.assert_array_equal(parsed[4, ..., 0], images[2])
  assert not parsed[1].any() and not parsed[3].any()


def test_parse_rows_empty():
  """No rows gives an empty (0, 48, 48, 1) array."""
  parsed, problems = parse_pixel_rows([])
  assert parsed.shape == (0, *IMAGE_SHAPE) and problems == []
