"""Shared fixtures: quiet TensorFlow, drawn inputs, and builds shared within a module."""

import os

# Before TensorFlow is imported anywhere: keep C++ log noise out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import logging  # noqa: E402

import fer_helpers as helpers  # noqa: E402
import pytest  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

import fer_tfds  # noqa: E402, F401  (registers fer2013 with TFDS)


@pytest.fixture(scope="session")
def rows():
  """The default drawn rows: 14 Training, 7 PublicTest, 7 PrivateTest; labels cycle 0..6."""
  return helpers.default_rows()


@pytest.fixture
def absl_info(caplog):
  """caplog that also sees absl INFO records (absl's own level is WARNING by default)."""
  previous = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  caplog.set_level(logging.INFO)
  yield caplog
  absl_logging.set_verbosity(previous)
