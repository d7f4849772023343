r"""Exports a trained model as a SavedModel or a TFLite model, optionally quantized.

  python -m tools.export --model=runs/fer_net/model.keras --format=saved_model
  python -m tools.export --model=runs/fer_net/model.keras --format=tflite --quantize=int8

TFLite models are converted from a SavedModel (a `.keras` model is exported to
a temporary one first): with Keras 3 that is the converter's robust path.
`--quantize`:
  none     float32 weights and activations (the reference)
  float16  float16 weights (half the size), float32 compute on CPUs
  int8     full-integer: int8 weights, activations, input and output, calibrated on
           `--calibration_examples` images of the `train` split (trainers.data.make_dataset,
           training=False, so preprocessed exactly as in training). trainers.inference
           quantizes the [0, 1] input with the input tensor's scale (1/255) and zero point.
Measure what quantization costs with `python -m tools.evaluate --model=OUT`.

`--out` defaults to a name beside the model (`model_saved_model/`,
`model.tflite`, `model_int8.tflite`, ...); an existing output is kept unless
`--overwrite` is given. The output appears only when complete.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # before anything loads TensorFlow (trainers/console.py)
  from trainers import console

  console.start(sys.argv)

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from absl import flags, logging

from trainers import cli, tta

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "float16", "int8")
CALIBRATION_BATCH = 50

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string("model", None, "The model to export: a .keras file, or for "
                      "--format=tflite also a SavedModel directory.")
  flags.DEFINE_enum("format", "tflite", FORMATS, "Output format.")
  flags.DEFINE_enum("quantize", "none", QUANTIZATIONS, "TFLite quantization.")
  flags.DEFINE_string("out", None, "Output path (default: beside the model).")
  flags.DEFINE_bool("overwrite", False, "Replace an existing output.")
  tta.define_flag(
      "Build test-time augmentation into the exported model (trainers/tta.py): "
      "its output is then the mean over the views. Needs a .keras --model.")
  cli.define_dataset_flags("int8 calibration data. ")
  flags.DEFINE_integer("calibration_examples", 1000, "int8: train images that calibrate the "
                       "activation ranges.", lower_bound=1)


def default_out(model: Path, form: str, quantize: str) -> Path:
  """Beside the model: NAME_saved_model/, NAME.tflite, NAME_float16.tflite, NAME_int8.tflite."""
  stem = model.name if model.is_dir() else model.stem
  if form == "saved_model":
    return model.parent / f"{stem}_saved_model"
  return model.parent / (f"{stem}.tflite" if quantize == "none" else f"{stem}_{quantize}.tflite")


def representative_images(dataset: str, data_dir: str | None, image_size: int, channels: int,
                          count: int) -> Iterator[list[Any]]:
  """The converter's calibration input: the first `count` train images, preprocessed."""
  from trainers import data

  batches = data.make_dataset("train", dataset=dataset, data_dir=data_dir,
                              batch_size=CALIBRATION_BATCH, training=False,
                              image_size=image_size, channels=channels, cache=False)
  left = count
  for images, _ in batches:
    if left <= 0:
      return
    yield [images[:left]]
    left -= int(images.shape[0])


def convert_tflite(saved_model: str, quantize: str, calibration: Any = None) -> bytes:
  """TFLite flatbuffer of a SavedModel; `calibration` (int8) yields [images] batches."""
  import tensorflow as tf

  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
  if quantize == "float16":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == "int8":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
  return converter.convert()


def export(model_path: str, form: str, quantize: str, out: Path, dataset: str | None,
           data_dir: str | None, calibration_examples: int, tta: str = "none") -> Path:
  """Writes `model_path` as `form` to `out` (complete or not at all); returns `out`.

  `dataset` is only read for int8 (resolved by the caller). `tta` builds the
  test-time augmentation views into the model (a .keras model only).
  """
  from trainers import inference
  from trainers import tta as tta_lib

  kind = inference.model_format(model_path)
  if kind == "tflite":
    raise cli.UsageError(f"--model={model_path} is already a TFLite model; export from the "
                         ".keras model or its SavedModel")
  if form == "saved_model" and kind != "keras":
    raise cli.UsageError(f"--model={model_path} is already a SavedModel; --format=saved_model "
                         "exports a .keras model")
  if form == "saved_model" and quantize != "none":
    raise cli.UsageError("--quantize applies to --format=tflite only")
  if tta != "none" and kind != "keras":
    raise cli.UsageError(f"--tta={tta} builds the views into a Keras model: pass the .keras "
                         "model, not an exported one")
  keras_model = _load_keras(model_path) if kind == "keras" else None
  if keras_model is not None:
    keras_model = tta_lib.wrap(keras_model, tta)
  if keras_model is not None:
    size, channels = inference.input_geometry(keras_model.inputs[0].shape, model_path)
  else:
    classifier = inference.load_model(model_path)
    size, channels = classifier.image_size, classifier.channels

  out.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as work:
    if form == "saved_model":
      staged = os.path.join(work, out.name)
      keras_model.export(staged, verbose=False)
    else:
      saved_model = model_path
      if keras_model is not None:
        saved_model = os.path.join(work, "saved_model")
        keras_model.export(saved_model, verbose=False)
      calibration = None
      if quantize == "int8":
        logging.info("Calibrating int8 on %d train images of %s.", calibration_examples,
                     dataset)
        calibration = functools.partial(representative_images, dataset, data_dir, size,
                                        channels, calibration_examples)
      staged = os.path.join(work, out.name)
      Path(staged).write_bytes(convert_tflite(saved_model, quantize, calibration))
    inference.load_model(staged)  # the output serves: one image input, 7 probabilities
    if out.is_dir():
      shutil.rmtree(out)
    elif out.exists():
      out.unlink()
    os.replace(staged, out)
  return out


def _load_keras(path: str) -> Any:
  import keras

  from trainers import inference

  try:
    model = keras.saving.load_model(path, compile=False)
  except Exception as e:  # noqa: BLE001  (any unreadable file is an input error)
    raise inference.ModelError(f"{path}: cannot load it as a keras model: "
                               f"{cli.one_line(e)}") from None
  if len(model.inputs) != 1:
    raise inference.ModelError(f"{path}: the model has {len(model.inputs)} inputs, expected "
                               "one image input")
  return model


def main(argv: list[str]) -> int:
  del argv
  if not FLAGS.model:
    raise cli.UsageError("--model is required: a .keras file (or a SavedModel directory for "
                         "--format=tflite)")
  model = Path(FLAGS.model)
  if FLAGS.format == "saved_model" and FLAGS.quantize != "none":
    raise cli.UsageError("--quantize applies to --format=tflite only")
  out = Path(FLAGS.out) if FLAGS.out else default_out(model, FLAGS.format, FLAGS.quantize)
  if out.exists() and not FLAGS.overwrite:
    raise cli.UsageError(f"{out} exists; pass --overwrite to replace it, or --out=PATH")
  from trainers import data, inference  # TensorFlow starts here

  dataset = None
  if FLAGS.format == "tflite" and FLAGS.quantize == "int8":
    try:
      dataset = data.prepared_dataset(FLAGS.dataset, FLAGS.data_dir)
    except ValueError as e:
      raise cli.UsageError(str(e)) from None
  try:
    written = export(str(model), FLAGS.format, FLAGS.quantize, out, dataset, FLAGS.data_dir,
                     FLAGS.calibration_examples, FLAGS.tta)
  except inference.ModelError as e:
    raise cli.UsageError(f"--model={e}") from None
  print(f"wrote {written} ({inference.model_bytes(written):,} bytes)")
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
