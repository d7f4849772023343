"""Trains a facial-emotion model on FER2013 (or, without it, on the synthetic faces).

  python -m trainers.main --model=fer_net --epochs=20 --model_dir=runs/fer_net

Rerunning the same command resumes an interrupted run. Bad input (flags, the
--hparams file, a missing dataset, the model_dir) is one `error: ...` line on
stderr and exit code 2. Flags are defined in trainers/flags.py.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any

from absl import app
from absl import flags as absl_flags

from trainers import flags

absl_flags.adopt_module_key_flags(flags)

HELP_FLAGS = ("--help", "-help", "--helpshort", "-helpshort", "-?", "-h")
EXIT_USAGE = 2


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Parses argv into flags.FLAGS; help exits 0, a bad flag exits 2 with one line."""
  if any(arg in HELP_FLAGS for arg in argv[1:]):
    app.usage(shorthelp=True, writeto_stdout=True)
    sys.exit(0)
  try:
    rest = flags.FLAGS(list(argv))
  except absl_flags.Error as e:
    _fail(str(e))
  if len(rest) > 1:
    _fail(f"unexpected arguments: {' '.join(rest[1:])} (flags are --name=value)")
  return rest


def train_from_flags(callbacks: Sequence[Any] = ()) -> int:
  """Runs training with the parsed flags; returns the exit code (2 for bad input)."""
  try:
    config = flags.config_from_flags()
    from trainers import train  # TensorFlow starts here, after the flags are known good

    train.run(config, callbacks)
  except flags.UsageError as e:
    _fail(str(e), exit_process=False)
    return EXIT_USAGE
  return 0


def run(argv: Sequence[str], callbacks: Sequence[Any] = ()) -> int:
  """In-process entry point (tests, notebooks): parse `argv`, train, return the exit code."""
  flags.FLAGS.unparse_flags()
  try:
    parse_flags(argv)
  except SystemExit as e:
    return int(e.code or 0)
  return train_from_flags(callbacks)


def main(callbacks: Sequence[Any] = ()) -> None:
  """The command line: absl sets up logging; `callbacks` are extra Keras callbacks."""
  app.run(functools.partial(_app_main, callbacks=callbacks), flags_parser=parse_flags)


def _app_main(argv: Sequence[str], callbacks: Sequence[Any]) -> int:
  del argv  # parse_flags has rejected positional arguments
  return train_from_flags(callbacks)


def _fail(message: str, exit_process: bool = True) -> None:
  print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
  if exit_process:
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":
  main()
