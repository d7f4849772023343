"""One training run: strategy, run directory, Keras fit, then export and reports.

Why Keras `fit` under `strategy.scope()`: with Keras 3 it is the supported way
to train under tf.distribute (MirroredStrategy included), and its callbacks
give fault tolerance (BackupAndRestore), checkpoints, TensorBoard and the CSV
history without a custom loop. The one exception is multi_worker_mirrored,
which Keras 3's `fit` cannot drive: trainers/custom_loop.py trains it, with the
same model, optimizer, loss and callbacks. This module only orchestrates: the
pieces are trainers.task (inputs, model), trainers.run_dir (the directory and
what it holds), trainers.callbacks and trainers.export.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import tensorflow as tf

from trainers import console, custom_loop, data, export, run_dir, task
from trainers import strategy as strategy_lib
from trainers.callbacks import training_callbacks
from trainers.cli import UsageError, one_line
from trainers.config import TrainConfig


@dataclasses.dataclass
class RunResult:
  """What a finished run produced (for callers and tests)."""

  model_dir: str
  dataset: str
  initial_epoch: int
  report: dict[str, Any]


def run(config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
  """Trains, resumes or refuses per `config`; bad input raises UsageError before training.

  `callbacks` are extra Keras callbacks (embedding, tests). Under
  multi_worker_mirrored every worker calls this with the same config: the
  chief writes model_dir, the others a temporary directory removed at the end
  (their RunResult has an empty report).
  """
  strategy = start(config)
  replicas = strategy.num_replicas_in_sync
  # The chief first: with --dataset=auto it may build the synthetic set, which workers
  # sharing its data_dir must not build at the same time.
  chosen: list[str] = []
  _on_chief(strategy, lambda: chosen.append(task.resolve_dataset(config.dataset,
                                                                   config.data_dir)))
  dataset = chosen[0] if chosen else task.resolve_dataset(config.dataset, config.data_dir)
  info = task.data_info(config, dataset)
  model = task.build_model(config, strategy, info.num_classes, info.steps_per_epoch)
  record = {
      "flags": config.to_json(),
      "dataset": dataset,
      "num_replicas": replicas,
      "num_workers": strategy_lib.num_workers(strategy),
      "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
  }
  model_dir = config.model_dir
  best: list[float | None] = [None]
  trained = [0.0]  # seconds of training before a resume

  def prepare() -> int:
    run_dir.prepare_model_dir(model_dir, record, config.overwrite)
    epoch = run_dir.restored_epoch(os.path.join(model_dir, run_dir.BACKUP))
    history = os.path.join(model_dir, run_dir.HISTORY)
    best[0] = run_dir.trim_history(history, epoch)
    trained[0] = run_dir.trained_seconds(history)
    return epoch

  initial_epoch = int(_on_chief(strategy, prepare))
  chief = strategy_lib.is_chief(strategy)
  if chief:
    if initial_epoch:
      console.say(f"Resuming {model_dir} after epoch {initial_epoch} of {config.epochs}.")
    synthetic = " (drawn faces, not FER2013)" if dataset != data.REAL_DATASET else ""
    console.say(f"Training {config.model} for {config.epochs} epochs on {dataset}{synthetic} in "
                f"{config.data_dir or '~/tensorflow_datasets'} ({info.train_examples} train "
                f"examples, {info.steps_per_epoch} steps/epoch, global batch "
                f"{config.batch_size}, {replicas} replica(s)) into {model_dir}.")
  started = time.monotonic()

  inputs = task.build_inputs(strategy, config, info, task.class_weights(config, info),
                             first_epoch=initial_epoch)
  if chief and inputs.placement is not None:
    console.say(f"Input on the {inputs.placement.where}: {inputs.placement.reason}.")
  verbose = (1 if sys.stdout.isatty() else 2) if chief else 0
  with _write_dir(strategy, model_dir) as write_dir:
    fit_callbacks = training_callbacks(write_dir, best[0], [*inputs.callbacks, *callbacks],
                                       trained[0], ema=bool(config.ema))
    # Device input's batches are indices, which Keras's fit would feed to the model (its
    # symbolic build calls the model on the first batch): our loop runs the feed first.
    if config.strategy in strategy_lib.CUSTOM_LOOP or inputs.feed is not None:
      custom_loop.fit(model, strategy, inputs.train, inputs.validation, epochs=config.epochs,
                      steps_per_epoch=info.steps_per_epoch, initial_epoch=initial_epoch,
                      callbacks=fit_callbacks, steps_per_execution=config.steps_per_execution,
                      jit_compile=config.jit_compile, verbose=verbose, feed=inputs.feed)
    else:
      model.fit(inputs.train, epochs=config.epochs, steps_per_epoch=info.steps_per_epoch,
                validation_data=inputs.validation, callbacks=fit_callbacks,
                shuffle=False,  # make_dataset shuffles
                verbose=verbose)
  if not chief:
    custom_loop.barrier(strategy)  # exit with the chief, not while it exports
    return RunResult(model_dir, dataset, initial_epoch, {})
  run_dir.dedupe_history(os.path.join(model_dir, run_dir.HISTORY))
  result = export.finish(model, config, info)
  console.say(export.summary(config, result, time.monotonic() - started))
  custom_loop.barrier(strategy)
  return RunResult(model_dir, dataset, initial_epoch, result)


def start(config: TrainConfig) -> tf.distribute.Strategy:
  """Logical CPUs, the strategy, precision, seeds and determinism: before any other TF op.

  Shared by training runs and tuning processes; a global batch that does not
  split over the replicas is a UsageError.
  """
  try:
    strategy_lib.split_cpu(config.cpu_devices)  # must precede every TensorFlow op
  except ValueError as e:
    raise UsageError(str(e)) from None
  try:
    strategy = strategy_lib.make_strategy(config.strategy, tpu=config.tpu)
  except ValueError as e:
    raise UsageError(str(e)) from None
  except RuntimeError as e:  # collective ops configured too late (TensorFlow already ran)
    raise UsageError(f"--strategy={config.strategy} must start in a fresh process: "
                     f"{one_line(e)}") from None
  keras.mixed_precision.set_global_policy(task.precision_policy(config.mixed_precision))
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  try:
    data.check_global_batch(config.batch_size, strategy.num_replicas_in_sync)
  except ValueError as e:
    raise UsageError(f"{e} (--strategy={config.strategy})") from None
  return strategy


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
