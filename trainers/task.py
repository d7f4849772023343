"""The training task's public pieces: data, model, loss, metrics, optimizer, class weights.

Why a task module (TF Model Garden's `tasks/image_classification.py`): a
training run (trainers.train), a multi-worker loop (trainers.custom_loop) and a
KerasTuner trial (tuning.hypermodel) must train exactly the same way, so each
piece is built here once, from a TrainConfig, and everyone calls these public
functions: `build_inputs`, `build_model` (compiled with `build_loss`,
`build_metrics` and `build_optimizer`), `class_weights`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from trainers import data, device_input, models
from trainers.cli import UsageError, one_line
from trainers.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What a run needs to know about its prepared dataset before it trains."""

  dataset: str  # the TFDS name (auto resolved)
  class_names: tuple[str, ...]
  train_examples: int
  steps_per_epoch: int  # after --max_steps_per_epoch
  pipeline: dict[str, Any]  # make_dataset's keyword arguments shared by every split

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def resolve_dataset(name: str, data_dir: str | None) -> str:
  """data.prepared_dataset, with its error as a UsageError (one line, exit 2)."""
  try:
    return data.prepared_dataset(name, data_dir)
  except ValueError as e:
    raise UsageError(str(e)) from None


def data_info(config: TrainConfig, dataset: str) -> DataInfo:
  """Class names, split size and steps per epoch of prepared `dataset` under `config`."""
  info = tfds.builder(dataset, data_dir=config.data_dir).info
  train_examples = info.splits["train"].num_examples
  steps = steps_per_epoch(config, train_examples, f"the train split of {dataset}")
  spec = models.MODELS[config.model]
  pipeline = dict(dataset=dataset, data_dir=config.data_dir, image_size=spec.image_size,
                  channels=spec.channels, seed=config.seed, deterministic=config.deterministic)
  return DataInfo(dataset, tuple(info.features["label"].names), train_examples, steps, pipeline)


def steps_per_epoch(config: TrainConfig, train_examples: int, what: str) -> int:
  """One pass over `train_examples` in full batches, capped by --max_steps_per_epoch."""
  steps = train_examples // config.batch_size
  if steps == 0:
    raise UsageError(f"--batch_size={config.batch_size} is larger than {what} "
                     f"({train_examples} examples)")
  if config.max_steps_per_epoch:
    steps = min(steps, config.max_steps_per_epoch)
  check_steps_per_execution(config.steps_per_execution, steps)
  return steps


def check_steps_per_execution(steps_per_execution: int, steps_per_epoch: int) -> None:
  """--steps_per_execution must divide the epoch's steps: Keras 3's `fit` otherwise rounds
  every epoch up to a multiple of it (3 steps per execution, 1 step per epoch: 3 optimizer
  steps an epoch; keras-team/keras#20861), so an epoch would not be one pass."""
  if steps_per_epoch % steps_per_execution == 0:
    return
  divisors = [d for d in range(1, steps_per_epoch + 1) if steps_per_epoch % d == 0]
  below = [d for d in divisors if d <= steps_per_execution]
  raise UsageError(
      f"--steps_per_execution={steps_per_execution} does not divide the {steps_per_epoch} "
      f"steps of an epoch (Keras would train extra steps each epoch); use a divisor of "
      f"{steps_per_epoch}, such as {below[-1]}"
      + (f" or {divisors[len(below)]}" if len(below) < len(divisors) else ""))


def precision_policy(mixed: bool) -> str:
  """Keras dtype policy of --mixed_precision: float16 on GPUs, bfloat16 on CPUs."""
  if not mixed:
    return "float32"
  return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


# --- inputs ------------------------------------------------------------------------------------


