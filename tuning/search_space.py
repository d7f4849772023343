"""The search space of a sweep, declared in one place: bounds, parsing, checks, KerasTuner names.

Why one module: the flags, the JSON file (`--space=FILE`), the KerasTuner
declaration, the results table and `best_hparams.json` must agree on every
name and range, and bad bounds must fail with one clear line before any
process, pipeline or model starts.

What is searched (the model's own hyperparameters must exist in
trainers.models; improved_cnn and vgg_style have them):

  filters         one Choice per conv block: filters_1 .. filters_N
  dropout         Float in [min, max], or a Choice of the points of a step grid
  dense_units     Choice
  learning_rate   Float in [min, max], log scale
  augment_strength  optional Choice (not searched unless given)

Batch norm is not searched: improved_cnn has no batch-norm switch (vgg_style
always has it), so there is no builder argument to feed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

FILTERS = "filters"
DROPOUT = "dropout"
DENSE_UNITS = "dense_units"
LEARNING_RATE = "learning_rate"
AUGMENT_STRENGTH = "augment_strength"
KEYS = (FILTERS, DROPOUT, DENSE_UNITS, LEARNING_RATE, AUGMENT_STRENGTH)
MODEL_KEYS = (FILTERS, DROPOUT, DENSE_UNITS)  # arguments of the model builder
# Settings trainers.main takes from an --hparams file besides the model's own.
TRAINING_KEYS = (LEARNING_RATE, AUGMENT_STRENGTH)
DEFAULT_BLOCKS = 4


class SpaceError(ValueError):
  """Invalid bounds: the message says which, where, and what is allowed."""


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """Bounds of every searched hyperparameter (sorted, checked; see `parse`)."""

  filters: tuple[tuple[int, ...], ...]  # the choices of each conv block
  dropout: tuple[float, float, float | None]  # min, max, step (None: continuous)
  dense_units: tuple[int, ...]
  learning_rate: tuple[float, float]  # min, max; sampled on a log scale
  augment_strength: tuple[float, ...] = ()  # empty: not searched

  @property
  def blocks(self) -> int:
    return len(self.filters)

  def names(self) -> list[str]:
    """KerasTuner names of the searched hyperparameters, in table order."""
    names = [filters_name(i) for i in range(1, self.blocks + 1)]
    names += [DROPOUT, DENSE_UNITS, LEARNING_RATE]
    return names + ([AUGMENT_STRENGTH] if self.augment_strength else [])

  def to_json(self) -> dict[str, Any]:
    """The JSON form `parse` reads back (also recorded in sweep_config.json)."""
    low, high, step = self.dropout
    record: dict[str, Any] = {
        FILTERS: [list(c) for c in self.filters],
        DROPOUT: [low, high] + ([step] if step is not None else []),
        DENSE_UNITS: list(self.dense_units),
        LEARNING_RATE: list(self.learning_rate),
    }
    if self.augment_strength:
      record[AUGMENT_STRENGTH] = list(self.augment_strength)
    return record


# Ranges around the notebook's improved_cnn (32-64-64-128 filters, dropout 0.5, dense
# 128, Adam 1e-3), which each includes, so the untuned model is a point of the space. The
# learning rate spans 10x centred (log scale) on Adam's 1e-3: with 1e-4 to 3e-3, the first
# four draws (1.4e-4 to 3.0e-4) all trained too slowly to separate in a 1-epoch sweep
# (27.5-31.7% on the holdout against 38-44% at 1e-3; docs/models.md).
DEFAULT_SPACE = SearchSpace(
    filters=((16, 32, 64), (32, 64, 128), (32, 64, 128), (64, 128, 256)),
    dropout=(0.2, 0.6, 0.1),
    dense_units=(64, 128, 256),
    learning_rate=(3e-4, 3e-3),
)

FLAG_HELP = {
    FILTERS: "Filter choices per conv block: '/' separates a block's choices, ',' the blocks; "
             "one group applies to every block. E.g. 16/32/64 or 16/32,32/64,64/128,64/128/256.",
    DROPOUT: "Dropout range: MIN,MAX[,STEP] (continuous without STEP), or one fixed value.",
    DENSE_UNITS: "Dense width choices, e.g. 64,128,256.",
    LEARNING_RATE: "Learning-rate range MIN,MAX, sampled on a log scale, or one fixed value.",
    AUGMENT_STRENGTH: "Augmentation-strength choices, e.g. 0,0.5,1 (empty: not searched; "
                      "trials use --augment_strength).",
}


def filters_name(block: int) -> str:
  return f"{FILTERS}_{block}"


# --- parsing and checks --------------------------------------------------------------------


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _numbers(value: Any, where: str, integer: bool = False) -> list[Any]:
  """A JSON value or flag string as a list of numbers (a scalar is a one-item list)."""
  if isinstance(value, str):
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
      value = [int(v) if integer else float(v) for v in items]
    except ValueError:
      kind = "integers" if integer else "numbers"
      raise SpaceError(f"{where}: {value!r} is not a comma-separated list of {kind}") from None
  elif _is_number(value):
    value = [value]
  elif not isinstance(value, Sequence) or not all(_is_number(v) for v in value):
    raise SpaceError(f"{where}: expected a number or a list of numbers, got {value!r}")
  value = list(value)
  if integer and not all(isinstance(v, numbers.Integral) or float(v).is_integer()
                         for v in value):
    raise SpaceError(f"{where}: expected integers, got {value!r}")
  if not all(math.isfinite(v) for v in value):
    raise SpaceError(f"{where}: values must be finite, got {value!r}")
  return [int(v) for v in value] if integer else [float(v) for v in value]


def _choices(values: list[Any], where: str, minimum: float, kind: str) -> tuple[Any, ...]:
  if not values:
    raise SpaceError(f"{where}: needs at least one value")
  bad = [v for v in values if v < minimum]
  if bad:
    raise SpaceError(f"{where}: {bad[0]!r} is not {kind}")
  if len(set(values)) != len(values):
    raise SpaceError(f"{where}: {values!r} repeats a value")
  return tuple(sorted(values))


def _parse_filters(value: Any, where: str, blocks: int) -> tuple[tuple[int, ...], ...]:
  example = "e.g. 16/32/64 (every block) or 16/32,32/64,64/128,64/128/256"
  if isinstance(value, str):
    groups: list[Any] = [g.replace("/", ",") for g in value.split(",")]
  elif isinstance(value, Sequence) and value and all(_is_number(v) for v in value):
    groups = [list(value)]  # a flat JSON list: the same choices for every block
  elif isinstance(value, Sequence) and value:
    groups = list(value)
  else:
    raise SpaceError(f"{where}: expected one list of choices or {blocks} lists, got {value!r}")
  if len(groups) == 1:
    groups = groups * blocks
  if len(groups) != blocks:
    raise SpaceError(f"{where}: the model has {blocks} conv blocks; give 1 or {blocks} groups "
                     f"of choices, not {len(groups)} ('/' separates a block's choices; "
                     f"{example})")
  return tuple(_choices(_numbers(g, f"{where} block {i}", integer=True),
                        f"{where} block {i}", 1, "an integer >= 1")
               for i, g in enumerate(groups, 1))


def _parse_dropout(value: Any, where: str) -> tuple[float, float, float | None]:
  values = _numbers(value, where)
  if not 1 <= len(values) <= 3:
    raise SpaceError(f"{where}: expected MIN,MAX[,STEP] or one value, got {value!r}")
  low, high = values[0], values[1] if len(values) > 1 else values[0]
  step = values[2] if len(values) == 3 else None
  if not 0 <= low <= high < 1:
    raise SpaceError(f"{where}: need 0 <= MIN <= MAX < 1, got MIN={low:g}, MAX={high:g}")
  if step is not None and (step <= 0 or (high > low and step > high - low)):
    raise SpaceError(f"{where}: STEP must be > 0 and <= MAX - MIN ({high - low:g}), "
                     f"got {step:g}")
  return low, high, step


def _parse_learning_rate(value: Any, where: str) -> tuple[float, float]:
  values = _numbers(value, where)
  if len(values) not in (1, 2):
    raise SpaceError(f"{where}: expected MIN,MAX or one value, got {value!r}")
  low, high = values[0], values[-1]
  if not 0 < low <= high:
    raise SpaceError(f"{where}: need 0 < MIN <= MAX, got MIN={low:g}, MAX={high:g}")
  return low, high


def _parse(key: str, value: Any, where: str, blocks: int) -> Any:
  if key == FILTERS:
    return _parse_filters(value, where, blocks)
  if key == DROPOUT:
    return _parse_dropout(value, where)
  if key == DENSE_UNITS:
    return _choices(_numbers(value, where, integer=True), where, 1, "an integer >= 1")
  if key == LEARNING_RATE:
    return _parse_learning_rate(value, where)
  if isinstance(value, str) and not value.strip():
    return ()
  if isinstance(value, Sequence) and not isinstance(value, str) and not value:
    return ()
  return _choices(_numbers(value, where), where, 0, "a number >= 0")


def read_file(path: str) -> dict[str, Any]:
  """The JSON object of a --space file; a SpaceError names the file for any problem."""
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except FileNotFoundError:
    raise SpaceError(f"--space file not found: {path}") from None
  except (OSError, UnicodeDecodeError) as e:
    raise SpaceError(f"--space {path}: cannot read it: {e}") from None
  except json.JSONDecodeError as e:
    raise SpaceError(f"--space {path} is not valid JSON: {e}") from None
  if not isinstance(raw, dict):
    raise SpaceError(f"--space {path} must hold a JSON object, not {type(raw).__name__}")
  unknown = sorted(set(raw) - set(KEYS))
  if unknown:
    raise SpaceError(f"--space {path}: unknown key(s) {', '.join(unknown)} (known: "
                     f"{', '.join(KEYS)})")
  return raw


def build(file_values: Mapping[str, Any] | None = None, file_name: str = "",
          flag_values: Mapping[str, str] | None = None,
          blocks: int = DEFAULT_BLOCKS) -> SearchSpace:
  """DEFAULT_SPACE, then the --space file's values, then the flags given (they win)."""
  fields = DEFAULT_SPACE.to_json() if blocks == DEFAULT_BLOCKS else {
      **DEFAULT_SPACE.to_json(), FILTERS: sorted({f for c in DEFAULT_SPACE.filters for f in c})}
  parsed: dict[str, Any] = {k: _parse(k, v, "default space", blocks) for k, v in fields.items()}
  parsed.setdefault(AUGMENT_STRENGTH, ())
  for key, value in (file_values or {}).items():
    parsed[key] = _parse(key, value, f"--space {file_name}: {key}", blocks)
  for key, value in (flag_values or {}).items():
    parsed[key] = _parse(key, value, f"--space_{key}", blocks)
  return SearchSpace(**parsed)


