"""`python -m tools.export` and `python -m tools.evaluate` end to end on tiny FER2013-shaped data.

An improved_cnn trained on learnable drawn faces (fer_helpers.bar_rows, far
above chance) is exported as a SavedModel and as float16 and full-integer
int8 TFLite models (int8 calibrated on the tiny train split), each reloaded
through trainers.inference and compared with the .keras model on the same
validation images: same accuracy within a stated margin, same predicted
classes, confident (far from uniform) outputs. An untrained model would not do:
its outputs are all within 0.003 of 1/7, so a converter returning a constant
would pass. The int8 model is also evaluated by the command.
"""

import json
import subprocess
import sys
from pathlib import Path

import fer_helpers as helpers
import keras
import numpy as np
import pytest

from fer_tfds.fer2013 import fake_data
from trainers import data, inference, models

ROOT = Path(__file__).resolve().parents[1]
ROWS = {"Training": 320, "PublicTest": 70, "PrivateTest": 14}
# Quantized vs float32 on the validation images: accuracy within this many points, and the
# same predicted class for at least this share of images.
ACCURACY_MARGIN = 0.05
AGREEMENT = 0.95


def run_tool(module, *args):
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny learnable fer2013 and an improved_cnn trained on it, saved as .keras."""
  root = tmp_path_factory.mktemp("export")
  fake_data.write_csv(root / "manual" / "fer2013.csv", helpers.bar_rows(ROWS, seed=5))
  helpers.build(root / "manual", root / "tfds")
  data_dir = str(root / "tfds")
  keras.utils.set_random_seed(0)
  net = models.build_model("improved_cnn")
  net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
  train = data.make_dataset("train", dataset="fer2013", data_dir=data_dir, batch_size=32,
                            training=True, augment_strength=0.0)
  net.fit(train, epochs=6, verbose=0)
  model = root / "improved_cnn.keras"
  net.save(model)
  data_flags = ["--dataset=fer2013", f"--data_dir={data_dir}"]
  setup = {"root": root, "model": model, "data_dir": data_dir, "data_flags": data_flags}
  accuracy = (reference(setup).argmax(-1) == validation_labels(setup)).mean()
  assert accuracy >= 0.9, f"the float32 model must be far above chance (40%), got {accuracy}"
  return setup


def validation_images(setup, size=48, channels=1):
  batches = data.make_dataset("validation", dataset="fer2013", data_dir=setup["data_dir"],
                              batch_size=64, training=False, image_size=size, channels=channels)
  return np.concatenate([images.numpy() for images, _ in batches])


def validation_labels(setup):
  batches = data.make_dataset("validation", dataset="fer2013", data_dir=setup["data_dir"],
                              batch_size=64, training=False)
  return np.concatenate([labels.numpy() for _, labels in batches])


def reference(setup):
  return inference.load_model(setup["model"]).predict(validation_images(setup))


def assert_serves_like(outputs, expected, labels):
  """`outputs` (a converted model's probabilities) agree with the float32 `expected`: accuracy
  within ACCURACY_MARGIN, the same class for AGREEMENT of the images, confident outputs."""
  assert outputs.shape == expected.shape
  accuracy = (outputs.argmax(-1) == labels).mean()
  reference_accuracy = (expected.argmax(-1) == labels).mean()
  assert accuracy >= reference_accuracy - ACCURACY_MARGIN, (accuracy, reference_accuracy)
  assert (outputs.argmax(-1) == expected.argmax(-1)).mean() >= AGREEMENT
  # Far from uniform (1/7 = 0.14): as confident as the float32 model, give or take.
  assert outputs.max(-1).mean() >= 0.8 * expected.max(-1).mean() >= 0.5
  return accuracy


def test_int8_tflite_export_and_evaluate(setup):
  out = setup["root"] / "int8.tflite"
  result = run_tool("tools.export", f"--model={setup['model']}", "--format=tflite",
                    "--quantize=int8", "--calibration_examples=32", f"--out={out}",
                    *setup["data_flags"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"wrote {out}" in result.stdout
  assert not [p for p in out.parent.iterdir() if p.name.startswith(".int8")]  # no leftovers

  classifier = inference.load_model(out)
  assert (classifier.format, classifier.image_size, classifier.channels) == ("tflite", 48, 1)
  expected = reference(setup)
  quantized = classifier.predict(validation_images(setup))
  assert quantized.shape == (ROWS["PublicTest"], 7)
  accuracy = assert_serves_like(quantized, expected, validation_labels(setup))

  report = setup["root"] / "reports" / "int8_validation.json"
  result = run_tool("tools.evaluate", f"--model={out}", f"--out={report}", "--batch_size=8",
                    *setup["data_flags"])
  assert result.returncode == 0, result.stderr[-3000:]
  written = json.loads(report.read_text())
  assert written["split"] == "validation" and written["num_examples"] == ROWS["PublicTest"]
  assert written["format"] == "tflite" and written["model_bytes"] == out.stat().st_size
  assert np.array(written["confusion_matrix"]).shape == (7, 7)
  assert written["images_per_second"] > 0
  assert written["accuracy"] == pytest.approx(accuracy)
  assert f"accuracy {written['accuracy']:.4f}" in result.stdout


def test_saved_model_and_float16_serve_the_same(setup):
  result = run_tool("tools.export", f"--model={setup['model']}", "--format=saved_model")
  assert result.returncode == 0, result.stderr[-3000:]
  saved = setup["root"] / "improved_cnn_saved_model"  # the default: beside the model
  assert (saved / "saved_model.pb").is_file()
  result = run_tool("tools.export", f"--model={saved}", "--quantize=float16")
  assert result.returncode == 0, result.stderr[-3000:]
  half = setup["root"] / "improved_cnn_saved_model_float16.tflite"

  expected = reference(setup)
  images = validation_images(setup)
  np.testing.assert_allclose(inference.load_model(saved).predict(images), expected, atol=1e-5)
  assert_serves_like(inference.load_model(half).predict(images), expected,
                     validation_labels(setup))
  assert inference.model_bytes(half) < 0.6 * inference.model_bytes(setup["model"])


def test_bad_export_requests_are_one_error_line(setup):
  tflite = setup["root"] / "some.tflite"
  tflite.write_bytes(b"x")
  existing = setup["root"] / "existing.tflite"
  existing.write_bytes(b"x")
  cases = [
      (["--format=saved_model", "--quantize=int8", f"--model={setup['model']}"],
       "--quantize applies to --format=tflite only"),
      ([f"--model={setup['model']}", f"--out={existing}"], "pass --overwrite"),
      ([f"--model={tflite}", f"--out={setup['root'] / 'x.tflite'}"], "already a TFLite model"),
      (["--quantize=int4", f"--model={setup['model']}"], "quantize"),
  ]
  for args, message in cases:
    result = run_tool("tools.export", *args)
    assert result.returncode == 2, (args, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert message in line, line
  assert existing.read_bytes() == b"x"
