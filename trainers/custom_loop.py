"""The training loop for what Keras 3's `fit` cannot drive: MultiWorkerMirroredStrategy, and
device input (`--input=device`, whose batches are indices that `feed` turns into images).

Why a loop of our own: with TF 2.21 and Keras 3.15, `model.fit` under
MultiWorkerMirroredStrategy fails before the first step (its symbolic build
calls `strategy.reduce` on a per-replica batch: `ValueError: Attempt to
convert a value (PerReplica:{...})`) and, with that skipped, in its reduction
of the step's logs (docs/distributed.md). What `fit` does for us elsewhere is
kept: the step is Keras's own (`model.compute_loss`, the compiled optimizer
with its schedule and loss scaling), and the callbacks are the ones train.py
gives `fit` (TensorBoard, checkpoints, best.keras, CSV history,
BackupAndRestore, extras), called at the same points. So a multi-worker run
writes the same files, resumes from the same backup, and can be resumed under
another strategy. Only `strategy.run` inside a `tf.function` is new.

Every worker runs this same code (the collectives must match); train.py points
the callbacks of workers other than the chief at a temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

SUM = tf.distribute.ReduceOp.SUM


def fit(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    train_ds: tf.distribute.DistributedDataset,
    val_ds: tf.data.Dataset,
    *,
    epochs: int,
    steps_per_epoch: int,
    initial_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback],
    steps_per_execution: int = 1,
    jit_compile: bool = False,
    verbose: int = 2,
    feed: Callable[[Any], tf.Tensor] | None = None,
) -> keras.callbacks.History:
  """Trains `model` (compiled under `strategy.scope()`) from `initial_epoch` to `epochs`.

  `train_ds` is the endless per-replica training input (with `feed`, device
  input's: each replica's step first turns its batch's x into images), `val_ds` the local
  validation batches (every worker evaluates all of it: it is small, and the
  callbacks of every worker then see the same logs). `model.stop_training`
  (EarlyStopping) is honoured at the end of an epoch, when any worker sets it.
  """
  with strategy.scope():
    # Optimizer variables must exist, mirrored, before the step function is traced
    # and before BackupAndRestore (on_train_begin) restores them.
    model.optimizer.build(model.trainable_variables)
  callback_list = keras.callbacks.CallbackList(
      list(callbacks), add_history=True, add_progbar=verbose > 0, model=model,
      verbose=verbose, epochs=epochs, steps=steps_per_epoch)
  model.stop_training = False
  callback_list.on_train_begin()
  if initial_epoch:
    # The chief restored the backup (on_train_begin); the others take its state.
    sync_from_chief(strategy, [*model.weights, *model.optimizer.variables])
  train_steps = train_function(model, strategy, jit_compile, feed)
  evaluate = _eval_function(model)
  iterator = iter(train_ds)
  logs: dict[str, float] = {}
  for epoch in range(initial_epoch, epochs):
    callback_list.on_epoch_begin(epoch)
    totals = np.zeros(3)
    step = 0
    while step < steps_per_epoch:
      steps = min(steps_per_execution, steps_per_epoch - step)
      callback_list.on_train_batch_begin(step)
      totals += train_steps(iterator, tf.constant(steps)).numpy()
      step += steps
      logs = _train_logs(totals, step)
      callback_list.on_train_batch_end(step - 1, logs)
    callback_list.on_test_begin()
    val_logs = _validate(evaluate, val_ds)
    callback_list.on_test_end(val_logs)
    logs = {**_train_logs(totals, step), **{f"val_{k}": v for k, v in val_logs.items()}}
    callback_list.on_epoch_end(epoch, logs)
    if any_worker(strategy, bool(model.stop_training)):
      logging.info("Training stopped after epoch %d (stop_training).", epoch + 1)
      break
  callback_list.on_train_end(logs)
  return model.history


def train_function(model: keras.Model, strategy: tf.distribute.Strategy,
                    jit_compile: bool, feed: Callable[[Any], tf.Tensor] | None = None) -> Any:
  """A tf.function running `steps` training steps; returns the global sums of
  (per-step mean loss, correct predictions, examples). `feed` runs first in each replica's
  step, outside XLA (the image transform op has no XLA kernel)."""

  def gradients_of(x: Any, y: tf.Tensor, sample_weight: tf.Tensor | None) -> tuple[Any, ...]:
    with tf.GradientTape() as tape:
      y_pred = model(x, training=True)
      # Keras's loss: label smoothing, sample (class) weights, model.losses; already
      # divided by the replicas in sync, so the replicas' sum is the global batch mean.
      loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                training=True)
      scaled = model.optimizer.scale_loss(loss)  # mixed_float16: dynamic loss scaling
    return loss, y_pred, tape.gradient(scaled, model.trainable_variables)

  # --jit_compile: XLA compiles the forward and backward pass, not the update, whose
  # gradient all-reduce XLA cannot compile on CPU (UnimplementedError, measured).
  compute = tf.function(gradients_of, jit_compile=True) if jit_compile else gradients_of

  def replica_step(batch: Any) -> tf.Tensor:
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
    if feed is not None:
      x = feed(x)
    loss, y_pred, gradients = compute(x, y, sample_weight)
    # Keras's optimizer sums the gradients over all replicas (all-reduce) before applying.
    model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    correct = tf.cast(tf.equal(tf.argmax(y, axis=-1), tf.argmax(y_pred, axis=-1)), tf.float32)
    # Keras 3's `fit` updates `metrics=["accuracy"]` without the sample (class) weights (only
    # `weighted_metrics` use them): so is this accuracy, plain correct / examples.
    return tf.stack([tf.cast(loss, tf.float32), tf.reduce_sum(correct),
                     tf.cast(tf.shape(y)[0], tf.float32)])

  @tf.function
  def train_steps(iterator: Any, steps: tf.Tensor) -> tf.Tensor:
    totals = tf.zeros([3])
    for _ in tf.range(steps):
      per_replica = strategy.run(replica_step, args=(next(iterator),))
      totals += strategy.reduce(SUM, per_replica, axis=None)
    return totals

  return train_steps


def _train_logs(totals: np.ndarray, steps: int) -> dict[str, float]:
  """Keras's epoch logs: mean step loss (fixed batches: the example mean) and accuracy."""
  loss_sum, correct, examples = totals
  return {"accuracy": float(correct / examples) if examples else 0.0,
          "loss": float(loss_sum / steps) if steps else 0.0}


def _eval_function(model: keras.Model) -> Any:
  """A tf.function of one local validation batch: sums of loss, correct, examples."""

  @tf.function(reduce_retracing=True)
  def evaluate(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    y_pred = model(x, training=False)
    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)  # batch mean
    n = tf.cast(tf.shape(y)[0], tf.float32)
    correct = tf.cast(tf.equal(tf.argmax(y, axis=-1), tf.argmax(y_pred, axis=-1)), tf.float32)
    return tf.stack([tf.cast(loss, tf.float32) * n, tf.reduce_sum(correct), n])

  return evaluate


def _validate(evaluate: Any, val_ds: tf.data.Dataset) -> dict[str, float]:
  """Keras's `evaluate` logs over every validation example (batch means weighted by size)."""
  totals = np.zeros(3)
  for x, y in val_ds:
    totals += evaluate(x, y).numpy()
  loss_sum, correct, n = totals
  return {"accuracy": float(correct / n) if n else 0.0, "loss": float(loss_sum / n) if n else 0.0}


def _in_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
      strategy.extended._in_multi_worker_mode())  # noqa: SLF001  (no public accessor)


