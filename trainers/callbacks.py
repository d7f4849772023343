"""The Keras callbacks of every training run: TensorBoard, checkpoints, best.keras, history, backup.

Why one list for fit and the multi-worker loop: both must write the same
files in the same order, so that a killed run of either resumes the same way.
"""

from __future__ import annotations

import glob
import os
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


def training_callbacks(model_dir: str, best_so_far: float | None,
                       extra: Sequence[keras.callbacks.Callback]) -> list[keras.callbacks.Callback]:
  """Order matters at epoch end: best.keras and history.csv are written before the backup,
  so a kill in between re-runs that epoch (its history row is trimmed on resume)
  instead of losing it."""
  checkpoints = os.path.join(model_dir, run_dir.CHECKPOINTS)
  return [
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
