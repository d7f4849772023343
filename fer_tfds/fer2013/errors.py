"""Errors for bad FER2013 input, shown to command-line users without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

# How many problems an error message lists before summarising the rest.
MAX_LISTED_PROBLEMS = 5


class Fer2013InputError(ValueError):
  """The manual-download input cannot be turned into the dataset.

  The message says which file (and row or member) is wrong and how to fix it.
  """


@dataclass(frozen=True)
class Problem:
  """One unusable example: where it is (file:line or archive member) and why."""

  location: str
  reason: str

  def __str__(self) -> str:
    return f"{self.location}: {self.reason}"


def problems_error(problems: Sequence[Problem], skip_hint: str) -> Fer2013InputError:
  """Builds the strict-mode error: the first problems, then a count of the rest."""
  listed = "\n".join(f"  {p}" for p in problems[:MAX_LISTED_PROBLEMS])
  more = len(problems) - MAX_LISTED_PROBLEMS
  tail = f"\n  ... and {more} more rows have problems" if more > 0 else ""
  return Fer2013InputError(
      f"{len(problems)} bad row(s) in the input, so nothing was built:\n"
      f"{listed}{tail}\n{skip_hint}"
  )


def install_excepthook() -> None:
  """Prints `Fer2013InputError`s as one clean message when uncaught.

  `tfds build` would otherwise bury the fix behind a long traceback. Other
  exceptions keep the previous hook. Idempotent.
  """
  previous = sys.excepthook
  if getattr(previous, "_fer2013", False):
    return

  def hook(
      exc_type: type[BaseException],
      exc: BaseException,
      tb: TracebackType | None,
  ) -> None:
    if isinstance(exc, Fer2013InputError):
      print(f"\nERROR (fer2013): {exc}", file=sys.stderr)
    else:
      previous(exc_type, exc, tb)

  hook._fer2013 = True  # type: ignore[attr-defined]
  sys.excepthook = hook