def one_hot(num_classes: int, weights: np.ndarray | None = None) -> Any:
  """(images, labels) -> (images, one-hot labels[, per-example class weight])."""
  table = None if weights is None else tf.constant(weights, tf.float32)

  def convert(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
    encoded = tf.one_hot(labels, num_classes)
    if table is None:
      return images, encoded
    return images, encoded, tf.gather(table, labels)

  return convert


class AugmentWarmup(keras.callbacks.Callback):
  """--augment_warmup_epochs: sets the training input's strength at each epoch's start.

  By epoch number, so a resumed run (BackupAndRestore) trains each epoch at the
  strength of an uninterrupted one.
  """

  def __init__(self, variable: tf.Variable, strength: float, warmup_epochs: int) -> None:
    super().__init__()
    self.variable, self.strength, self.warmup_epochs = variable, strength, warmup_epochs

  def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
    self.variable.assign(warmup_strength(self.strength, self.warmup_epochs, epoch))


def warmup_strength(strength: float, warmup_epochs: int, epoch: int) -> float:
  """Epoch `epoch`'s augmentation strength: strength * epoch / warmup_epochs, at most strength."""
  return strength if warmup_epochs <= 0 else strength * min(1.0, epoch / warmup_epochs)


def augment_strength(config: TrainConfig) -> float | tf.Variable:
  """The training input's strength: a variable that AugmentWarmup ramps, or a fixed number
  (no warmup, no augmentation, or the tf.data service, whose workers cannot read it)."""
  if not (config.augment_warmup_epochs and config.augment_strength):
    return config.augment_strength
  if config.data_service:
    logging.warning("--augment_warmup_epochs does not apply with --data_service: the "
                    "service's workers augment at --augment_strength from the start.")
    return config.augment_strength
  with tf.device("/cpu:0"):  # the host pipeline reads it
    return tf.Variable(0.0, trainable=False, dtype=tf.float32, name="augment_strength")


def augment_callbacks(config: TrainConfig, strength: float | tf.Variable) -> list[Any]:
  """The callback that ramps a variable `strength` (none for a fixed one)."""
  if not isinstance(strength, tf.Variable):
    return []
  return [AugmentWarmup(strength, config.augment_strength, config.augment_warmup_epochs)]


def train_input(strategy: tf.distribute.Strategy, config: TrainConfig, info: DataInfo,
                weights: np.ndarray | None, strength: float | tf.Variable | None = None) -> Any:
  """The repeated training input, one pipeline per worker with per-replica batches.

  One-hot labels (for label smoothing) and class weights are mapped in before
  distribution; repeated, so that steps_per_epoch (--max_steps_per_epoch)
  never runs a pass dry mid-epoch. `strength`: from `augment_strength` (default:
  --augment_strength, fixed).
  """
  return data.distributed_dataset(
      strategy, "train", global_batch_size=config.batch_size, training=True,
      augment_strength=config.augment_strength if strength is None else strength,
      map_fn=one_hot(info.num_classes, weights), repeat=True,
      data_service=config.data_service, **info.pipeline)


def validation_input(config: TrainConfig, info: DataInfo) -> tf.data.Dataset:
  """PublicTest, unaugmented, in order, one-hot: what fit validates on each epoch."""
  return data.make_dataset("validation", batch_size=config.batch_size, training=False,
                           **info.pipeline).map(one_hot(info.num_classes))


@dataclasses.dataclass
class TrainInputs:
  """What training reads: `train` (distributed, endless), `validation` (local), the
  callbacks the input needs, and with device input the `feed` that turns the host's
  index batches into images inside each replica's step (None: `train` carries images)."""

  train: Any
  validation: tf.data.Dataset
  callbacks: list[Any]
  feed: device_input.Feed | None = None
  placement: device_input.Placement | None = None


def input_placement(config: TrainConfig, strategy: tf.distribute.Strategy,
                    info: DataInfo) -> device_input.Placement:
  """--input resolved for this run (device_input.choose), a UsageError when it cannot be."""
  try:
    return device_input.choose(config.input, strategy, info.train_examples,
                               config.data_service)
  except ValueError as e:
    raise UsageError(str(e)) from None


def device_train_input(strategy: tf.distribute.Strategy, config: TrainConfig, info: DataInfo,
                       weights: np.ndarray | None, strength: float | tf.Variable,
                       first_epoch: int = 0) -> tuple[Any, device_input.Feed]:
  """--input=device: (the distributed index batches, the replicas' feed), the split copied
  to every replica's device. Examples as `train_input`'s (info.pipeline's example_filter)."""
  images, labels = device_input.load_split(
      "train", dataset=info.dataset, data_dir=config.data_dir,
      example_filter=info.pipeline.get("example_filter"))
  resident = device_input.resident_images(strategy, images)
  feed = device_input.Feed(resident, image_size=info.pipeline["image_size"],
                           channels=info.pipeline["channels"], strength=strength)
  indices = device_input.distributed_index_dataset(
      strategy, labels, global_batch_size=config.batch_size,
      steps_per_epoch=info.steps_per_epoch, seed=config.seed, first_epoch=first_epoch,
      map_fn=one_hot(info.num_classes, weights))
  return indices, feed


def build_inputs(strategy: tf.distribute.Strategy, config: TrainConfig, info: DataInfo,
                 weights: np.ndarray | None, first_epoch: int = 0) -> TrainInputs:
  """The run's inputs at its --input placement (logged); `first_epoch`: where a resumed run
  starts (device input's order is by epoch number)."""
  strength = augment_strength(config)
  placement = input_placement(config, strategy, info)
  logging.info("Training input on the %s: %s.", placement.where, placement.reason)
  callbacks = augment_callbacks(config, strength)
  if placement.where == "device":
    train, feed = device_train_input(strategy, config, info, weights, strength, first_epoch)
    return TrainInputs(train, validation_input(config, info), callbacks, feed, placement)
  return TrainInputs(train_input(strategy, config, info, weights, strength),
                     validation_input(config, info), callbacks, None, placement)


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


def class_weights(config: TrainConfig, info: DataInfo) -> np.ndarray | None:
  """--class_weights: None, or balanced weights from the train split's label counts (logged)."""
  if config.class_weights != "balanced":
    return None
  counts = label_counts(info.dataset, config.data_dir, info.num_classes)
  weights = balanced_class_weights(counts)
  logging.info("Class weights (balanced) from train label counts %s: %s",
               dict(zip(info.class_names, counts.tolist(), strict=True)),
               dict(zip(info.class_names, np.round(weights, 3).tolist(), strict=True)))
  return weights


# --- model, loss, metrics, optimizer -------------------------------------------------------------


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


def build_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
  """--optimizer with the learning_rate schedule."""
  lr = learning_rate(config, steps_per_epoch)
  ema = {"use_ema": True, "ema_momentum": config.ema} if config.ema else {}
  if config.optimizer == "adam":
    return keras.optimizers.Adam(lr, **ema)
  if config.optimizer == "adamw":
    return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **ema)
  return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **ema)


