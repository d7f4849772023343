"""The Keras callbacks of every training run: TensorBoard, checkpoints, best.keras, history, backup.

Why one list for fit and the multi-worker loop: both must write the same
files in the same order, so that a killed run of either resumes the same way.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Sequence
from typing import Any

import keras

from trainers import run_dir


class PruneCheckpoints(keras.callbacks.Callback):
  """Keeps only the newest per-epoch weight files: enough to step back, bounded on disk."""

  def __init__(self, directory: str, keep: int) -> None:
    super().__init__()
    self.directory, self.keep = directory, keep

  def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    del epoch, logs
    files = sorted(glob.glob(os.path.join(self.directory, "epoch_*.weights.h5")))
    for path in files[:-self.keep]:
      os.remove(path)


class EpochTimes(keras.callbacks.Callback):
  """Adds the epoch's wall time (`epoch_seconds`, validation included) and the training time
  so far (`train_seconds`, summed over resumes) to the epoch's logs, so that history.csv
  records them: time to accuracy is read from there (report.time_to_accuracy)."""

  def __init__(self, trained_seconds: float = 0.0) -> None:
    super().__init__()
    self.trained_seconds = trained_seconds
    self._start = time.monotonic()

  def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    self._start = time.monotonic()

  def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    seconds = time.monotonic() - self._start
    self.trained_seconds += seconds
    if logs is not None:  # the dict the later callbacks (CSVLogger) receive
      logs["epoch_seconds"] = seconds
      logs["train_seconds"] = self.trained_seconds


def training_callbacks(model_dir: str, best_so_far: float | None,
                       extra: Sequence[keras.callbacks.Callback],
                       trained_seconds: float = 0.0) -> list[keras.callbacks.Callback]:
  """Order matters at epoch end: the epoch times go into the logs first; best.keras and
  history.csv are written before the backup, so a kill in between re-runs that epoch
  (its history row is trimmed on resume) instead of losing it."""
  checkpoints = os.path.join(model_dir, run_dir.CHECKPOINTS)
  return [
      EpochTimes(trained_seconds),
      keras.callbacks.TensorBoard(log_dir=os.path.join(model_dir, run_dir.LOGS)),
      keras.callbacks.ModelCheckpoint(
          os.path.join(checkpoints, "epoch_{epoch:03d}.weights.h5"), save_weights_only=True),
      PruneCheckpoints(checkpoints, run_dir.KEEP_CHECKPOINTS),
      keras.callbacks.ModelCheckpoint(
          os.path.join(model_dir, run_dir.BEST), monitor="val_accuracy", mode="max",
          save_best_only=True, initial_value_threshold=best_so_far),
      keras.callbacks.CSVLogger(os.path.join(model_dir, run_dir.HISTORY), append=True),
      *extra,
      keras.callbacks.BackupAndRestore(
          os.path.join(model_dir, run_dir.BACKUP), save_freq="epoch", double_checkpoint=True,
          delete_checkpoint=False),  # removed by export.finish, after the model is exported
  ]
