"""One way to run a trained model, whatever its format: `.keras`, SavedModel or `.tflite`.

Why one loader: tools.predict and tools.evaluate must feed every format the
same input (trainers.data.preprocess_images at the model's own input size) and
read the same 7 probabilities back, so an accuracy difference between formats
is the format's, not the harness's. The input size and channels come from the
model itself: the registry's models take (48, 48, 1) or (96, 96, 3).

int8 `.tflite` models (tools.export --quantize=int8) have int8 input and
output tensors; `predict` quantizes the float [0, 1] images with the input
tensor's scale and zero point (1/255 and -128: exact for 8-bit pixels) and
dequantizes the output, so callers always pass and get floats.

Why in trainers/: loading an exported model is the counterpart of training's
export; the tools (predict, evaluate, export) and the tests all load through it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from fer_tfds.features import EMOTIONS
from trainers import data
from trainers import tta as tta_lib
from trainers.cli import first_line

CLASS_NAMES = EMOTIONS
FORMATS = ("keras", "saved_model", "tflite")


class ModelError(ValueError):
  """A model file that cannot be used: unreadable, or not a 7-class face classifier."""


@dataclasses.dataclass
class Classifier:
  """A loaded model: float32 (B, size, size, channels) in [0, 1] -> (B, 7) probabilities."""

  path: str
  format: str  # one of FORMATS
  image_size: int
  channels: int
  run: Callable[[np.ndarray], np.ndarray]
  tta: str = "none"  # test-time augmentation views (trainers/tta.py)

  def predict(self, images: np.ndarray) -> np.ndarray:
    """Probabilities (B, 7) float32 of model-ready images (see `prepare`), averaged over the
    views of `tta`."""
    if len(images) == 0:
      return np.zeros((0, len(CLASS_NAMES)), np.float32)
    return tta_lib.predict(self.run, np.asarray(images, np.float32), self.tta)

  def prepare(self, faces: np.ndarray | tf.Tensor) -> np.ndarray:
    """uint8 (B, H, W, 1) faces -> this model's input, by the training preprocessing."""
    return data.preprocess_images(faces, self.image_size, self.channels).numpy()


def model_bytes(path: str | os.PathLike[str]) -> int:
  """Size on disk: the file, or every file of a SavedModel directory."""
  path = Path(path)
  if path.is_dir():
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
  return path.stat().st_size


def model_format(path: str | os.PathLike[str]) -> str:
  """'keras', 'saved_model' or 'tflite' from the path; ModelError for anything else."""
  path = Path(path)
  if path.is_dir():
    if (path / "saved_model.pb").is_file():
      return "saved_model"
    raise ModelError(f"{path}: a directory without saved_model.pb is not a SavedModel; pass a "
                     ".keras file, a SavedModel directory or a .tflite file")
  if not path.exists():
    raise ModelError(f"{path}: no such file")
  if path.suffix == ".keras":
    return "keras"
  if path.suffix == ".tflite":
    return "tflite"
  raise ModelError(f"{path}: unknown model format; pass a .keras file, a SavedModel "
                   "directory (with saved_model.pb) or a .tflite file")


def input_geometry(shape: Sequence[Any], path: str) -> tuple[int, int]:
  """(image_size, channels) of a model input shape (batch, H, W, C); ModelError unless
  H == W and C is 1 or 3, the shapes trainers.data.preprocess_images makes."""
  dims = tuple(None if d is None or int(d) < 0 else int(d) for d in shape)
  if len(dims) != 4 or dims[1] is None or dims[1] != dims[2] or dims[3] not in (1, 3):
    raise ModelError(
        f"{path}: the model's input shape is {_shape_text(dims)}, expected a square image "
        "(batch, N, N, 1) or (batch, N, N, 3) as trainers.models builds (e.g. 48x48x1, "
        "96x96x3); this is not a fer-tf emotion model")
  return dims[1], dims[3]


def _check_classes(classes: Any, path: str) -> None:
  if classes is None or int(classes) != len(CLASS_NAMES):
    raise ModelError(f"{path}: the model outputs {classes} values per image, expected "
                     f"{len(CLASS_NAMES)} emotion probabilities ({', '.join(CLASS_NAMES)})")


def _shape_text(dims: Sequence[int | None]) -> str:
  return "(" + ", ".join("None" if d is None else str(d) for d in dims) + ")"


