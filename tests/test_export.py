"""`python -m tools.export` and `python -m tools.evaluate` end to end on tiny FER2013-shaped data.

An untrained improved_cnn is exported as a SavedModel and as float16 and
full-integer int8 TFLite models (int8 calibrated on the tiny train split), each
reloaded through trainers.inference and compared with the .keras model on the
same validation images; the int8 model is evaluated by the command.
"""

import json
import subprocess
import sys
from pathlib import Path

import fer_helpers as helpers
import keras
import numpy as np
import pytest

from trainers import data, inference, models

ROOT = Path(__file__).resolve().parents[1]
ROWS = (56, 14, 14)  # train, validation, test


def run_tool(module, *args):
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny fer2013 and an untrained improved_cnn saved as .keras."""
  root = tmp_path_factory.mktemp("export")
  helpers.build_fake_fer2013(root, ROWS, seed=5)
  keras.utils.set_random_seed(0)
  model = root / "improved_cnn.keras"
  models.build_model("improved_cnn").save(model)
  data_flags = ["--dataset=fer2013", f"--data_dir={root / 'tfds'}"]
  return {"root": root, "model": model, "data_dir": str(root / "tfds"), "data_flags": data_flags}


def validation_images(setup, size=48, channels=1):
  batches = data.make_dataset("validation", dataset="fer2013", data_dir=setup["data_dir"],
                              batch_size=64, training=False, image_size=size, channels=channels)
  return np.concatenate([images.numpy() for images, _ in batches])


def reference(setup):
  return inference.load_model(setup["model"]).predict(validation_images(setup))


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
  assert quantized.shape == expected.shape == (ROWS[1], 7)
  np.testing.assert_allclose(quantized, expected, atol=0.02)

  report = setup["root"] / "reports" / "int8_validation.json"
  result = run_tool("tools.evaluate", f"--model={out}", f"--out={report}", "--batch_size=8",
                    *setup["data_flags"])
  assert result.returncode == 0, result.stderr[-3000:]
  written = json.loads(report.read_text())
  assert written["split"] == "validation" and written["num_examples"] == ROWS[1]
  assert written["format"] == "tflite" and written["model_bytes"] == out.stat().st_size
  assert np.array(written["confusion_matrix"]).shape == (7, 7)
  assert written["images_per_second"] > 0
  assert 0.0 <= written["accuracy"] <= 1.0
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
  np.testing.assert_allclose(inference.load_model(half).predict(images), expected, atol=1e-2)
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