def build_loss(config: TrainConfig) -> keras.losses.Loss:
  """Categorical cross-entropy on one-hot labels, with --label_smoothing."""
  return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)


def build_metrics() -> list[Any]:
  """The metrics of fit's logs and history.csv (validation accuracy picks best.keras)."""
  return ["accuracy"]


def build_model(config: TrainConfig, strategy: tf.distribute.Strategy, num_classes: int,
                steps_per_epoch: int) -> keras.Model:
  """The compiled model, its variables placed by `strategy`; a bad hparam is a UsageError."""
  with strategy.scope():
    # Seeded again here: creating a strategy can draw from Python's random module, and the
    # same seed must give the same initial weights under every strategy.
    keras.utils.set_random_seed(config.seed)
    try:
      model = models.build_model(config.model, num_classes=num_classes,
                                 weights=config.weights, sync_batch_norm=config.sync_batch_norm,
                                 **config.hparams)
    except (ValueError, OSError) as e:
      raise UsageError(f"--model={config.model}: {one_line(e)}") from None
    except Exception as e:
      if config.weights != "imagenet":
        raise
      # keras.applications raises a bare Exception when the download fails (offline).
      raise UsageError(f"--weights=imagenet: cannot get the ImageNet weights of "
                       f"{config.model}: {one_line(e)}") from None
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch),
        loss=build_loss(config),
        metrics=build_metrics(),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
  return model
