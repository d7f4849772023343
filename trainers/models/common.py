"""What every model family shares: argument checks, weights files, the output head.

Why one module: the builders must reject bad hyperparameters with the same
one-line ``ValueError``, load a weights file the same strict way, and end in the
same float32 softmax, whichever family they build.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
from keras import layers

from trainers.cli import first_line

NUM_CLASSES = 7
CNN_IMAGE_SIZE = 48

# Keras's default (0.99) needs ~1,000 steps before the moving statistics that
# inference uses catch up; short runs (a quick start, a tuning trial of a few
# epochs at batch 64) then evaluate near chance while training accuracy is 64%.
BN_MOMENTUM = 0.9

WeightsArg = str | os.PathLike[str] | None


# --- argument checks: one-line ValueErrors that say what is allowed ---------------------------


def check_int(name: str, value: Any, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def check_rate(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
    raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
  return float(value)


def check_bool(name: str, value: Any) -> bool:
  if not isinstance(value, bool):
    raise ValueError(f"{name} must be true or false, got {value!r}")
  return value


def check_filters(name: str, value: Any, count: int) -> tuple[int, ...]:
  """A list (JSON) or tuple of `count` positive ints, one per conv block."""
  if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != count:
    raise ValueError(f"{name} must be a list of {count} integers >= 1, got {value!r}")
  try:
    return tuple(check_int(name, v) for v in value)
  except ValueError:
    raise ValueError(f"{name} must be a list of {count} integers >= 1, got {value!r}") from None


# --- weights ---------------------------------------------------------------------------------


def weights_source(weights: WeightsArg, model_name: str, imagenet: bool) -> str | Path | None:
  """Classifies `weights`: None (random init), "imagenet", or an existing file path."""
  if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
    return None
  if isinstance(weights, str) and weights.lower() == "imagenet":
    if not imagenet:
      from trainers.models import MODELS  # the registry imports this module, so not at the top

      raise ValueError(
          f"{model_name} has no imagenet weights; use 'none' or a weights file "
          f"(imagenet: {', '.join(n for n, s in MODELS.items() if s.channels == 3)})"
      )
    return "imagenet"
  if not isinstance(weights, str | os.PathLike):
    raise ValueError(f"weights must be 'none', 'imagenet' or a file path, got {weights!r}")
  path = Path(weights)
  if not path.is_file():
    raise ValueError(f"weights file {path} does not exist")
  if not (path.name.endswith(".weights.h5") or path.suffix == ".keras"):
    raise ValueError(f"weights file {path} must be a .weights.h5 or .keras file")
  return path


def _shape_difference(found: list[tuple[int, ...]], expected: list[tuple[int, ...]]) -> str:
  if len(found) != len(expected):
    return f"{len(found)} variables saved, {len(expected)} expected"
  index = next(i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b)
  return f"a saved variable has shape {found[index]} where {expected[index]} is expected"


def _load_weights_file(model: keras.Model, path: Path) -> None:
  """Loads full-model weights saved from the same architecture, or fails with a ValueError.

  Keras matches saved variables to layers by position and only complains when a
  shape differs, so the variable shapes are compared first: a file from another
  model (or other hyperparameters) fails loudly instead of half-loading.
  """
  expected = [tuple(w.shape) for w in model.weights]
  mismatch = f"weights file {path} does not match model {model.name} with these hyperparameters"
  if path.suffix == ".keras":
    try:
      saved = keras.saving.load_model(path, compile=False)
    except Exception as error:  # any unreadable file is an input error, not a crash
      raise ValueError(f"cannot read {path} as a .keras model: {first_line(error)}") from error
    found = [tuple(w.shape) for w in saved.weights]
    if found != expected:
      raise ValueError(f"{mismatch} ({_shape_difference(found, expected)})")
    model.set_weights(saved.get_weights())
    return
  import h5py  # a Keras dependency; only needed here

  found: list[tuple[int, ...]] = []

  def collect(_: str, item: Any) -> None:
    if isinstance(item, h5py.Dataset):
      found.append(tuple(item.shape))

  try:
    with h5py.File(path, "r") as file:
      file.visititems(collect)
  except OSError as error:
    raise ValueError(f"cannot read {path} as a .weights.h5 file: {first_line(error)}") from error
  if sorted(found) != sorted(expected):  # the file orders variables by layer path, not by model
    raise ValueError(f"{mismatch} ({_shape_difference(sorted(found), sorted(expected))})")
  try:
    model.load_weights(path)
  except Exception as error:  # a mismatch, reported with Keras' reason
    raise ValueError(f"{mismatch}: {first_line(error)}") from error


def with_weights(model: keras.Model, source: str | Path | None) -> keras.Model:
  """`model` with the weights file `source` loaded; random init and imagenet need nothing here."""
  if isinstance(source, Path):
    _load_weights_file(model, source)
  return model


# --- shared layers ---------------------------------------------------------------------------


def classifier(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
  """The shared output: float32 softmax, so mixed precision keeps a float32 loss."""
  return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def conv_bn_relu(x: keras.KerasTensor, width: int, name: str) -> keras.KerasTensor:
  x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv")(x)
  x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
  return layers.Activation("relu", name=f"{name}_relu")(x)
