"""Recipes: named sets of settings, selected with `--config=NAME` (big_vision's configs).

A recipe is a module here whose docstring says its command, the machine, the
time and the measured result (or "not yet measured"), and whose `get_config()`
returns the settings it changes from the defaults, by flag name:
trainers/config.py's fields for `python -m trainers.main` (and "model_hparams": the
model's own, e.g. {"base_filters": 32} for fer_net), plus tuning's sweep
flags for a sweep recipe (`python -m tuning.main --config=NAME`). Flags given on
the command line win over the recipe: `--config=recipe_fer_net --epochs=5`.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def names() -> list[str]:
  """The recipes, by module name."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> dict[str, Any]:
  """The settings of recipe `name`; ValueError naming the recipes for an unknown one."""
  if name not in names():
    raise ValueError(f"unknown recipe {name!r}; recipes: {', '.join(names())} "
                     "(trainers/configs/)")
  module = importlib.import_module(f"{__name__}.{name}")
  return dict(module.get_config())
