"""Test-time augmentation: a model's probabilities averaged over cheap views of each face.

Why: a face and its mirror image show the same emotion, and so does a face moved
by a pixel or two, but a model trained on a few epochs does not score them
identically; averaging the views' probabilities smooths that out for the cost of
one forward pass per view (the CIFAR-10 speedruns use flip, and flip plus
shifts). The views (`VIEWS`):

  none        the image itself (1 pass)
  flip        the image and its mirror image (2 passes)
  flip_shift  both, each also shifted SHIFT pixels left and right (6 passes;
              reflected borders, as the training augmentation fills them)

`predict` applies them to any loaded model (trainers.inference: .keras,
SavedModel, .tflite); `wrap` builds them into a Keras model (tools.export
--tta), so that a user of the exported file gets them without fer-tf code.
docs/models.md has their PublicTest accuracy per pass and the command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

VIEWS: dict[str, tuple[tuple[bool, int], ...]] = {  # (mirrored, horizontal shift) per view
    "none": ((False, 0),),
    "flip": ((False, 0), (True, 0)),
    "flip_shift": tuple((flip, shift) for flip in (False, True) for shift in (0, -2, 2)),
}
SHIFT = 2
HELP = ("Test-time augmentation (trainers/tta.py): the mean over the face and its mirror image "
        "(flip, 2 passes), also shifted 2 pixels left and right (flip_shift, 6 passes), or none.")


def define_flag(help_text: str = HELP) -> None:
  """--tta, for the commands that score or export a model (defined once, here)."""
  from absl import flags

  flags.DEFINE_enum("tta", "none", list(VIEWS), help_text)


def _view_numpy(images: np.ndarray, flip: bool, shift: int) -> np.ndarray:
  """One view of a (B, H, W, C) batch: mirrored, then moved `shift` pixels along the width
  (positive: right), the uncovered border reflected."""
  if flip:
    images = images[:, :, ::-1, :]
  if shift:
    padded = np.pad(images, ((0, 0), (0, 0), (abs(shift), abs(shift)), (0, 0)), mode="reflect")
    start = abs(shift) - shift
    images = padded[:, :, start:start + images.shape[2], :]
  return np.ascontiguousarray(images)


def predict(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
            tta: str) -> np.ndarray:
  """The mean of `run` (images -> probabilities) over the views of `tta`."""
  views = VIEWS[tta]
  total = None
  for flip, shift in views:
    probabilities = np.asarray(run(_view_numpy(images, flip, shift)), np.float64)
    total = probabilities if total is None else total + probabilities
  return (total / len(views)).astype(np.float32)


def wrap(model: Any, tta: str) -> Any:
  """A Keras model that returns `model`'s probabilities averaged over the views of `tta`
  (built from Keras ops only, so it saves and exports like any model)."""
  import keras

  if tta == "none":
    return model
  inputs = keras.Input(model.inputs[0].shape[1:], name="image")
  outputs = []
  for flip, shift in VIEWS[tta]:
    x = keras.ops.flip(inputs, axis=2) if flip else inputs
    if shift:
      x = keras.ops.pad(x, ((0, 0), (0, 0), (abs(shift), abs(shift)), (0, 0)), mode="reflect")
      start = abs(shift) - shift
      x = x[:, :, start:start + model.inputs[0].shape[2], :]
    outputs.append(model(x))
  averaged = keras.layers.Average(name="tta_mean")(outputs)
  return keras.Model(inputs, averaged, name=f"{model.name}_tta_{tta}")
