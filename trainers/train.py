"""One training run: model_dir checks, Keras fit under a tf.distribute strategy, export, report.

Why Keras `fit` under `strategy.scope()`: with Keras 3 it is the supported way
to train under tf.distribute (MirroredStrategy included), and its callbacks
give fault tolerance (BackupAndRestore), checkpoints, TensorBoard and the CSV
history without a custom loop. The one exception is multi_worker_mirrored,
which Keras 3's `fit` cannot drive: trainers/custom_loop.py trains it, with the
same model, optimizer, loss and callbacks. Everything a run writes lives in its
model_dir (on the chief, in a multi-worker run):

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

import contextlib
import csv
import dataclasses
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from trainers import custom_loop, data, models, report
from trainers import strategy as strategy_lib
from trainers.flags import TrainConfig, UsageError

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
    "jit_compile", "steps_per_execution", "hparams_file", "tpu", "data_service",
})


@dataclasses.dataclass
class RunResult:
  """What a finished run produced (for callers and tests)."""

  model_dir: str
  dataset: str
  initial_epoch: int
  report: dict[str, Any]


def report_name(split: str) -> str:
  return f"report_{split}.json"


def confusion_name(split: str) -> str:
  return f"confusion_matrix_{split}.png"


def run(config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
  """Trains, resumes or refuses per `config`; bad input raises UsageError before training.

  `callbacks` are extra Keras callbacks (embedding, tests). Under
  multi_worker_mirrored every worker calls this with the same config: the
  chief writes model_dir, the others a temporary directory removed at the end
  (their RunResult has an empty report).
  """
  try:
    strategy_lib.split_cpu(config.cpu_devices)  # must precede every TensorFlow op
  except ValueError as e:
    raise UsageError(str(e)) from None
  strategy = _make_strategy(config)  # multi_worker_mirrored: before any op runs
  keras.mixed_precision.set_global_policy(_precision_policy(config.mixed_precision))
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  replicas = strategy.num_replicas_in_sync
  try:
    data.check_global_batch(config.batch_size, replicas)
  except ValueError as e:
    raise UsageError(f"{e} (--strategy={config.strategy})") from None
  spec = models.MODELS[config.model]
  # The chief first: with --dataset=auto it may build the synthetic set, which workers
  # sharing its data_dir must not build at the same time.
  chosen: list[str] = []
  _on_chief(strategy, lambda: chosen.append(resolve_dataset(config.dataset, config.data_dir)))
  dataset = chosen[0] if chosen else resolve_dataset(config.dataset, config.data_dir)
  info = tfds.builder(dataset, data_dir=config.data_dir).info
  class_names = info.features["label"].names
  train_examples = info.splits["train"].num_examples
  steps_per_epoch = train_examples // config.batch_size
  if steps_per_epoch == 0:
    raise UsageError(f"--batch_size={config.batch_size} is larger than the train split of "
                     f"{dataset} ({train_examples} examples)")
  if config.max_steps_per_epoch:
    steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)

  model = build_model(config, strategy, len(class_names), steps_per_epoch)
  record = {
      "flags": config.to_json(),
      "dataset": dataset,
      "num_replicas": replicas,
      "num_workers": strategy_lib.num_workers(strategy),
      "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
  }
  model_dir = config.model_dir
  best: list[float | None] = [None]

  def prepare() -> int:
    prepare_model_dir(model_dir, record, config.overwrite)
    epoch = restored_epoch(os.path.join(model_dir, BACKUP))
    best[0] = _trim_history(os.path.join(model_dir, HISTORY), epoch)
    return epoch

  initial_epoch = int(_on_chief(strategy, prepare))
  if initial_epoch:
    logging.info("Resuming %s after epoch %d of %d.", model_dir, initial_epoch, config.epochs)
  logging.info("Training %s on %s (%d train examples, %d steps/epoch, global batch %d, "
               "%d replica(s)) into %s.", config.model, dataset, train_examples,
               steps_per_epoch, config.batch_size, replicas, model_dir)

  common = dict(dataset=dataset, data_dir=config.data_dir, image_size=spec.image_size,
                channels=spec.channels, seed=config.seed, deterministic=config.deterministic)
  class_weights = None
  if config.class_weights == "balanced":
    counts = label_counts(dataset, config.data_dir, len(class_names))
    class_weights = balanced_class_weights(counts)
    logging.info("Class weights (balanced) from train label counts %s: %s",
                 dict(zip(class_names, counts.tolist(), strict=True)),
                 dict(zip(class_names, np.round(class_weights, 3).tolist(), strict=True)))

  train_ds = _train_input(strategy, config, common, len(class_names), class_weights)
  val_ds = data.make_dataset("validation", batch_size=config.batch_size, training=False,
                             **common).map(_one_hot(len(class_names)))
  chief = strategy_lib.is_chief(strategy)
  verbose = (1 if sys.stdout.isatty() else 2) if chief else 0
  with _write_dir(strategy, model_dir) as write_dir:
    fit_callbacks = _callbacks(write_dir, best[0], callbacks)
    if config.strategy in strategy_lib.CUSTOM_LOOP:
      custom_loop.fit(model, strategy, train_ds, val_ds, epochs=config.epochs,
                      steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                      callbacks=fit_callbacks, steps_per_execution=config.steps_per_execution,
                      jit_compile=config.jit_compile, verbose=verbose)
    else:
      model.fit(
          train_ds,
          epochs=config.epochs,
          steps_per_epoch=steps_per_epoch,
          validation_data=val_ds,
          callbacks=fit_callbacks,
          shuffle=False,  # make_dataset shuffles
          verbose=verbose,
      )
  if not chief:
    custom_loop.barrier(strategy)  # exit with the chief, not while it exports
    return RunResult(model_dir, dataset, initial_epoch, {})
  _dedupe_history(os.path.join(model_dir, HISTORY))
  result = _finish(model, config, dataset, class_names, common, initial_epoch)
  custom_loop.barrier(strategy)
  return result


@contextlib.contextmanager
def _write_dir(strategy: tf.distribute.Strategy, model_dir: str) -> Iterator[str]:
  """Where this process's callbacks write: model_dir on the chief; on the other workers of a
  multi-worker run, a temporary directory removed afterwards (they run the same callbacks,
  so that every worker executes the same steps, but nobody reads their files)."""
  if strategy_lib.is_chief(strategy):
    yield model_dir
    return
  task_type, task_id = strategy_lib.task_of(strategy)
  path = tempfile.mkdtemp(prefix=f"fer-tf-{task_type}{task_id}-")
  try:
    yield path
  finally:
    shutil.rmtree(path, ignore_errors=True)


def _make_strategy(config: TrainConfig) -> tf.distribute.Strategy:
  try:
    return strategy_lib.make_strategy(config.strategy, tpu=config.tpu)
  except ValueError as e:
    raise UsageError(str(e)) from None
  except RuntimeError as e:  # collective ops configured too late (TensorFlow already ran)
    raise UsageError(f"--strategy={config.strategy} must start in a fresh process: "
                     f"{_one_line(e)}") from None


def _on_chief(strategy: tf.distribute.Strategy, fn: Callable[[], Any]) -> float:
  """Runs `fn` on the chief only; every worker gets its numeric result (None: 0).

  A UsageError on the chief stops every worker (exit 2 everywhere) instead of
  leaving the others waiting for it. One worker: just `fn()`.
  """
  value, error = None, None
  if strategy_lib.is_chief(strategy):
    try:
      value = fn()
    except UsageError as e:
      error = e
  ok, shared = custom_loop.from_chief(strategy, [error is None, float(value or 0)])
  if error is not None:
    raise error
  if not ok:
    raise UsageError("the chief worker refused the run; its error line says why")
  return shared


def build_model(config: TrainConfig, strategy: tf.distribute.Strategy, num_classes: int,
                steps_per_epoch: int) -> keras.Model:
  """The compiled model, its variables placed by `strategy`; a bad hparam is a UsageError."""
  with strategy.scope():
    # Seeded again here: creating a strategy can draw from Python's random module, and the
    # same seed must give the same initial weights under every strategy.
    keras.utils.set_random_seed(config.seed)
    try:
      model = models.build_model(config.model, num_classes=num_classes,
                                 weights=config.weights, **config.hparams)
    except (ValueError, OSError) as e:
      raise UsageError(f"--model={config.model}: {_one_line(e)}") from None
    except Exception as e:
      if config.weights != "imagenet":
        raise
      # keras.applications raises a bare Exception when the download fails (offline).
      raise UsageError(f"--weights=imagenet: cannot get the ImageNet weights of "
                       f"{config.model}: {_one_line(e)}") from None
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
  return model


def resolve_dataset(name: str, data_dir: str | None) -> str:
  """data.prepared_dataset, with its error as a UsageError (one line, exit 2)."""
  try:
    return data.prepared_dataset(name, data_dir)
  except ValueError as e:
    raise UsageError(str(e)) from None


def prepare_model_dir(model_dir: str, record: dict[str, Any], overwrite: bool) -> None:
  """Creates model_dir for a new run, or accepts it for resuming; never clobbers silently.

  Refused (UsageError) without --overwrite: a finished run, an unfinished run
  with other settings. Always refused: a non-empty directory that is not a run
  (it is never deleted, even with --overwrite).
  """
  config_path = os.path.join(model_dir, RUN_CONFIG)
  if os.path.isdir(model_dir) and os.listdir(model_dir):
    previous = _read_json(config_path)
    if previous is None:
      raise UsageError(f"--model_dir {model_dir} is not empty and holds no training run "
                       f"({RUN_CONFIG} missing); choose another --model_dir")
    if overwrite:
      logging.info("--overwrite: deleting the run in %s.", model_dir)
      shutil.rmtree(model_dir)
    elif os.path.exists(os.path.join(model_dir, FINISHED)):
      raise UsageError(f"--model_dir {model_dir} holds a finished run; pass --overwrite to "
                       "replace it, or choose another --model_dir")
    else:
      changes = config_changes(previous, record)
      if changes:
        raise UsageError(
            f"--model_dir {model_dir} holds an unfinished run with other settings "
            f"({'; '.join(changes)}); rerun with its settings to resume it, pass --overwrite "
            "to replace it, or choose another --model_dir")
      return
  elif os.path.exists(model_dir) and not os.path.isdir(model_dir):
    raise UsageError(f"--model_dir {model_dir} is a file, not a directory")
  os.makedirs(model_dir, exist_ok=True)
  report.write_json(config_path, record)


def config_changes(previous: dict[str, Any], record: dict[str, Any]) -> list[str]:
  """`name: old -> new` for each setting that forbids resuming `previous` as `record`."""
  def comparable(rec: dict[str, Any]) -> dict[str, Any]:
    rec = json.loads(json.dumps(rec))  # tuples vs lists: compare as stored
    values = {k: v for k, v in rec.get("flags", {}).items() if k not in RESUMABLE_CHANGES}
    values["dataset"] = rec.get("dataset")
    return values

  old, new = comparable(previous), comparable(record)
  return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
          for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def restored_epoch(backup_dir: str) -> int:
  """The epoch BackupAndRestore will resume from (0 when there is no backup).

  Read from the callback's own training_metadata.json; used to drop history
  rows of the epoch that was cut short, and for the log.
  """
  metadata = _read_json(os.path.join(backup_dir, "training_metadata.json")) or {}
  epoch = metadata.get("epoch", 0)
  return epoch if isinstance(epoch, int) and epoch > 0 else 0


def label_counts(dataset: str, data_dir: str | None, num_classes: int) -> np.ndarray:
  """Examples per class in the train split (one pass over its labels)."""
  ds = data.make_dataset("train", dataset=dataset, data_dir=data_dir, batch_size=4096,
                         training=False, cache=False)
  counts = np.zeros(num_classes, np.int64)
  for _, labels in ds:
    counts += np.bincount(labels.numpy(), minlength=num_classes)
  return counts


def balanced_class_weights(counts: np.ndarray) -> np.ndarray:
  """n / (classes * count) per class (sklearn's "balanced"); 0 for a class with no examples."""
  counts = np.asarray(counts, np.float64)
  weights = np.zeros_like(counts)
  present = counts > 0
  weights[present] = counts.sum() / (len(counts) * counts[present])
  return weights


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> Any:
  """The learning rate: linear warmup from 0, then constant or cosine decay to 0.

  Keras's own CosineDecay (alpha=1 keeps it constant after the warmup), so that
  best.keras and model.keras load without any fer-tf code.
  """
  total = max(1, config.epochs * steps_per_epoch)
  warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
  if not warmup and config.lr_schedule == "constant":
    return config.learning_rate
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=0.0 if warmup else config.learning_rate,
      decay_steps=max(1, total - warmup),
      alpha=1.0 if config.lr_schedule == "constant" else 0.0,
      warmup_target=config.learning_rate if warmup else None,
      warmup_steps=warmup,
  )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
  """--optimizer with the learning_rate schedule."""
  lr = learning_rate(config, steps_per_epoch)
  if config.optimizer == "adam":
    return keras.optimizers.Adam(lr)
  if config.optimizer == "adamw":
    return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
  return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)


