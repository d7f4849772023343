"""`python -m tools.predict` end to end: a real portrait, a faceless image, bad files and models.

The portrait is scikit-image's `astronaut()` (Eileen Collins, NASA, public
domain), which the package ships; the Haar cascade is OpenCV's own. The models
are untrained: what is tested is the path from photo to probabilities, and
that it applies exactly the training preprocessing (trainers.data).
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import skimage.data

from tools import predict
from trainers import data, inference, models

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def run_tool(*args):
  return subprocess.run([sys.executable, "-m", "tools.predict", *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error: ")]


def dense_model(shape):
  """A tiny model whose probabilities move with every pixel (an untrained CNN's are ~1/7)."""
  inputs = keras.Input(shape)
  outputs = keras.layers.Dense(
      7, activation="softmax",
      kernel_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=0))(
          keras.layers.Flatten()(inputs))
  return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """The portrait, a flat gray image, a text file, and models saved as .keras."""
  root = tmp_path_factory.mktemp("predict")
  portrait = root / "astronaut.png"
  cv2.imwrite(str(portrait), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
  gray = root / "gray.png"
  cv2.imwrite(str(gray), np.full((240, 320, 3), 128, np.uint8))
  text = root / "notes.txt"
  text.write_text("not an image\n")
  folder = root / "folder"
  (folder / "sub").mkdir(parents=True)
  (folder / "sub" / "portrait.jpg").write_bytes(
      cv2.imencode(".jpg", cv2.imread(str(portrait)))[1].tobytes())
  (folder / "README.txt").write_text("skipped: not an image suffix\n")
  keras.utils.set_random_seed(0)
  cnn = root / "improved_cnn.keras"
  models.build_model("improved_cnn").save(cnn)
  rgb = root / "rgb96.keras"
  dense_model((96, 96, 3)).save(rgb)
  wrong = root / "wide.keras"
  dense_model((48, 64, 1)).save(wrong)
  return {"root": root, "portrait": portrait, "gray": gray, "text": text, "folder": folder,
          "cnn": cnn, "rgb": rgb, "wrong": wrong}


# --- the face finder on the real portrait -----------------------------------------------------


def test_haar_cascade_finds_the_astronauts_face():
  image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
  boxes = predict.detect_faces(predict.to_gray(image))
  assert len(boxes) == 1
  box = boxes[0]
  height, width = image.shape[:2]
  # Her face: upper half, a little left of centre, about a fifth of the image wide.
  assert box.y + box.height < height / 2
  assert 0.3 * width < box.x + box.width / 2 < 0.6 * width
  assert 0.1 * width < box.width < 0.3 * width


def test_no_face_in_a_flat_image():
  assert predict.detect_faces(np.full((240, 320), 128, np.uint8)) == []


def test_crop_grows_the_box_and_pads_at_the_border():
  gray = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100).astype(np.uint8)
  inside = predict.crop_faces(gray, [predict.Box(40, 40, 20, 20)], margin=0.0)
  expected = cv2.resize(gray[40:60, 40:60], (48, 48), interpolation=cv2.INTER_AREA)
  np.testing.assert_array_equal(inside[0, :, :, 0], expected)
  corner = predict.crop_faces(gray, [predict.Box(0, 0, 30, 30)], margin=0.5)
  assert corner.shape == (1, 48, 48, 1) and corner.dtype == np.uint8


def test_read_image_says_why(tmp_path):
  (tmp_path / "empty.png").write_bytes(b"")
  (tmp_path / "fake.jpg").write_text("hello")
  for name, reason in (("empty.png", "empty"), ("fake.jpg", "not an image"),
                       ("missing.png", "cannot read")):
    with pytest.raises(predict.ImageError, match=reason):
      predict.read_image(tmp_path / name)


# --- the command --------------------------------------------------------------------------------


def test_portrait_faceless_and_non_image_files(files):
  """One run: the portrait gets its face and probabilities, the others an error each."""
  out = files["root"] / "annotated"
  result = run_tool(files["portrait"], files["gray"], files["text"], files["root"] / "nope.png",
                    f"--model={files['rgb']}", "--json", f"--annotate={out}")
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  records = [json.loads(line) for line in result.stdout.splitlines()]
  assert [Path(r["file"]).name for r in records] == ["astronaut.png", "gray.png", "notes.txt",
                                                     "nope.png"]
  portrait, gray, text, missing = records
  assert len(portrait["faces"]) == 1
  face = portrait["faces"][0]
  assert set(face["box"]) == {"x", "y", "width", "height"}
  assert list(face["probabilities"]) == list(CLASSES)
  probabilities = np.array(list(face["probabilities"].values()))
  assert probabilities.sum() == pytest.approx(1.0, abs=1e-3)
  assert face["emotion"] == CLASSES[int(probabilities.argmax())]
  assert "no face" in gray["error"]
  assert "not an image" in text["error"]
  assert "no such file" in missing["error"]
  errors = error_lines(result.stderr)
  assert len(errors) == 3
  for line, name in zip(errors, ("gray.png", "notes.txt", "nope.png"), strict=True):
    assert name in line

  # Exactly the training preprocessing: the same face through trainers.data in-process.
  image = predict.read_image(files["portrait"])
  gray_image = predict.to_gray(image)
  crop = predict.crop_faces(gray_image, predict.detect_faces(gray_image))
  model = keras.saving.load_model(files["rgb"])
  expected = np.asarray(model(data.preprocess_images(crop, 96, 3)))[0]
  np.testing.assert_allclose(probabilities, expected, atol=1e-4)
  assert expected.max() > 0.3  # the check means something: far from uniform

  annotated = cv2.imread(str(out / "astronaut.png"))
  assert annotated is not None and annotated.shape == image.shape
  assert not np.array_equal(annotated, image)
  assert sorted(p.name for p in out.iterdir()) == ["astronaut.png"]


def test_folder_streams_its_images(files):
  result = run_tool(files["folder"], f"--model={files['cnn']}", "--batch_size=1")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[0].endswith("portrait.jpg: 1 face")
  assert lines[1].startswith("  face 1 at x=")
  assert all(name in lines[1] for name in CLASSES)
  assert len(lines) == 2  # README.txt is not an image file: skipped


def test_model_with_the_wrong_input_is_one_error_line(files):
  result = run_tool(files["portrait"], f"--model={files['wrong']}")
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  (line,) = error_lines(result.stderr)
  assert str(files["wrong"]) in line and "(None, 48, 64, 1)" in line and "square" in line
  assert result.stdout == ""


def test_bad_flags_exit_2_before_tensorflow(files):
  for extra, message in ((["--batch_size=0"], "batch_size"), ([], "--model is required")):
    result = run_tool(files["portrait"], *extra)
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert message in line
  result = run_tool(f"--model={files['cnn']}")
  assert result.returncode == 2 and "no images given" in error_lines(result.stderr)[0]


def test_loader_rejects_what_is_not_a_model(tmp_path):
  (tmp_path / "model.h5").write_bytes(b"x")
  (tmp_path / "broken.keras").write_bytes(b"not a zip")
  with pytest.raises(inference.ModelError, match="unknown model format"):
    inference.load_model(tmp_path / "model.h5")
  with pytest.raises(inference.ModelError, match="cannot load it as a keras model"):
    inference.load_model(tmp_path / "broken.keras")
  with pytest.raises(inference.ModelError, match="not a SavedModel"):
    inference.load_model(tmp_path)
