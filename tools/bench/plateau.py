r"""Does improved_cnn leave the majority-class plateau? Input scale and init, epoch by epoch.

improved_cnn has no batch norm; the notebook fed it [0, 1] pixels with Keras's
default Glorot init, and with the trainer's defaults (batch 64, Adam 1e-3,
augmentation on) its first FER2013 epoch ended predicting only "happy". The
shipped model standardises its input inside the model (`standardize` layer).
This command trains each variant below from the same seed with the trainer's
input pipeline (trainers.data.make_dataset) and prints, per variant, the
PublicTest accuracy after each epoch and the share of its most predicted class
(1.00: every image gets one class, the plateau), next to the share of
PublicTest's majority class.

  base    the notebook's model: [0, 1] inputs, no `standardize` layer
  std     the model as shipped: (x - mean) / std inside the model
  he      base with He-uniform init of the hidden convs and dense layer
  he_std  std with He-uniform init
  x255    base fed raw 0-255 pixels (the notebook's Keras-1 era scale)

    python -m tools.bench.plateau --variants=base,std,he,he_std,x255 --epochs=1
    python -m tools.bench.plateau --variants=std --augment_strength=0   # no augmentation

The optimiser is Adam at a constant --learning_rate (the trainer decays it by
cosine over the run; within one epoch the two hardly differ). docs/models.md
has the figures.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from absl import flags

from trainers import cli

FLAGS = flags.FLAGS
VARIANTS = ("base", "std", "he", "he_std", "x255")
STANDARDIZE = "standardize"  # the layer of trainers/models/improved_cnn.py


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_list("variants", list(VARIANTS), f"Model variants to train: {', '.join(VARIANTS)}.")
  cli.define_dataset_flags()
  flags.DEFINE_integer("epochs", 1, "Epochs per variant.", lower_bound=1)
  flags.DEFINE_integer("batch_size", 64, "Training batch size (the trainer's default).",
                       lower_bound=1)
  flags.DEFINE_float("learning_rate", 1e-3, "Adam's (constant) learning rate.", lower_bound=0.0)
  flags.DEFINE_float("augment_strength", 1.0, "The trainer's augmentation scale; 0: off.",
                     lower_bound=0.0)
  flags.DEFINE_integer("seed", 0, "Seed of weights, shuffling and augmentation.")
  flags.DEFINE_integer("max_steps_per_epoch", 0,
                       "Cap on training steps per epoch (0: the whole train split). Smoke runs.",
                       lower_bound=0)


def without_standardize(model: Any) -> Any:
  """`model` fed [0, 1] pixels directly: its layers after `standardize`, on a new input.

  improved_cnn is a chain, so calling its remaining layers in order rebuilds it
  with the same (already initialised) weights as the shipped model.
  """
  import keras

  names = [layer.name for layer in model.layers]
  if STANDARDIZE not in names:
    raise ValueError(f"{model.name} has no {STANDARDIZE!r} layer")
  inputs = keras.Input(model.input_shape[1:], name="image")
  x = inputs
  for layer in model.layers[names.index(STANDARDIZE) + 1:]:
    x = layer(x)
  return keras.Model(inputs, x, name=f"{model.name}_unstandardized")


def he_init(model: Any) -> Any:
  """A clone of `model` with He-uniform kernels in every conv and hidden dense layer.

  The softmax layer (`predictions`) keeps Glorot, as in the probe this reproduces.
  """
  import keras
  from keras import layers

  def clone(layer: Any) -> Any:
    config = layer.get_config()
    if isinstance(layer, layers.Conv2D | layers.Dense) and layer.name != "predictions":
      config["kernel_initializer"] = "he_uniform"
    return layer.__class__.from_config(config)

  return keras.models.clone_model(model, clone_function=clone)


def build_variant(variant: str, seed: int) -> Any:
  """improved_cnn as `variant` (see the module docstring), weights drawn from `seed`."""
  import keras
  from keras import layers

  from trainers import models

  keras.utils.set_random_seed(seed)
  shipped = models.improved_cnn()
  if variant == "std":
    return shipped
  if variant in ("he", "he_std"):
    keras.utils.set_random_seed(seed)
    cloned = he_init(shipped)
    return cloned if variant == "he_std" else without_standardize(cloned)
  base = without_standardize(shipped)
  if variant == "base":
    return base
  if variant == "x255":
    inputs = keras.Input(base.input_shape[1:], name="image")
    return keras.Model(inputs, base(layers.Rescaling(255.0, name="to_0_255")(inputs)),
                       name="improved_cnn_x255")
  raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")


def evaluate(model: Any, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  """(accuracy, share of the most predicted class) of `model` on the validation arrays."""
  predicted = np.argmax(model.predict(images, batch_size=256, verbose=0), axis=-1)
  top_share = np.bincount(predicted).max() / len(predicted)
  return float(np.mean(predicted == labels)), float(top_share)


def train_variant(variant: str, dataset: str, validation: tuple[np.ndarray, np.ndarray]
                  ) -> dict[str, Any]:
  """Trains `variant` for --epochs; PublicTest accuracy and top-class share after each."""
  import keras
  import tensorflow as tf

  from trainers import data

  train = data.make_dataset(
      "train", dataset=dataset, data_dir=FLAGS.data_dir, batch_size=FLAGS.batch_size,
      training=True, augment_strength=FLAGS.augment_strength, seed=FLAGS.seed)
  train = train.map(lambda x, y: (x, tf.one_hot(y, 7)))
  if FLAGS.max_steps_per_epoch:
    train = train.take(FLAGS.max_steps_per_epoch)
  model = build_variant(variant, FLAGS.seed)
  model.compile(keras.optimizers.Adam(FLAGS.learning_rate), "categorical_crossentropy",
                metrics=["accuracy"])
  accuracy, top_share = [], []

  class Validate(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
      acc, share = evaluate(self.model, *validation)
      accuracy.append(round(acc, 4))
      top_share.append(round(share, 4))

  start = time.perf_counter()
  history = model.fit(train, epochs=FLAGS.epochs, callbacks=[Validate()], verbose=0,
                      shuffle=False)  # make_dataset shuffles
  return {"variant": variant, "val_acc": accuracy, "top_class_share": top_share,
          "train_acc": [round(a, 4) for a in history.history["accuracy"]],
          "s": round(time.perf_counter() - start)}


def validation_arrays(dataset: str) -> tuple[np.ndarray, np.ndarray]:
  """PublicTest (the validation split) as float images and int labels, in stored order."""
  from trainers import data

  ds = data.make_dataset("validation", dataset=dataset, data_dir=FLAGS.data_dir,
                         batch_size=256, training=False)
  images, labels = zip(*((x.numpy(), y.numpy()) for x, y in ds), strict=True)
  return np.concatenate(images), np.concatenate(labels)


def main(argv: list[str]) -> None:
  del argv  # cli.parse_flags has rejected positional arguments
  unknown = [v for v in FLAGS.variants if v not in VARIANTS]
  if unknown or not FLAGS.variants:
    raise cli.UsageError(f"--variants: unknown {', '.join(unknown) or '(none given)'}; "
                         f"expected some of {', '.join(VARIANTS)}")
  from trainers.task import resolve_dataset

  dataset = resolve_dataset(FLAGS.dataset, FLAGS.data_dir)
  validation = validation_arrays(dataset)
  counts = np.bincount(validation[1], minlength=7)
  print(f"dataset {dataset}: PublicTest {len(validation[1])} images, majority class "
        f"{int(np.argmax(counts))} = {counts.max() / counts.sum():.4f} of them; batch "
        f"{FLAGS.batch_size}, Adam {FLAGS.learning_rate:g}, augment_strength "
        f"{FLAGS.augment_strength:g}, seed {FLAGS.seed}", flush=True)
  for variant in FLAGS.variants:
    print(json.dumps(train_variant(variant, dataset, validation)), flush=True)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