def _precision_policy(mixed: bool) -> str:
  if not mixed:
    return "float32"
  return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def _one_hot(num_classes: int, weights: np.ndarray | None = None) -> Any:
  """(images, labels) -> (images, one-hot labels[, per-example class weight])."""
  table = None if weights is None else tf.constant(weights, tf.float32)

  def convert(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
    one_hot = tf.one_hot(labels, num_classes)
    if table is None:
      return images, one_hot
    return images, one_hot, tf.gather(table, labels)

  return convert


def _train_input(strategy: tf.distribute.Strategy, config: TrainConfig, common: dict[str, Any],
                 num_classes: int, weights: np.ndarray | None) -> Any:
  """The repeated training input, one pipeline per worker with per-replica batches.

  One-hot labels (for label smoothing) and class weights are mapped in before
  distribution; repeated, so that steps_per_epoch (--max_steps_per_epoch)
  never runs a pass dry mid-epoch.
  """
  return data.distributed_dataset(
      strategy, "train", global_batch_size=config.batch_size, training=True,
      augment_strength=config.augment_strength, map_fn=_one_hot(num_classes, weights),
      repeat=True, data_service=config.data_service, **common)


class _PruneCheckpoints(keras.callbacks.Callback):
  """Keeps only the newest per-epoch weight files: enough to step back, bounded on disk."""

  def __init__(self, directory: str, keep: int) -> None:
    super().__init__()
    self.directory, self.keep = directory, keep

  def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    del epoch, logs
    files = sorted(glob.glob(os.path.join(self.directory, "epoch_*.weights.h5")))
    for path in files[:-self.keep]:
      os.remove(path)


def _callbacks(model_dir: str, best_so_far: float | None,
               extra: Sequence[keras.callbacks.Callback]) -> list[keras.callbacks.Callback]:
  """Order matters at epoch end: best.keras and history.csv are written before the backup,
  so a kill in between re-runs that epoch (its history row is trimmed on resume)
  instead of losing it."""
  checkpoints = os.path.join(model_dir, CHECKPOINTS)
  return [
      keras.callbacks.TensorBoard(log_dir=os.path.join(model_dir, LOGS)),
      keras.callbacks.ModelCheckpoint(
          os.path.join(checkpoints, "epoch_{epoch:03d}.weights.h5"), save_weights_only=True),
      _PruneCheckpoints(checkpoints, KEEP_CHECKPOINTS),
      keras.callbacks.ModelCheckpoint(
          os.path.join(model_dir, BEST), monitor="val_accuracy", mode="max",
          save_best_only=True, initial_value_threshold=best_so_far),
      keras.callbacks.CSVLogger(os.path.join(model_dir, HISTORY), append=True),
      *extra,
      keras.callbacks.BackupAndRestore(
          os.path.join(model_dir, BACKUP), save_freq="epoch", double_checkpoint=True,
          delete_checkpoint=False),  # removed by _finish, after the model is exported
  ]


def _finish(model: keras.Model, config: TrainConfig, dataset: str, class_names: Sequence[str],
            common: dict[str, Any], initial_epoch: int) -> RunResult:
  """Exports the best epoch, writes the report and plots, then marks the run finished."""
  model_dir = config.model_dir
  best = os.path.join(model_dir, BEST)
  if os.path.exists(best):
    model.load_weights(best)
  model.save(os.path.join(model_dir, FINAL))
  saved_model = os.path.join(model_dir, SAVED_MODEL)
  shutil.rmtree(saved_model, ignore_errors=True)  # a partial export from a killed run
  model.export(saved_model, verbose=False)

  # The validation report always; the test split (PrivateTest) only when asked for.
  reports = {}
  for split in dict.fromkeys(("validation", config.eval_split)):
    reports[split] = _write_report(model, config, split, dataset, class_names, common)
  split = config.eval_split
  result = reports[split]
  history = report.read_history(os.path.join(model_dir, HISTORY))
  report.plot_history(history, os.path.join(model_dir, CURVES), f"{config.model} on {dataset}")
  report.write_json(os.path.join(model_dir, FINISHED), {
      "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "epochs": len(history.get("epoch", [])),
      "best_val_accuracy": max(history.get("val_accuracy", [0.0]), default=0.0),
      "eval_split": split,
      "eval_accuracy": result["accuracy"],
      "validation_accuracy": reports["validation"]["accuracy"],
  })
  shutil.rmtree(os.path.join(model_dir, BACKUP), ignore_errors=True)
  return RunResult(model_dir, dataset, initial_epoch, result)


def _write_report(model: keras.Model, config: TrainConfig, split: str, dataset: str,
                  class_names: Sequence[str], common: dict[str, Any]) -> dict[str, Any]:
  """Evaluates `split` and writes report_<split>.json and confusion_<split>.png."""
  labels, probabilities = predict_split(model, split, config.batch_size, common)
  result = {"dataset": dataset, "split": split, "model": config.model,
            **report.classification_report(labels, probabilities, class_names)}
  report.write_json(os.path.join(config.model_dir, report_name(split)), result)
  report.plot_confusion_matrix(
      result["confusion_matrix"], class_names,
      os.path.join(config.model_dir, confusion_name(split)),
      f"{config.model} on {dataset} ({split})\naccuracy {result['accuracy']:.3f}, "
      f"macro F1 {result['macro_avg']['f1']:.3f}, {result['num_examples']} examples")
  logging.info("%s accuracy %.4f, macro F1 %.4f (%d examples); report in %s.", split,
               result["accuracy"], result["macro_avg"]["f1"], result["num_examples"],
               config.model_dir)
  return result


def predict_split(model: keras.Model, split: str, batch_size: int,
                  common: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """(labels, probabilities) over every example of `split`, in order, unaugmented."""
  predict = tf.function(lambda images: tf.cast(model(images, training=False), tf.float32),
                        reduce_retracing=True)
  labels, probabilities = [], []
  for images, batch_labels in data.make_dataset(split, batch_size=batch_size, training=False,
                                                **common):
    probabilities.append(predict(images).numpy())
    labels.append(batch_labels.numpy())
  if not labels:
    return np.zeros(0, np.int64), np.zeros((0, model.output_shape[-1]), np.float32)
  return np.concatenate(labels), np.concatenate(probabilities)


def _trim_history(csv_path: str, initial_epoch: int) -> float | None:
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


def _dedupe_history(csv_path: str) -> None:
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


def _read_json(path: str) -> Any:
  """The JSON in `path`, or None when it is missing or unreadable."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split()) or type(error).__name__