# --- KerasTuner ----------------------------------------------------------------------------


def declare(space: SearchSpace, hp: Any, defaults: Mapping[str, Any]) -> None:
  """Declares `space` on KerasTuner HyperParameters `hp`.

  `defaults` are the model's defaults (trainers.models.default_hparams): each
  dimension defaults to them when they lie inside it, so the first Bayesian
  point and a sweep's defaults are the untuned model.
  """
  default_filters = list(defaults.get(FILTERS) or [])
  for block, choices in enumerate(space.filters, 1):
    wanted = default_filters[block - 1] if block <= len(default_filters) else None
    _choice(hp, filters_name(block), choices, wanted)
  low, high, step = space.dropout
  wanted = defaults.get(DROPOUT)
  if low == high:
    hp.Fixed(DROPOUT, low)
  elif step is None:
    inside = _is_number(wanted) and low <= wanted <= high
    hp.Float(DROPOUT, low, high, default=wanted if inside else low)
  else:
    # The grid as a Choice: KerasTuner's stepped Float computes its size with float floor
    # division ((0.6 - 0.2) // 0.1 == 3.0), so it would never sample MAX.
    grid = dropout_grid(low, high, step)
    _choice(hp, DROPOUT, grid, round(wanted, 6) if _is_number(wanted) else None)
  _choice(hp, DENSE_UNITS, space.dense_units, defaults.get(DENSE_UNITS))
  low, high = space.learning_rate
  if low == high:
    hp.Fixed(LEARNING_RATE, low)
  else:
    hp.Float(LEARNING_RATE, low, high, sampling="log", default=min(max(1e-3, low), high))
  if space.augment_strength:
    _choice(hp, AUGMENT_STRENGTH, space.augment_strength, 1.0)


