"""--ema: validation, best.keras and the export hold the moving average of the weights; training
and the backup keep the raw weights; a resumed run continues both."""

import fer_helpers as helpers
import keras
import numpy as np
import pytest

from trainers import main, run_dir


class Weights(keras.callbacks.Callback):
  """Records the model's weights at each epoch's begin (raw) and end (what checkpoints see)."""

  def __init__(self, crash_at=None):
    super().__init__()
    self.begin, self.end, self.average_at_begin = {}, {}, {}
    self.crash_at = crash_at

  def on_epoch_begin(self, epoch, logs=None):
    self.begin[epoch] = self.model.get_weights()
    # Keras's EMA slots (created when the optimizer is built, after epoch 0 begins).
    averages = getattr(self.model.optimizer, "_model_variables_moving_average", [])
    self.average_at_begin[epoch] = [np.array(v) for v in averages]
    if epoch == self.crash_at:
      raise RuntimeError("crash for the test")

  def on_epoch_end(self, epoch, logs=None):
    self.end[epoch] = self.model.get_weights()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("ema")
  helpers.build_fake_fer2013(root, (56, 14, 14), seed=6)
  return str(root / "tfds")


def args(data_dir, model_dir, *extra):
  return ["trainers.main", "--dataset=fer2013", f"--data_dir={data_dir}",
          f"--model_dir={model_dir}", "--batch_size=8", "--max_steps_per_epoch=3",
          "--ema=0.9", "--lr_schedule=constant", *extra]


def same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_average_is_validated_checkpointed_and_exported(data_dir, tmp_path):
  model_dir = tmp_path / "run"
  seen = Weights()
  assert main.run(args(data_dir, model_dir, "--epochs=2"), callbacks=[seen]) == 0
  # At epoch end the callbacks see the average; the next epoch trains on the raw weights,
  # which differ from it.
  assert not same(seen.end[0], seen.begin[1])
  exported = keras.saving.load_model(model_dir / run_dir.FINAL).get_weights()
  best = keras.saving.load_model(model_dir / run_dir.BEST).get_weights()
  assert same(exported, best)
  assert same(exported, seen.end[0]) or same(exported, seen.end[1])  # an epoch's average
  assert not same(exported, seen.begin[1])


def test_resume_restores_raw_weights_and_average(data_dir, tmp_path):
  model_dir = tmp_path / "run"
  first = Weights(crash_at=2)
  with pytest.raises(RuntimeError, match="crash for the test"):
    main.run(args(data_dir, model_dir, "--epochs=3"), callbacks=[first])
  resumed = Weights()
  assert main.run(args(data_dir, model_dir, "--epochs=3"), callbacks=[resumed]) == 0
  assert list(resumed.begin) == [2]
  assert same(resumed.begin[2], first.begin[2])  # the raw weights, not the average
  assert same(resumed.average_at_begin[2], first.average_at_begin[2])
  assert not same(resumed.begin[2], resumed.average_at_begin[2])
