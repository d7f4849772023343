"""Atomic writes and tolerant JSON reads: the project's one pair of file helpers.

Why atomic: runs and sweeps are killed (SIGKILL, preemption) and resumed, and
their JSON records decide what a rerun may do; a reader must never see half a
file, so every write goes to `<path>.tmp` and is renamed into place.
"""

from __future__ import annotations

import json
import os
from typing import Any


def write_text(path: str | os.PathLike[str], text: str) -> None:
  """Writes `text` to `path` atomically."""
  tmp = f"{os.fspath(path)}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
  """Writes `data` as indented JSON, atomically (values JSON cannot hold are str()-ed)."""
  write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: str | os.PathLike[str], default: Any = None) -> Any:
  """The JSON in `path`, or `default` when it is missing or unreadable."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return default
