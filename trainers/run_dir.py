"""Run directories: what a run writes, and when a directory may be started, resumed or replaced.

Why one module for training runs and sweeps: both are resumable after a kill,
both record their settings as JSON and must refuse to resume with other
settings (naming them), and neither may ever delete a directory it did not
make. `prepare` is that rule; trainers.train and tuning.main call it with their
own record and their own notion of which settings may change on resume.

A training run's directory (model_dir; on the chief, in a multi-worker run):

    run_config.json        the settings (a rerun must match them to resume)
    history.csv            per-epoch metrics (CSVLogger), no duplicated epochs
    logs/                  TensorBoard
    checkpoints/           weights of the last epochs
    backup/                BackupAndRestore state; removed when the run finishes
    best.keras             the best epoch by validation accuracy
    model.keras            the exported model (best epoch's weights)
    saved_model/           the same for TF Serving (`model.export`)
    report_<split>.json    accuracy, per-class metrics, confusion matrix
    confusion_matrix_<split>.png, training_curves.png
    finished.json          written last: the run is complete
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

from absl import logging

from trainers import files
from trainers.cli import UsageError

RUN_CONFIG = "run_config.json"
FINISHED = "finished.json"
HISTORY = "history.csv"
BEST = "best.keras"
FINAL = "model.keras"
SAVED_MODEL = "saved_model"
BACKUP = "backup"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
CURVES = "training_curves.png"
KEEP_CHECKPOINTS = 3
# Settings that may change when an unfinished run is resumed: they change how
# it runs or where it reads from, not what it learns.
RESUMABLE_CHANGES = frozenset({
    "model_dir", "overwrite", "data_dir", "eval_split", "strategy", "cpu_devices",
    "jit_compile", "steps_per_execution", "hparams_file", "tpu", "data_service", "tta",
})


def report_name(split: str) -> str:
  return f"report_{split}.json"


def confusion_name(split: str) -> str:
  return f"confusion_matrix_{split}.png"


@dataclasses.dataclass(frozen=True)
class Kind:
  """What kind of run a directory holds, for `prepare` and its messages."""

  config_file: str  # the settings record, written first
  noun: str  # "run", "sweep"
  holds_no: str  # "training run": "... holds no training run"
  with_other: str  # "an unfinished run": "... holds an unfinished run with other settings"
  retry: str  # the flags that choose another directory
  finished: str | None = None  # a file present once the run is complete
  ignore: tuple[str, ...] = ()  # entries that do not make the directory non-empty


def prepare(directory: str, label: str, kind: Kind, record: dict[str, Any], overwrite: bool,
            changes: Callable[[dict[str, Any], dict[str, Any]], list[str]],
            accept: Callable[[str], bool] | None = None) -> None:
  """Creates `directory` for a new run, or accepts it for resuming; never clobbers silently.

  Refused (UsageError) without `overwrite`: a finished run (`kind.finished`
  present), a run whose record differs from `record` by `changes` (each change
  named). Always refused: a non-empty directory that holds no such run (no
  `kind.config_file`, unless `accept(directory)` says it is one): it is never
  deleted, even with `overwrite`. `label` names the directory in messages.
  """
  config_path = os.path.join(directory, kind.config_file)
  present = set(os.listdir(directory)) - set(kind.ignore) if os.path.isdir(directory) else set()
  if present:
    previous = files.read_json(config_path)
    if previous is None and not (accept and accept(directory)):
      raise UsageError(f"{label} is not empty and holds no {kind.holds_no} ({kind.config_file} "
                       f"missing); choose another {kind.retry}")
    if overwrite:
      logging.info("--overwrite: deleting the %s in %s.", kind.noun, directory)
      shutil.rmtree(directory)
    elif kind.finished and os.path.exists(os.path.join(directory, kind.finished)):
      raise UsageError(f"{label} holds a finished {kind.noun}; pass --overwrite to replace it, "
                       f"or choose another {kind.retry}")
    else:
      found = changes(previous or {}, record)
      if found:
        raise UsageError(
            f"{label} holds {kind.with_other} with other settings ({'; '.join(found)}); rerun "
            "with its settings to resume it, pass --overwrite to replace it, or choose another "
            f"{kind.retry}")
      return
  elif os.path.exists(directory) and not os.path.isdir(directory):
    raise UsageError(f"{label} is a file, not a directory")
  os.makedirs(directory, exist_ok=True)
  files.write_json(config_path, record)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """`name: old -> new` for each key whose values differ (compared as stored in JSON)."""
  old, new = json.loads(json.dumps(old)), json.loads(json.dumps(new))
  return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
          for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def config_changes(previous: dict[str, Any], record: dict[str, Any]) -> list[str]:
  """The settings that forbid resuming training run `previous` as `record`."""

  def comparable(rec: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in rec.get("flags", {}).items() if k not in RESUMABLE_CHANGES}
    values["dataset"] = rec.get("dataset")
    return values

  return differences(comparable(previous), comparable(record))


TRAINING_RUN = Kind(config_file=RUN_CONFIG, noun="run", holds_no="training run",
                    with_other="an unfinished run", retry="--model_dir", finished=FINISHED)


def prepare_model_dir(model_dir: str, record: dict[str, Any], overwrite: bool) -> None:
  """`prepare` for a training run: refuses a finished run, or one with other settings."""
  prepare(model_dir, f"--model_dir {model_dir}", TRAINING_RUN, record, overwrite,
          config_changes)


def restored_epoch(backup_dir: str) -> int:
  """The epoch BackupAndRestore will resume from (0 when there is no backup).

  Read from the callback's own training_metadata.json; used to drop history
  rows of the epoch that was cut short, and for the log.
  """
  metadata = files.read_json(os.path.join(backup_dir, "training_metadata.json")) or {}
  epoch = metadata.get("epoch", 0)
  return epoch if isinstance(epoch, int) and epoch > 0 else 0


def trim_history(csv_path: str, initial_epoch: int) -> float | None:
  """Drops history rows from `initial_epoch` on (an epoch cut short by a kill is re-run);
  returns the best val_accuracy of the rows kept, the bar best.keras must beat."""
  if not os.path.exists(csv_path):
    return None
  with open(csv_path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
    fieldnames = list(rows[0].keys()) if rows else []
  kept = [row for row in rows if int(row["epoch"]) < initial_epoch]
  if len(kept) != len(rows):
    _write_history(csv_path, fieldnames, kept)
  scores = [float(row["val_accuracy"]) for row in kept if row.get("val_accuracy")]
  return max(scores) if scores else None


def trained_seconds(csv_path: str) -> float:
  """The training time recorded so far (the last row's train_seconds; 0 without one)."""
  if not os.path.exists(csv_path):
    return 0.0
  with open(csv_path, newline="", encoding="utf-8") as f:
    rows = [row for row in csv.DictReader(f) if row.get("train_seconds")]
  return max((float(row["train_seconds"]) for row in rows), default=0.0)


def dedupe_history(csv_path: str) -> None:
  """One row per epoch (the last written), in epoch order, whatever a crash left behind."""
  if not os.path.exists(csv_path):
    return
  with open(csv_path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    return
  by_epoch = {int(row["epoch"]): row for row in rows}
  if len(by_epoch) != len(rows):
    _write_history(csv_path, list(rows[0].keys()), [by_epoch[e] for e in sorted(by_epoch)])


def _write_history(csv_path: str, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
  tmp = f"{csv_path}.tmp"
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    if fieldnames:
      writer = csv.DictWriter(f, fieldnames=fieldnames)
      writer.writeheader()
      writer.writerows(rows)
  os.replace(tmp, csv_path)
