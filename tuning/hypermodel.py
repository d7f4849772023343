"""Trials through the trainer's own code: its pipelines, model builder, optimizer and loss.

Why not a copy: a trial must train exactly as `python -m trainers.main` does
with the same flags (same preprocessing, augmentation, optimizer, schedule,
loss, precision), or the sweep's ranking says nothing about the run trained
from best_hparams.json. So a trial is `task.build_model` on a TrainConfig that
differs from the sweep's only in the searched values, fed by the pipelines of
`trainers.data` that `train.run` uses.

Why `Pipelines` lives outside the trials: building a tf.data pipeline (TFDS
read, in-memory cache of the decoded images, shuffle buffer) per trial would
re-read and re-cache the data every trial. One instance per process builds
each pipeline once, on first use, and every trial iterates the same objects, so
the cache filled by the first trial serves all the others.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf
from absl import logging

from trainers import custom_loop, data, models, task
from trainers.config import TrainConfig
from tuning import search_space
from tuning.config import OBJECTIVE, SweepSettings


class Pipelines:
  """The training and validation inputs of one process, built once and shared by every trial.

  Training pipelines are keyed by augmentation strength (one unless it is
  searched). What trials are scored on ("validation", fit's validation data)
  is the `holdout` slice of train (tuning/holdout.py), which the training
  pipelines then leave out, or PublicTest without one. The test split is never
  built.
  """

  def __init__(self, config: TrainConfig, strategy: tf.distribute.Strategy,
               dataset: str, holdout: Any = None) -> None:
    self.config, self.strategy, self.dataset, self.holdout = config, strategy, dataset, holdout
    info = task.data_info(config, dataset)
    if holdout is not None:
      rest = info.train_examples - len(holdout.ids)
      info = dataclasses.replace(
          info, train_examples=rest,
          steps_per_epoch=task.steps_per_epoch(config, rest, "the train split less the holdout"),
          pipeline={**info.pipeline, "example_filter": holdout.predicate(inside=False)})
    self.info = info
    self.num_classes = self.info.num_classes
    self.steps_per_epoch = self.info.steps_per_epoch
    self.class_weights = task.class_weights(config, self.info)
    self._train: dict[float, tuple[Any, list[Any], Any]] = {}
    self._placement: Any = None
    self._validation: tf.data.Dataset | None = None
    self.builds: list[str] = []  # what was built, in order (tests, logs)

  def placement(self) -> Any:
    """--input for this process's trials (task.input_placement), decided once and logged."""
    if self._placement is None:
      self._placement = task.input_placement(self.config, self.strategy, self.info)
      logging.info("Trials' training input on the %s: %s.", self._placement.where,
                   self._placement.reason)
    return self._placement

  def train(self, augment_strength: float) -> tuple[Any, list[Any], Any]:
    """The repeated, distributed training input at `augment_strength` (built on first use),
    the callbacks it needs (--augment_warmup_epochs: each trial ramps it from epoch 0), and
    with device input the feed of the replicas' steps (else None)."""
    key = float(augment_strength)
    if key not in self._train:
      config = dataclasses.replace(self.config, augment_strength=key)
      strength = task.augment_strength(config)
      callbacks = task.augment_callbacks(config, strength)
      if self.placement().where == "device":
        train, feed = task.device_train_input(self.strategy, config, self.info,
                                              self.class_weights, strength)
      else:
        train, feed = task.train_input(self.strategy, config, self.info, self.class_weights,
                                       strength), None
      self._train[key] = (train, callbacks, feed)
      self.builds.append(f"train@{key:g}")
    return self._train[key]

  def validation(self) -> tf.data.Dataset:
    """What trials are scored on, unaugmented, one-hot (built on first use): the holdout
    slice of train, or PublicTest."""
    if self._validation is None:
      if self.holdout is None:
        self._validation = task.validation_input(self.config, self.info)
        self.builds.append("validation")
      else:
        pipeline = {**self.info.pipeline, "example_filter": self.holdout.predicate(inside=True)}
        batches = -(-len(self.holdout.ids) // self.config.batch_size)
        # Filtered, the size is unknown to tf.data; stated (and checked), Keras evaluates it
        # without "ran out of data" warnings.
        self._validation = data.make_dataset(
            "train", batch_size=self.config.batch_size, training=False, **pipeline,
        ).map(task.one_hot(self.num_classes)).apply(
            tf.data.experimental.assert_cardinality(batches))
        self.builds.append("holdout")
    return self._validation


class _EpochTimer(keras.callbacks.Callback):
  """Wall time of every epoch: the first one also pays tracing and filling the cache."""

  def __init__(self) -> None:
    super().__init__()
    self.seconds: list[float] = []
    self._start = 0.0

  def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    self.seconds.append(time.perf_counter() - self._start)


class FerHyperModel(kt.HyperModel):
  """improved_cnn (or another model with the searched hparams) as a KerasTuner HyperModel.

  `pipelines` is None in the chief oracle, which never trains.
  """

  def __init__(self, settings: SweepSettings, pipelines: Pipelines | None = None,
               strategy: tf.distribute.Strategy | None = None) -> None:
    super().__init__(name=settings.train.model)
    self.settings, self.pipelines = settings, pipelines
    self.strategy = strategy or tf.distribute.get_strategy()
    self.defaults = models.default_hparams(settings.train.model)
    self._execution = 0
    self.fit_seconds: list[float] = []  # per execution of the current trial
    self.epoch_seconds: list[list[float]] = []

  def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
    search_space.declare(self.settings.space, hp, self.defaults)

  def begin_trial(self) -> None:
    """Called by the tuner before a trial's executions (they get seeds --seed, --seed+1, ...)."""
    self._execution = 0
    self.fit_seconds, self.epoch_seconds = [], []

  def trial_config(self, hp: kt.HyperParameters) -> TrainConfig:
    """The sweep's TrainConfig with this trial's values (what trainers.main would run)."""
    model_hparams, training = search_space.split_values(self.settings.space, hp.values)
    return dataclasses.replace(self.settings.train, hparams=model_hparams,
                               epochs=self.settings.trial_epochs,
                               seed=self.settings.train.seed + self._execution, **training)

  def build(self, hp: kt.HyperParameters) -> keras.Model:
    if self.pipelines is None:
      raise RuntimeError("the chief oracle does not build models")
    config = self.trial_config(hp)
    self._execution += 1
    # KerasTuner clears the Keras session before every build, which resets the dtype policy.
    keras.mixed_precision.set_global_policy(task.precision_policy(config.mixed_precision))
    return task.build_model(config, self.strategy, self.pipelines.num_classes,
                             self.pipelines.steps_per_epoch)

  def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any,
          **kwargs: Any) -> dict[str, float]:
    """Trains on the shared pipelines; returns the best epoch's metrics and the fit time."""
    del args  # the data comes from self.pipelines, not from search()
    assert self.pipelines is not None
    config = self.trial_config(hp)
    timer = _EpochTimer()
    train, input_callbacks, feed = self.pipelines.train(config.augment_strength)
    # --ema: trials are scored on the averaged weights, as trainers.main validates.
    callbacks = [*input_callbacks, *([keras.callbacks.SwapEMAWeights()] if config.ema else []),
                 *kwargs.get("callbacks", []), timer]
    epochs, initial_epoch = kwargs.get("epochs", config.epochs), kwargs.get("initial_epoch", 0)
    start = time.perf_counter()
    if feed is not None:  # device input: indices, fed in our loop's step (as train.py)
      history = custom_loop.fit(
          model, self.strategy, train, self.pipelines.validation(), epochs=epochs,
          steps_per_epoch=self.pipelines.steps_per_epoch, initial_epoch=initial_epoch,
          callbacks=callbacks, steps_per_execution=config.steps_per_execution,
          jit_compile=config.jit_compile, verbose=kwargs.get("verbose", 2), feed=feed)
    else:
      history = model.fit(
          train, epochs=epochs, initial_epoch=initial_epoch,
          steps_per_epoch=self.pipelines.steps_per_epoch,
          validation_data=self.pipelines.validation(), callbacks=callbacks,
          verbose=kwargs.get("verbose", 2),
          shuffle=False,  # make_dataset shuffles
      )
    self.fit_seconds.append(time.perf_counter() - start)
    self.epoch_seconds.append(timer.seconds)
    return best_epoch_metrics(history.history, self.fit_seconds[-1])


def best_epoch_metrics(history: dict[str, list[float]], fit_seconds: float) -> dict[str, float]:
  """The metrics of the epoch with the best validation accuracy, plus the fit time."""
  scores = history.get(OBJECTIVE) or []
  if not scores:
    raise ValueError(f"the fit produced no {OBJECTIVE} (no epoch ran?)")
  best = int(np.nanargmax(scores)) if not np.all(np.isnan(scores)) else 0
  metrics = {name: float(values[best]) for name, values in history.items()
             if len(values) == len(scores)}
  metrics["fit_seconds"] = float(fit_seconds)
  return metrics
