"""report.time_to_accuracy: the training time at which validation accuracy first reached each
threshold, read from history.csv's val_accuracy and train_seconds columns."""

import pytest

from trainers import report


def test_first_epoch_at_or_above_each_threshold():
  history = {"epoch": [0, 1, 2, 3], "val_accuracy": [0.40, 0.62, 0.58, 0.665],
             "train_seconds": [10.0, 21.0, 30.5, 41.0]}
  result = report.time_to_accuracy(history, thresholds=(0.3, 0.5, 0.6, 0.65, 0.7))
  assert result == {"val_accuracy": {"0.30": 10.0, "0.50": 21.0, "0.60": 21.0, "0.65": 41.0,
                                     "0.70": None},
                    "train_seconds": 41.0}


def test_default_thresholds_and_a_history_without_times():
  history = {"val_accuracy": [0.55, 0.671], "train_seconds": [5.0, 9.0]}
  reached = report.time_to_accuracy(history)["val_accuracy"]
  assert list(reached) == ["0.50", "0.55", "0.60", "0.65", "0.66", "0.67", "0.68", "0.69",
                           "0.70"]
  assert reached["0.55"] == 5.0 and reached["0.67"] == 9.0 and reached["0.68"] is None
  old = report.time_to_accuracy({"val_accuracy": [0.7]})  # before the column existed
  assert old == {"val_accuracy": dict.fromkeys(reached), "train_seconds": None}


@pytest.mark.parametrize("scores", [[], [0.1, 0.2]])
def test_never_reached(scores):
  history = {"val_accuracy": scores, "train_seconds": [1.0 * i for i in range(len(scores))]}
  assert set(report.time_to_accuracy(history)["val_accuracy"].values()) == {None}
