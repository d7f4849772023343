"""Command-line plumbing shared by tools.predict, export, evaluate and inspect_dataset.

Why not trainers.main's helpers: importing trainers.main (or trainers.train)
defines the trainer's absl flags (--model, --dataset, ...) on the global
FLAGS, which these tools define too. Same conventions, though: a bad flag or
bad input is one `error: ...` line on stderr and exit code 2, no traceback;
TensorFlow is imported only after the flags are known good.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from absl import app, flags

EXIT_USAGE = 2
HELP_FLAGS = ("--help", "-help", "--helpshort", "-helpshort", "-?", "-h")


class UsageError(Exception):
  """Bad input from the user: printed as one `error: ...` line, exit code 2."""


def one_line(error: BaseException | str) -> str:
  """The message on one line (TensorFlow's errors span many)."""
  return " ".join(str(error).split()) or type(error).__name__


def fail(message: str) -> None:
  """Prints `error: message` on stderr and exits 2."""
  print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USAGE)


def flags_parser(positional: bool) -> Callable[[Sequence[str]], list[str]]:
  """absl `flags_parser`: --help exits 0, a bad flag exits 2 with one line.

  `positional`: whether arguments other than flags are allowed (predict's images).
  """

  def parse(argv: Sequence[str]) -> list[str]:
    if any(arg in HELP_FLAGS for arg in argv[1:]):
      app.usage(shorthelp=True, writeto_stdout=True)
      sys.exit(0)
    try:
      rest = flags.FLAGS(list(argv))
    except flags.Error as e:
      fail(str(e))
    if not positional and len(rest) > 1:
      fail(f"unexpected arguments: {' '.join(rest[1:])} (flags are --name=value)")
    return rest

  return parse


def run(main: Callable[[list[str]], int], positional: bool = False) -> None:
  """`app.run(main)` where a UsageError raised by `main` is one line and exit 2."""

  def guarded(argv: list[str]) -> int:
    try:
      return main(argv)
    except UsageError as e:
      fail(str(e))
    return EXIT_USAGE  # not reached: fail exits

  app.run(guarded, flags_parser=flags_parser(positional))


def resolve_dataset(name: str, data_dir: str | None) -> str:
  """trainers.data.prepared_dataset, with its error as a UsageError (one line, exit 2)."""
  from trainers import data

  try:
    return data.prepared_dataset(name, data_dir)
  except ValueError as e:
    raise UsageError(str(e)) from None
