"""What a sweep leaves in its directory, rewritten after every trial and at the end.

    sweep_config.json   the sweep's settings (a rerun must match them to resume)
    best_hparams.json   the best trial, as `python -m trainers.main --hparams=FILE` takes it
    trials.csv          every trial: status, val_accuracy, hyperparameters, epochs,
                        seconds (wall), fit_seconds, overhead_seconds, worker, error
    trials.md           the same as a markdown table, best first line above it
    objective.png       val_accuracy per trial, and the best so far
    logs/               TensorBoard: per trial and execution (scalars and HParams);
                        the HParams experiment (domains, metrics) at the top

Why from the oracle: it is the one record of which trials exist, their status
and score (the chief's, in a distributed sweep), so a resumed sweep lists every
trial once. Worker-side details (times, errors) come from trial_<id>/run.json
when the directory is shared, which it is for tuning.launch.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from trainers import config as trainer_config
from trainers import files
from tuning import search_space
from tuning.config import OBJECTIVE, SweepSettings
from tuning.tuners import RUN_INFO, last_line

SWEEP_CONFIG = "sweep_config.json"
BEST_HPARAMS = "best_hparams.json"
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
PLOT = "objective.png"
LOGS = "logs"
COMPLETED = "COMPLETED"


def trial_rows(trials: dict[str, Any], settings: SweepSettings) -> list[dict[str, Any]]:
  """One row per trial, in trial order (KerasTuner Trial objects -> plain values)."""
  space = settings.space
  rows = []
  for trial in sorted(trials.values(), key=lambda t: _order(t.trial_id)):
    values = trial.hyperparameters.values
    info = files.read_json(os.path.join(settings.project_dir, f"trial_{trial.trial_id}", RUN_INFO))
    info = info if isinstance(info, dict) else {}
    row: dict[str, Any] = {"trial": trial.trial_id, "status": trial.status,
                           OBJECTIVE: trial.score if trial.status == COMPLETED else None}
    try:
      model_hparams, training = search_space.split_values(space, values)
    except (KeyError, TypeError, ValueError):
      model_hparams, training = {}, {}
    filters = model_hparams.get(search_space.FILTERS)
    row[search_space.FILTERS] = "-".join(map(str, filters)) if filters else ""
    for key in (search_space.DROPOUT, search_space.DENSE_UNITS):
      row[key] = model_hparams.get(key)
    row[search_space.LEARNING_RATE] = training.get(search_space.LEARNING_RATE)
    if space.augment_strength:
      row[search_space.AUGMENT_STRENGTH] = training.get(search_space.AUGMENT_STRENGTH)
    row["epochs"] = values.get("tuner/epochs", settings.train.epochs)
    row["initial_epoch"] = values.get("tuner/initial_epoch", 0)
    seconds = None
    if info.get("ended_at") and info.get("started_at"):
      seconds = info["ended_at"] - info["started_at"]
    elif trial.metrics.exists("trial_seconds"):
      seconds = trial.metrics.get_last_value("trial_seconds")
    fit = info.get("fit_seconds")
    if fit is None and trial.metrics.exists("fit_seconds"):
      fit = trial.metrics.get_last_value("fit_seconds")
    row["seconds"] = _round(seconds, 2)
    row["fit_seconds"] = _round(fit, 2)
    row["overhead_seconds"] = _round(seconds - fit, 2) if seconds and fit else None
    row["worker"] = info.get("tuner_id", "")
    row["error"] = last_line(trial.message or info.get("error")) if trial.status != COMPLETED \
        and trial.status != "RUNNING" else ""
    rows.append(row)
  return rows


def best_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
  done = [r for r in rows if r["status"] == COMPLETED and _finite(r[OBJECTIVE])]
  return max(done, key=lambda r: r[OBJECTIVE]) if done else None


def write_all(trials: dict[str, Any], settings: SweepSettings) -> dict[str, Any]:
  """Writes the table, plot and best_hparams.json; returns a summary for the log."""
  rows = trial_rows(trials, settings)
  project = settings.project_dir
  write_csv(rows, os.path.join(project, TRIALS_CSV))
  best = best_row(rows)
  write_markdown(rows, best, settings, os.path.join(project, TRIALS_MD))
  plot_objective(rows, best, settings, os.path.join(project, PLOT))
  if best is not None:
    write_best_hparams(trials[best["trial"]], settings, os.path.join(project, BEST_HPARAMS))
  counts: dict[str, int] = {}
  for row in rows:
    counts[row["status"]] = counts.get(row["status"], 0) + 1
  return {"trials": len(rows), "counts": counts, "best": best}


def write_best_hparams(trial: Any, settings: SweepSettings, path: str) -> dict[str, Any]:
  """best_hparams.json: the model's hparams, learning_rate, batch_size and model.

  `tuner/...` keys (ignored by trainers.main) say where it came from. The file
  is read back with the trainer's own loader, so it is known to be accepted.
  """
  model_hparams, training = search_space.split_values(settings.space,
                                                      trial.hyperparameters.values)
  record = {
      "model": settings.train.model,
      **model_hparams,
      **training,
      "batch_size": settings.train.batch_size,
      "tuner/trial_id": trial.trial_id,
      f"tuner/{OBJECTIVE}": trial.score,
      "tuner/epochs": trial.hyperparameters.values.get("tuner/epochs",
                                                       settings.train.epochs),
      "tuner/sweep": os.path.abspath(settings.project_dir),
  }
  files.write_text(path, json.dumps(record, indent=2) + "\n")
  trainer_config.load_hparams(path, settings.train.model)  # raises if trainers.main would refuse
  return record


def write_csv(rows: Sequence[dict[str, Any]], path: str) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    if rows:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
  os.replace(tmp, path)


def _cell(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value).replace("|", "\\|")


def objective_split(settings: SweepSettings) -> str:
  """What the trials were scored on, in words."""
  if settings.objective_split == "holdout":
    return f"holdout: {settings.holdout_fraction:.0%} of the train split"
  return "validation split"


def write_markdown(rows: Sequence[dict[str, Any]], best: dict[str, Any] | None,
                   settings: SweepSettings, path: str) -> None:
  lines = [f"# Sweep {settings.project_name} ({settings.tuner}, {settings.train.model})", ""]
  if best is not None:
    lines.append(f"Best: trial {best['trial']}, {OBJECTIVE} {best[OBJECTIVE]:.4f} "
                 f"({objective_split(settings)}). Train it: `python -m trainers.main "
                 f"--hparams={os.path.join(settings.project_dir, BEST_HPARAMS)}`")
  else:
    lines.append("No trial has completed yet.")
  lines.append("")
  if rows:
    columns = list(rows[0])
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
      cells = [_cell(row[c]) for c in columns]
      if row is best:
        cells[0] = f"**{cells[0]}**"
      lines.append("| " + " | ".join(cells) + " |")
  files.write_text(path, "\n".join(lines) + "\n")


def plot_objective(rows: Sequence[dict[str, Any]], best: dict[str, Any] | None,
                   settings: SweepSettings, path: str) -> None:
  """val_accuracy per trial (failed trials as red crosses at the bottom) and the best so far."""
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
  done = [(i, r[OBJECTIVE]) for i, r in enumerate(rows) if _finite(r[OBJECTIVE])]
  failed = [i for i, r in enumerate(rows) if r["status"] in ("FAILED", "INVALID")]
  if done:
    xs, ys = zip(*done, strict=True)
    ax.plot(xs, ys, "o", label=OBJECTIVE)
    running, best_so_far = [], -math.inf
    for y in ys:
      best_so_far = max(best_so_far, y)
      running.append(best_so_far)
    ax.step(xs, running, where="post", label="best so far")
  if failed:
    bottom = min((y for _, y in done), default=0.0)
    ax.plot(failed, [bottom] * len(failed), "x", color="red", label="failed")
  ax.set_xlabel("trial")
  ax.set_ylabel(f"{OBJECTIVE} ({objective_split(settings)})")
  title = f"{settings.project_name}: {settings.tuner}, {len(rows)} trials"
  if best is not None:
    title += f", best {best[OBJECTIVE]:.4f} (trial {best['trial']})"
  ax.set_title(title, fontsize=10)
  if done or failed:
    ax.legend(loc="lower right")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  tmp = f"{path}.tmp.png"
  fig.savefig(tmp)
  plt.close(fig)
  os.replace(tmp, path)


def write_hparams_config(space: Any, logdir: str) -> None:
  """The TensorBoard HParams experiment: every searched domain and the validation metrics.

  KerasTuner writes each trial's HParams session next to its scalars; this
  top-level config gives the dashboard the domains and the metric columns.
  """
  import tensorflow as tf
  from keras_tuner.src.engine import tuner_utils
  from tensorboard.plugins.hparams import api as hparams_api

  hparams = list(tuner_utils.convert_hyperparams_to_hparams(space, hparams_api))
  metrics = [hparams_api.Metric("epoch_accuracy", group="validation", display_name=OBJECTIVE),
             hparams_api.Metric("epoch_loss", group="validation", display_name="val_loss")]
  os.makedirs(logdir, exist_ok=True)
  with tf.summary.create_file_writer(logdir).as_default():
    hparams_api.hparams_config(hparams=hparams, metrics=metrics)


def _order(trial_id: str) -> tuple[int, str]:
  return (int(trial_id), trial_id) if trial_id.isdigit() else (1 << 62, trial_id)


def _finite(value: Any) -> bool:
  return isinstance(value, int | float) and math.isfinite(value)


def _round(value: float | None, digits: int) -> float | None:
  return None if value is None else round(float(value), digits)
