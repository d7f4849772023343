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


class EMAWeights(keras.callbacks.SwapEMAWeights):
  """--ema: validation and the epoch-end callbacks up to `SwapBack` see the averaged weights
  (so best.keras, the checkpoints and the export hold them); training and the backup see
  the raw ones.

  Keras's own `swap_on_epoch=True` would leave the averaged weights in the model while
  BackupAndRestore saves, and a resumed process (which starts unswapped) would then train
  on the average. Here the swap is undone before the backup instead (`SwapBack`), so a
  backup always holds the raw weights in the model and the average in the optimizer.
  """

  def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    if not self._ema_weights_in_model:
      self._swap_variables()
      self._ema_weights_in_model = True

  def swap_back(self) -> None:
    if self._ema_weights_in_model:
      self._swap_variables()
      self._ema_weights_in_model = False


class SwapBack(keras.callbacks.Callback):
  """Puts the raw weights back at epoch end, after the callbacks that save the average."""

  def __init__(self, ema: EMAWeights) -> None:
    super().__init__()
    self.ema = ema

  def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    self.ema.swap_back()


def training_callbacks(model_dir: str, best_so_far: float | None,
                       extra: Sequence[keras.callbacks.Callback],
                       trained_seconds: float = 0.0,
                       ema: bool = False) -> list[keras.callbacks.Callback]:
  """Order matters at epoch end: the epoch times go into the logs first; with `ema` the
  averaged weights are swapped in for the callbacks that save models and out again before
  the backup; best.keras and history.csv are written before the backup, so a kill in
  between re-runs that epoch (its history row is trimmed on resume) instead of losing it."""
  checkpoints = os.path.join(model_dir, run_dir.CHECKPOINTS)
  average = [EMAWeights()] if ema else []
  return [
      EpochTimes(trained_seconds),
      *average,
      keras.callbacks.TensorBoard(log_dir=os.path.join(model_dir, run_dir.LOGS)),
      keras.callbacks.ModelCheckpoint(
          os.path.join(checkpoints, "epoch_{epoch:03d}.weights.h5"), save_weights_only=True),
      PruneCheckpoints(checkpoints, run_dir.KEEP_CHECKPOINTS),
      keras.callbacks.ModelCheckpoint(
          os.path.join(model_dir, run_dir.BEST), monitor="val_accuracy", mode="max",
          save_best_only=True, initial_value_threshold=best_so_far),
      keras.callbacks.CSVLogger(os.path.join(model_dir, run_dir.HISTORY), append=True),
      *extra,
      *[SwapBack(callback) for callback in average],
      keras.callbacks.BackupAndRestore(
          os.path.join(model_dir, run_dir.BACKUP), save_freq="epoch", double_checkpoint=True,
          delete_checkpoint=False),  # removed by export.finish, after the model is exported
  ]
