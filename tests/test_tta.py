"""Test-time augmentation (trainers/tta.py): the mean of the model over the views, wherever it
is applied (a loaded model of any format, a Keras model with the views built in, an exported
SavedModel, the trainer's report)."""

import json

import fer_helpers as helpers
import keras
import numpy as np
import pytest

from tools import export as export_tool
from trainers import data, inference, main, models, run_dir, tta


def reflect_shift(images, shift):
  """Moves (B, H, W, C) images `shift` pixels right along W, reflecting at the border."""
  width = images.shape[2]
  padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (0, 0)), mode="reflect")
  return padded[:, :, 2 - shift:2 - shift + width, :]


@pytest.fixture(scope="module")
def model():
  keras.utils.set_random_seed(1)
  return models.build_model("improved_cnn", dropout=0.0)


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(0).random((6, 48, 48, 1)).astype(np.float32)


def run_of(model):
  return lambda x: model.predict(x, verbose=0)


def test_views_are_the_mirror_image_and_reflected_shifts(images):
  np.testing.assert_array_equal(tta._view_numpy(images, True, 0), images[:, :, ::-1])
  np.testing.assert_array_equal(tta._view_numpy(images, False, 2), reflect_shift(images, 2))
  np.testing.assert_array_equal(tta._view_numpy(images, True, -2),
                                reflect_shift(images[:, :, ::-1], -2))
  assert len(tta.VIEWS["flip_shift"]) == 6 and len(set(tta.VIEWS["flip_shift"])) == 6


def test_tta_is_the_mean_of_the_model_over_the_views(model, images):
  run = run_of(model)
  flipped = images[:, :, ::-1]
  np.testing.assert_allclose(tta.predict(run, images, "flip"),
                             (run(images) + run(flipped)) / 2, atol=1e-6)
  views = [v for x in (images, flipped) for v in (x, reflect_shift(x, -2), reflect_shift(x, 2))]
  np.testing.assert_allclose(tta.predict(run, images, "flip_shift"),
                             np.mean([run(v) for v in views], axis=0), atol=1e-6)
  np.testing.assert_array_equal(tta.predict(run, images, "none"), run(images))
  assert not np.allclose(tta.predict(run, images, "flip"), run(images), atol=1e-4)


def test_views_built_into_the_model_save_and_export(model, images, tmp_path):
  expected = tta.predict(run_of(model), images, "flip_shift")
  wrapped = tta.wrap(model, "flip_shift")
  np.testing.assert_allclose(wrapped.predict(images, verbose=0), expected, atol=1e-6)
  path = tmp_path / "model.keras"
  model.save(path)
  saved = export_tool.export(str(path), "saved_model", "none", tmp_path / "saved", None, None, 1,
                             tta="flip_shift")
  np.testing.assert_allclose(inference.load_model(saved).predict(images), expected, atol=1e-5)
  # The same views at load time, on the plain model, give the same.
  loaded = inference.load_model(path, tta="flip_shift")
  np.testing.assert_allclose(loaded.predict(images), expected, atol=1e-5)


def test_trainer_report_uses_the_views(tmp_path):
  helpers.build_fake_fer2013(tmp_path, (56, 14, 14), seed=2)
  data_dir = str(tmp_path / "tfds")
  model_dir = tmp_path / "run"
  assert main.run(["trainers.main", "--dataset=fer2013", f"--data_dir={data_dir}",
                   f"--model_dir={model_dir}", "--epochs=1", "--batch_size=8",
                   "--max_steps_per_epoch=2", "--tta=flip"]) == 0
  result = json.loads((model_dir / run_dir.report_name("validation")).read_text())
  assert result["tta"] == "flip"
  batches = data.make_dataset("validation", dataset="fer2013", data_dir=data_dir, batch_size=64,
                              training=False)
  images = np.concatenate([x.numpy() for x, _ in batches])
  labels = np.concatenate([y.numpy() for _, y in batches])
  flipped = inference.load_model(model_dir / run_dir.FINAL, tta="flip").predict(images)
  assert result["loss"] == pytest.approx(
      float(-np.log(np.clip(flipped[np.arange(len(labels)), labels], 1e-12, 1)).mean()),
      rel=1e-4)
