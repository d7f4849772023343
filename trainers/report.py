"""Evaluation report: metrics with numpy, confusion matrix and training curves as PNG.

Why numpy and not sklearn: the metrics are a few lines on a 7x7 confusion
matrix, and the project does not otherwise need sklearn. Plots use
matplotlib's Agg canvas directly (no pyplot, no display, no global backend).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """Counts, rows = true class, columns = predicted class."""
  matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
  np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
  return matrix


def classification_report(labels: np.ndarray, probabilities: np.ndarray,
                          class_names: Sequence[str]) -> dict[str, Any]:
  """Accuracy, cross-entropy, per-class precision/recall/F1/support, macro and weighted
  averages, and the confusion matrix of predicted `probabilities` (N, classes)."""
  labels = np.asarray(labels, np.int64)
  probabilities = np.asarray(probabilities, np.float64)
  predictions = probabilities.argmax(axis=-1)
  matrix = confusion_matrix(labels, predictions, len(class_names))
  true_positives = np.diag(matrix).astype(np.float64)
  support = matrix.sum(axis=1)
  predicted = matrix.sum(axis=0)
  precision = _safe_divide(true_positives, predicted)
  recall = _safe_divide(true_positives, support)
  f1 = _safe_divide(2 * precision * recall, precision + recall)
  total = int(support.sum())
  picked = probabilities[np.arange(len(labels)), labels] if total else np.ones(0)
  weights = support / total if total else np.zeros_like(precision)
  return {
      "num_examples": total,
      "accuracy": float(true_positives.sum() / total) if total else 0.0,
      "loss": float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()) if total else 0.0,
      "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                    "f1": float(f1.mean())},
      "weighted_avg": {"precision": float(weights @ precision),
                       "recall": float(weights @ recall), "f1": float(weights @ f1)},
      "per_class": {
          name: {"precision": float(precision[i]), "recall": float(recall[i]),
                 "f1": float(f1[i]), "support": int(support[i])}
          for i, name in enumerate(class_names)
      },
      "class_names": list(class_names),
      "confusion_matrix": matrix.tolist(),
  }


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  """numerator / denominator, 0 where the denominator is 0 (sklearn's zero_division=0)."""
  out = np.zeros_like(numerator, dtype=np.float64)
  np.divide(numerator, denominator, out=out, where=denominator > 0)
  return out


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str],
                          path: str, title: str) -> None:
  """Row-normalised colours (recall per true class), with the counts written in each cell."""
  counts = np.asarray(matrix)
  rows = counts.sum(axis=1, keepdims=True)
  normalised = _safe_divide(counts.astype(np.float64), np.broadcast_to(rows, counts.shape))
  figure = Figure(figsize=(7, 6), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot()
  image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
  figure.colorbar(image, ax=axes, label="fraction of the true class", fraction=0.046, pad=0.04)
  ticks = np.arange(len(class_names))
  axes.set_xticks(ticks, class_names, rotation=45, ha="right")
  axes.set_yticks(ticks, class_names)
  axes.set_xlabel("predicted")
  axes.set_ylabel("true")
  axes.set_title(title, fontsize=10)
  for i in range(counts.shape[0]):
    for j in range(counts.shape[1]):
      axes.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                color="white" if normalised[i, j] > 0.5 else "black")
  figure.tight_layout()
  figure.savefig(path)


def read_history(csv_path: str) -> dict[str, list[float]]:
  """`{column: values}` of a CSVLogger file, in epoch order (empty if there is none)."""
  if not os.path.exists(csv_path):
    return {}
  with open(csv_path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  rows.sort(key=lambda row: int(row["epoch"]))
  return {key: [float(row[key]) for row in rows if row.get(key) not in (None, "")]
          for key in (rows[0].keys() if rows else [])}


TIME_TO_ACCURACY = (0.50, 0.55, 0.60, 0.65, 0.66, 0.67, 0.68, 0.69, 0.70)


def time_to_accuracy(history: dict[str, list[float]],
                     thresholds: Sequence[float] = TIME_TO_ACCURACY) -> dict[str, Any]:
  """Training seconds until validation accuracy first reached each threshold (None: never),
  from history.csv's val_accuracy and train_seconds, and the training time in all."""
  scores = history.get("val_accuracy", [])
  seconds = history.get("train_seconds", [])
  if len(seconds) != len(scores):  # a run from before the column existed
    seconds = []
  reached = {}
  for threshold in thresholds:
    first = next((t for score, t in zip(scores, seconds, strict=False) if score >= threshold),
                 None)
    reached[f"{threshold:.2f}"] = first
  return {"val_accuracy": reached, "train_seconds": seconds[-1] if seconds else None}


def plot_history(history: dict[str, list[float]], path: str, title: str) -> None:
  """Accuracy and loss per epoch, train and validation, side by side."""
  figure = Figure(figsize=(11, 4.5), dpi=100)
  FigureCanvasAgg(figure)
  epochs = [int(e) + 1 for e in history.get("epoch", [])]
  for index, metric in enumerate(("accuracy", "loss")):
    axes = figure.add_subplot(1, 2, index + 1)
    for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
      values = history.get(key, [])
      if values:
        axes.plot(epochs[:len(values)], values, marker="o", markersize=3, label=label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend()
  figure.suptitle(title)
  figure.tight_layout()
  figure.savefig(path)
