"""Command-line conventions shared by every entry point (trainers, tuning, tools).

Why one module: every command behaves the same way to its user. `--help`
prints the flags and exits 0; a bad flag or bad input is one `error: ...` line
on stderr and exit code 2, never a traceback; TensorFlow is imported only after
the flags are known good. Flags are defined by each command's `define_flags()`,
called from its `main()` (never at import), so that any module can be imported
next to any other without absl's duplicate-flag errors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from trainers import console

EXIT_USAGE = 2  # bad flags or bad input
EXIT_FAILED = 1  # the command ran and failed (a sweep stopped by failing trials, ...)
HELP_FLAGS = ("--help", "-help", "--helpshort", "-helpshort", "-?", "-h")


class UsageError(Exception):
  """Bad input from the user: printed as one `error: ...` line, exit code 2."""


def one_line(error: BaseException | str) -> str:
  """The message on one line (TensorFlow's errors span many)."""
  text = " ".join(str(error).split())
  return text or (type(error).__name__ if isinstance(error, BaseException) else "")


def first_line(error: BaseException | str) -> str:
  """The first non-empty line of the message (a traceback's or TensorFlow's error's headline)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if lines:
    return lines[0]
  return type(error).__name__ if isinstance(error, BaseException) else ""


def print_error(message: BaseException | str) -> None:
  """`error: message` on stderr, on one line."""
  print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


def fail(message: BaseException | str) -> None:
  """Prints `error: message` on stderr and exits 2."""
  print_error(message)
  sys.exit(EXIT_USAGE)


def define_once(define: Callable[[], None], name: str) -> None:
  """Calls `define()` unless flag `name` (one of its flags) is already defined.

  Lets `main()` (or a test) run twice in one process, and lets a command that
  reuses another's flags (tuning.main takes the trainer's) define them once.
  """
  if name not in flags.FLAGS:
    define()


# --dataset and --data_dir: every command that reads the data takes them, defined here once.
DATASET_DEFAULT = "auto"
DATASET_HELP = ("TFDS dataset: fer2013, fer2013_synthetic (drawn faces, not FER2013), or auto: "
                "fer2013 when it is prepared in --data_dir, else fer2013_synthetic (logged).")
DATA_DIR_HELP = "TFDS data dir (default: ~/tensorflow_datasets)."


def define_dataset_flags(purpose: str = "") -> None:
  """--dataset and --data_dir; `purpose` prefixes the help ("int8 calibration data: ")."""
  flags.DEFINE_string("dataset", DATASET_DEFAULT, purpose + DATASET_HELP)
  flags.DEFINE_string("data_dir", None, DATA_DIR_HELP)


PROJECT_PACKAGES = ("trainers", "tuning", "tools", "fer_tfds")


def print_help() -> None:
  """The command's docstring, then every flag the project defined (wherever it was defined).

  absl's short help lists only the main module's key flags; ours are defined
  from functions in shared modules (trainers/config.py, ...), so they are
  gathered by the module that defined them.
  """
  main = sys.modules.get("__main__")
  print((main.__doc__ or "").strip() if main else "", end="\n\n")
  for module, defined in sorted(flags.FLAGS.flags_by_module_dict().items()):
    name = module if module.startswith(PROJECT_PACKAGES) else None
    if name is None and main is not None and module == getattr(main, "__file__", None):
      name = module
    if name is None or not defined:
      continue
    print(flags.FLAGS.module_help(module))


def parse_flags(argv: Sequence[str], positional: bool = False) -> list[str]:
  """Parses argv into absl's FLAGS; help exits 0, a bad flag exits 2 with one line.

  `positional`: whether arguments other than flags are allowed (predict's images).
  """
  if any(arg in HELP_FLAGS for arg in argv[1:]):
    print_help()
    sys.exit(0)
  try:
    rest = flags.FLAGS(list(argv))
  except flags.Error as e:
    fail(str(e))
  if not positional and len(rest) > 1:
    fail(f"unexpected arguments: {' '.join(rest[1:])} (flags are --name=value)")
  return rest


def run(main: Callable[[list[str]], int | None], positional: bool = False) -> None:
  """`app.run(main)` (absl logging, exit code) where a UsageError from `main` exits 2, on the
  quiet console (trainers/console.py) unless --verbosity is given."""

  def guarded(argv: list[str]) -> int | None:
    console.quiet_libraries()
    try:
      return main(argv)
    except UsageError as e:
      fail(str(e))
    return EXIT_USAGE  # not reached: fail exits

  if not any(arg in HELP_FLAGS for arg in sys.argv[1:]):
    console.start(sys.argv)  # the quiet console unless --verbosity; before TensorFlow loads
  app.run(guarded, flags_parser=lambda argv: parse_flags(argv, positional))


def run_in_process(argv: Sequence[str], main: Callable[[list[str]], int | None],
                   positional: bool = False) -> int:
  """`main` on `argv` without exiting the process (tests, notebooks): the exit code.

  Flags must be defined already; they are reset first, so values of an earlier
  call do not leak into this one.
  """
  flags.FLAGS.unparse_flags()
  try:
    rest = parse_flags(argv, positional)
    return int(main(rest) or 0)
  except UsageError as e:
    print_error(e)
    return EXIT_USAGE
  except SystemExit as e:
    return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
