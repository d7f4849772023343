"""The end of a run: export the best epoch, write the reports and plots, mark the run finished.

Why separate from training: these steps run once, on the chief, after fit,
and in this order: a run is finished (finished.json) only once everything a
user reads (model.keras, saved_model/, report_<split>.json, PNGs) is in place,
so a kill anywhere before leaves a run that the same command resumes.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from trainers import data, files, report, run_dir, tta
from trainers.config import TrainConfig
from trainers.task import DataInfo


def export_model(model: keras.Model, model_dir: str) -> None:
  """model.keras with the best epoch's weights (best.keras), and the same as a SavedModel."""
  best = os.path.join(model_dir, run_dir.BEST)
  if os.path.exists(best):
    model.load_weights(best)
  model.save(os.path.join(model_dir, run_dir.FINAL))
  saved_model = os.path.join(model_dir, run_dir.SAVED_MODEL)
  shutil.rmtree(saved_model, ignore_errors=True)  # a partial export from a killed run
  model.export(saved_model, verbose=False)


def finish(model: keras.Model, config: TrainConfig, info: DataInfo) -> dict[str, Any]:
  """Exports, writes the reports (validation always, test when asked) and finished.json.

  Returns the report of --eval_split.
  """
  model_dir = config.model_dir
  export_model(model, model_dir)
  reports = {split: write_report(model, config, split, info)
             for split in dict.fromkeys(("validation", config.eval_split))}
  split = config.eval_split
  result = reports[split]
  history = report.read_history(os.path.join(model_dir, run_dir.HISTORY))
  report.plot_history(history, os.path.join(model_dir, run_dir.CURVES),
                      f"{config.model} on {info.dataset}")
  files.write_json(os.path.join(model_dir, run_dir.FINISHED), {
      "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "epochs": len(history.get("epoch", [])),
      "best_val_accuracy": max(history.get("val_accuracy", [0.0]), default=0.0),
      "eval_split": split,
      "eval_accuracy": result["accuracy"],
      "validation_accuracy": reports["validation"]["accuracy"],
      "time_to_accuracy": report.time_to_accuracy(history),
  })
  shutil.rmtree(os.path.join(model_dir, run_dir.BACKUP), ignore_errors=True)
  return result


def write_report(model: keras.Model, config: TrainConfig, split: str,
                 info: DataInfo) -> dict[str, Any]:
  """Evaluates `split` and writes report_<split>.json and confusion_matrix_<split>.png."""
  labels, probabilities = predict_split(tta.wrap(model, config.tta), split, config.batch_size,
                                        info.pipeline)
  result = {"dataset": info.dataset, "split": split, "model": config.model, "tta": config.tta,
            **report.classification_report(labels, probabilities, info.class_names)}
  files.write_json(os.path.join(config.model_dir, run_dir.report_name(split)), result)
  report.plot_confusion_matrix(
      result["confusion_matrix"], info.class_names,
      os.path.join(config.model_dir, run_dir.confusion_name(split)),
      f"{config.model} on {info.dataset} ({split})\naccuracy {result['accuracy']:.3f}, "
      f"macro F1 {result['macro_avg']['f1']:.3f}, {result['num_examples']} examples")
  logging.info("%s accuracy %.4f, macro F1 %.4f (%d examples); report in %s.", split,
               result["accuracy"], result["macro_avg"]["f1"], result["num_examples"],
               config.model_dir)
  return result


def predict_split(model: keras.Model, split: str, batch_size: int,
                  pipeline: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """(labels, probabilities) over every example of `split`, in order, unaugmented."""
  predict = tf.function(lambda images: tf.cast(model(images, training=False), tf.float32),
                        reduce_retracing=True)
  labels, probabilities = [], []
  for images, batch_labels in data.make_dataset(split, batch_size=batch_size, training=False,
                                                **pipeline):
    probabilities.append(predict(images).numpy())
    labels.append(batch_labels.numpy())
  if not labels:
    return np.zeros(0, np.int64), np.zeros((0, model.output_shape[-1]), np.float32)
  return np.concatenate(labels), np.concatenate(probabilities)


def summary(config: TrainConfig, result: dict[str, Any], seconds: float) -> str:
  """The console's last lines: the score, the best epoch, where things are, what to run next."""
  model_dir = config.model_dir
  history = report.read_history(os.path.join(model_dir, run_dir.HISTORY))
  scores = history.get("val_accuracy", [])
  best = f"best epoch {int(np.argmax(scores)) + 1} of {len(scores)}" if scores else "no epochs"
  final = os.path.join(model_dir, run_dir.FINAL)
  minutes, secs = divmod(round(seconds), 60)
  return "\n".join([
      f"Done in {minutes} min {secs:02d} s: {result['split']} accuracy "
      f"{100 * result['accuracy']:.1f}% (macro F1 {100 * result['macro_avg']['f1']:.1f}%), "
      f"{best}.",
      f"  model:  {final} (and {os.path.join(model_dir, run_dir.SAVED_MODEL)}/)",
      f"  report: {os.path.join(model_dir, run_dir.report_name(result['split']))}, "
      f"{run_dir.confusion_name(result['split'])}, {run_dir.CURVES}",
      f"  next:   python -m tools.predict PHOTO.jpg --model={final}",
      f"          python -m tools.export --model={final} --format=tflite",
      f"          tensorboard --logdir={os.path.join(model_dir, run_dir.LOGS)}",
  ])