def from_chief(strategy: tf.distribute.Strategy, values: Sequence[float]) -> list[float]:
  """The chief's `values` on every worker (an all-reduce where the others add zeros).

  How the workers agree on what only the chief knows (the epoch to resume
  from, whether the model_dir was accepted). Every worker must call it.
  """
  if not _in_multi_worker(strategy):
    return [float(v) for v in values]
  local = tf.constant(values if strategy.extended.should_checkpoint else [0.0] * len(values),
                      tf.float64)

  @tf.function
  def share() -> Any:
    def replica_fn() -> tf.Tensor:
      context = tf.distribute.get_replica_context()
      first = tf.cast(context.replica_id_in_sync_group == 0, tf.float64)
      return context.all_reduce(SUM, local * first)
    return strategy.run(replica_fn)

  result = strategy.experimental_local_results(share())[0]
  return [float(v) for v in result.numpy()]


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
  """Whether `flag` is true on any worker (all must call it)."""
  if not _in_multi_worker(strategy):
    return flag

  @tf.function
  def share() -> Any:
    def replica_fn() -> tf.Tensor:
      return tf.distribute.get_replica_context().all_reduce(SUM, tf.constant(float(flag)))
    return strategy.run(replica_fn)

  return float(strategy.experimental_local_results(share())[0]) > 0


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has called it.

  At the end of a run: a worker that exits while the chief still exports
  makes the chief's runtime log its missing heartbeats as a crash.
  """
  any_worker(strategy, False)


def sync_from_chief(strategy: tf.distribute.Strategy, variables: Sequence[Any]) -> None:
  """Sets `variables` on every worker to the chief's values (all must call it).

  After a restart only the chief restores the backup from model_dir, so the
  other workers need not see model_dir at all (no shared file system needed
  for it). Values travel as float64: exact for float32 weights and the integer
  step counter alike.
  """
  if not _in_multi_worker(strategy):
    return
  variables = list(variables)

  @tf.function
  def gather() -> Any:
    def replica_fn() -> list[tf.Tensor]:
      context = tf.distribute.get_replica_context()
      first = tf.cast(context.replica_id_in_sync_group == 0, tf.float64)
      return context.all_reduce(SUM, [tf.cast(v, tf.float64) * first for v in variables])
    return strategy.run(replica_fn)

  for variable, value in zip(variables, gather(), strict=True):
    local = strategy.experimental_local_results(value)[0]
    variable.assign(tf.cast(local, variable.dtype))
