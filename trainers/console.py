"""What a command prints: a quiet console by default, everything with absl's --verbosity.

Why: a user needs to see which data is used (real or synthetic, and where), the
progress, and a summary with the next commands; TensorFlow's start-up lines,
TFDS's INFO logs and progress bars and library warnings bury those. So every
command started through `trainers.cli.run`, unless --verbosity (or -v) is
given:
  - hides TensorFlow's native start-up lines: those written before absl's C++
    logging is set up ignore TF_CPP_MIN_LOG_LEVEL, so stderr (fd 2) is captured
    while TensorFlow is imported and replayed if the import fails; later native
    logs below FATAL are dropped (TF_CPP_MIN_LOG_LEVEL=3);
  - keeps Python logging (absl, tensorflow, TFDS) at ERROR, hides TFDS's
    progress bars and Python warnings;
  - prints `say()` lines plainly on stdout.
With --verbosity=0 (INFO) or higher nothing is hidden, and `say()` lines are INFO
(or WARNING) log records like the rest. In-process callers (tests, notebooks)
get the verbose behaviour: `say()` logs.
"""

from __future__ import annotations

import logging as py_logging
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence

from absl import logging

VERBOSITY_FLAGS = ("--verbosity", "-verbosity", "-v", "--v")
_quiet = False


def verbosity_requested(argv: Sequence[str]) -> bool:
  """Whether the command line sets absl's --verbosity (or -v)."""
  return any(arg == name or arg.startswith(name + "=")
             for arg in argv[1:] for name in VERBOSITY_FLAGS)


def is_quiet() -> bool:
  return _quiet


def start(argv: Sequence[str]) -> None:
  """Before anything imports TensorFlow: the quiet console, unless --verbosity is given."""
  global _quiet
  if verbosity_requested(argv) or "tensorflow" in sys.modules:
    return
  _quiet = True
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  _import_tensorflow_capturing_stderr()


def _import_tensorflow_capturing_stderr() -> None:
  """`import tensorflow` with fd 2 captured: its native start-up lines are replayed only if
  the import fails."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # noqa: F401
    except BaseException:
      os.dup2(saved, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode(errors="replace"))
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def quiet_libraries() -> None:
  """After the flags are parsed (absl has set its own level by then): the quiet levels."""
  if not _quiet:
    return
  logging.set_verbosity(logging.ERROR)
  for name in ("tensorflow", "tensorflow_datasets", "keras_tuner", "h5py"):
    py_logging.getLogger(name).setLevel(py_logging.ERROR)
  warnings.filterwarnings("ignore")
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()


def say(message: str, *, warning: bool = False) -> None:
  """A line for the user: printed on a quiet console, else logged (INFO, or WARNING)."""
  if _quiet:
    print(f"WARNING: {message}" if warning else message, flush=True)
  elif warning:
    logging.warning("%s", message)
  else:
    logging.info("%s", message)