def dropout_grid(low: float, high: float, step: float) -> tuple[float, ...]:
  """MIN, MIN + STEP, ... up to MAX (included when on the grid), rounded to 6 decimals."""
  count = int(math.floor((high - low) / step + 1e-9)) + 1
  return tuple(round(low + i * step, 6) for i in range(count))


def _choice(hp: Any, name: str, choices: Sequence[Any], wanted: Any) -> None:
  if len(choices) == 1:
    hp.Fixed(name, choices[0])
  else:
    hp.Choice(name, list(choices), default=wanted if wanted in choices else choices[0])


def split_values(space: SearchSpace, values: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(model hparams, training settings) of a trial's KerasTuner values.

  The model hparams are the builder's arguments (filters as one list), the
  training settings go to TrainConfig (learning_rate, augment_strength).
  Rounded: values that crossed gRPC as float32, or a float step grid, print
  as 0.3, not 0.30000001.
  """
  model = {
      FILTERS: [int(values[filters_name(b)]) for b in range(1, space.blocks + 1)],
      DROPOUT: round(float(values[DROPOUT]), 6),
      DENSE_UNITS: int(values[DENSE_UNITS]),
  }
  training = {LEARNING_RATE: float(f"{float(values[LEARNING_RATE]):.6g}")}
  if space.augment_strength and AUGMENT_STRENGTH in values:
    training[AUGMENT_STRENGTH] = round(float(values[AUGMENT_STRENGTH]), 6)
  return model, training
