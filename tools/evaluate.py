r"""Accuracy of a trained model in any format (.keras, SavedModel, .tflite) on one split.

  python -m tools.evaluate --model=runs/fer_net/model.keras
  python -m tools.evaluate --model=/tmp/fer_net_int8.tflite --out=/tmp/int8_validation.json

Why: tools.export's float16 and int8 TFLite models trade accuracy for size;
evaluating every format through the same pipeline (trainers.data.make_dataset,
training=False, at the model's own input size) and the same report
(trainers.report.classification_report) measures exactly that trade. Prints
accuracy, macro F1, the model's size and images/s; `--out` writes the full
report (per-class precision/recall/F1, confusion matrix) as JSON.

The split is `validation` (PublicTest) unless `--split` says otherwise; `test`
(PrivateTest) is read only with an explicit `--split=test`.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # before anything loads TensorFlow (trainers/console.py)
  from trainers import console

  console.start(sys.argv)

import os
import time
from typing import Any

import numpy as np
from absl import flags

from trainers import cli, tta

SPLITS = ("validation", "train", "test")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string("model", None, "The model: a .keras file, a SavedModel directory or a "
                      ".tflite file.")
  flags.DEFINE_enum("split", "validation", SPLITS, "The split to evaluate; test "
                    "(PrivateTest) only when given explicitly.")
  cli.define_dataset_flags()
  flags.DEFINE_integer("batch_size", 256, "Images per model call.", lower_bound=1)
  flags.DEFINE_string("out", None, "Write the full report here as JSON.")
  tta.define_flag()
  flags.DEFINE_integer("threads", None, "TFLite interpreter threads (default: all cores).",
                       lower_bound=1)


def evaluate(classifier: Any, split: str, dataset: str, data_dir: str | None,
             batch_size: int) -> dict[str, Any]:
  """The classification report of `classifier` on `split`, with timing and model size.

  `images_per_second` counts the whole loop (input pipeline and model) after
  the first batch, which pays for tracing and buffer set-up once.
  """
  from trainers import data, inference, report

  batches = data.make_dataset(split, dataset=dataset, data_dir=data_dir, batch_size=batch_size,
                              training=False, image_size=classifier.image_size,
                              channels=classifier.channels, cache=False)
  labels, probabilities = [], []
  start = time.perf_counter()
  timed_from, timed_images = start, 0
  for images, batch_labels in batches:
    probabilities.append(classifier.predict(images.numpy()))
    labels.append(batch_labels.numpy())
    if len(labels) == 1:
      timed_from = time.perf_counter()
    else:
      timed_images += len(batch_labels)
  end = time.perf_counter()
  if not labels:
    raise cli.UsageError(f"split {split} of {dataset} is empty")
  seconds = end - timed_from
  result = {
      "model": classifier.path,
      "format": classifier.format,
      "tta": classifier.tta,
      "model_bytes": inference.model_bytes(classifier.path),
      "input_shape": [classifier.image_size, classifier.image_size, classifier.channels],
      "dataset": dataset,
      "split": split,
      "seconds": round(end - start, 3),
      # One batch only (a tiny split): the rate of the whole loop, first batch included.
      "images_per_second": round(timed_images / seconds if timed_images else
                                 len(labels[0]) / (end - start), 1),
  }
  result.update(report.classification_report(np.concatenate(labels),
                                              np.concatenate(probabilities),
                                              inference.CLASS_NAMES))
  return result


def summary(result: dict[str, Any]) -> str:
  return (f"{result['model']} ({result['format']}, {result['model_bytes']:,} bytes, tta "
          f"{result['tta']}) on "
          f"{result['dataset']} {result['split']}: accuracy {result['accuracy']:.4f}, macro F1 "
          f"{result['macro_avg']['f1']:.4f}, {result['num_examples']} images, "
          f"{result['images_per_second']:.0f} images/s")


def main(argv: list[str]) -> int:
  del argv
  if not FLAGS.model:
    raise cli.UsageError("--model is required: a .keras file, a SavedModel directory or a "
                         ".tflite file")
  from trainers import data, files, inference  # TensorFlow starts here

  try:
    classifier = inference.load_model(FLAGS.model, threads=FLAGS.threads, tta=FLAGS.tta)
  except inference.ModelError as e:
    raise cli.UsageError(f"--model={e}") from None
  try:
    dataset = data.prepared_dataset(FLAGS.dataset, FLAGS.data_dir)
  except ValueError as e:
    raise cli.UsageError(str(e)) from None
  result = evaluate(classifier, FLAGS.split, dataset, FLAGS.data_dir, FLAGS.batch_size)
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    files.write_json(FLAGS.out, result)
  print(summary(result))
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