def load_model(path: str | os.PathLike[str], threads: int | None = None,
               tta: str = "none") -> Classifier:
  """Loads `path` (.keras, SavedModel directory or .tflite); ModelError if it cannot serve.

  `threads`: TFLite interpreter threads (default: every CPU core this process may use).
  `tta`: the test-time augmentation of `predict` (trainers/tta.py VIEWS).
  """
  path = str(path)
  kind = model_format(path)
  if tta not in tta_lib.VIEWS:
    raise ValueError(f"unknown tta {tta!r}, expected one of {', '.join(tta_lib.VIEWS)}")
  try:
    if kind == "keras":
      classifier = _load_keras(path)
    elif kind == "saved_model":
      classifier = _load_saved_model(path)
    else:
      classifier = _load_tflite(path, threads)
    return dataclasses.replace(classifier, tta=tta)
  except ModelError:
    raise
  except Exception as e:  # noqa: BLE001  (each format raises its own types for a bad file)
    raise ModelError(f"{path}: cannot load it as a {kind} model: {first_line(e)}") from None


def _load_keras(path: str) -> Classifier:
  import keras

  model = keras.saving.load_model(path, compile=False)
  if len(model.inputs) != 1 or len(model.outputs) != 1:
    raise ModelError(f"{path}: the model has {len(model.inputs)} inputs and "
                     f"{len(model.outputs)} outputs, expected one image input and one output")
  size, channels = input_geometry(model.inputs[0].shape, path)
  _check_classes(model.outputs[0].shape[-1], path)
  call = tf.function(lambda images: tf.cast(model(images, training=False), tf.float32),
                     reduce_retracing=True)
  return Classifier(path, "keras", size, channels, lambda images: call(images).numpy())


def _load_saved_model(path: str) -> Classifier:
  """The `serving_default` signature (Keras 3 `model.export` also names it `serve`)."""
  loaded = tf.saved_model.load(path)
  signature = loaded.signatures.get("serving_default")
  if signature is None:
    raise ModelError(f"{path}: the SavedModel has no serving_default signature; export it "
                     "with keras' model.export or python -m tools.export --format=saved_model")
  _, inputs = signature.structured_input_signature
  outputs = signature.structured_outputs
  if len(inputs) != 1 or len(outputs) != 1:
    raise ModelError(f"{path}: serving_default takes {len(inputs)} inputs and gives "
                     f"{len(outputs)} outputs, expected one image input and one output")
  (name, spec), (output_name, output_spec) = next(iter(inputs.items())), next(
      iter(outputs.items()))
  size, channels = input_geometry(spec.shape, path)
  _check_classes(output_spec.shape[-1], path)

  def run(images: np.ndarray) -> np.ndarray:
    # `loaded` must stay alive while the signature is used.
    return signature(**{name: tf.constant(images, spec.dtype)})[output_name].numpy()

  run.loaded = loaded  # type: ignore[attr-defined]
  return Classifier(path, "saved_model", size, channels, run)


def tflite_interpreter(path: str, threads: int | None = None) -> Any:
  """LiteRT's interpreter when ai_edge_litert is installed, else TensorFlow's own.

  tf.lite.Interpreter still works in TF 2.21 but warns on every construction
  that it moved to ai_edge_litert; that warning is silenced here (said once in
  docs/using_models.md) so it does not bury the tool's output.
  """
  threads = threads or len(os.sched_getaffinity(0))
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    Interpreter = tf.lite.Interpreter  # noqa: N806
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")
    return Interpreter(model_path=path, num_threads=threads)


def _load_tflite(path: str, threads: int | None) -> Classifier:
  interpreter = tflite_interpreter(path, threads)
  inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
  if len(inputs) != 1 or len(outputs) != 1:
    raise ModelError(f"{path}: the model has {len(inputs)} inputs and {len(outputs)} "
                     "outputs, expected one image input and one output")
  source, target = inputs[0], outputs[0]
  size, channels = input_geometry(source["shape_signature"], path)
  _check_classes(target["shape"][-1], path)
  in_scale, in_zero = source["quantization"]
  out_scale, out_zero = target["quantization"]
  in_type, out_type = np.dtype(source["dtype"]), np.dtype(target["dtype"])
  batch = [None]

  def run(images: np.ndarray) -> np.ndarray:
    if batch[0] != len(images):  # dynamic batch: resize only when the batch size changes
      interpreter.resize_tensor_input(source["index"], [len(images), size, size, channels])
      interpreter.allocate_tensors()
      batch[0] = len(images)
    if in_type.kind in "iu":  # full-integer model: quantize the [0, 1] floats
      info = np.iinfo(in_type)
      images = np.clip(np.round(images / in_scale + in_zero), info.min, info.max)
    interpreter.set_tensor(source["index"], images.astype(in_type))
    interpreter.invoke()
    result = interpreter.get_tensor(target["index"])
    if out_type.kind in "iu":
      result = (result.astype(np.float32) - out_zero) * out_scale
    return result

  return Classifier(path, "tflite", size, channels, run)
