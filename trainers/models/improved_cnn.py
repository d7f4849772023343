"""The notebook's improved CNN, rebuilt layer for layer so its results can be compared."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from trainers.models.common import (
    CNN_IMAGE_SIZE,
    NUM_CLASSES,
    WeightsArg,
    check_filters,
    check_int,
    check_rate,
    classifier,
    weights_source,
    with_weights,
)

IMPROVED_CNN_CONVS = (1, 2, 2, 3)  # conv layers per block
# Mean and standard deviation of FER2013's train-split pixels on the [0, 1] scale the
# pipeline feeds (tests/test_realdata.py recomputes them from ../shared/data).
FER2013_PIXEL_MEAN = 0.5077
FER2013_PIXEL_STD = 0.2551


def improved_cnn(
    filters: Sequence[int] = (32, 64, 64, 128),
    dropout: float = 0.5,
    dense_units: int = 128,
    num_classes: int = NUM_CLASSES,
    weights: WeightsArg = "none",
) -> keras.Model:
  """The notebook's improved CNN, layer for layer (647,111 parameters at the defaults).

  Conv32 | pool | Conv64 x2 | pool | Conv64 x2 | pool | Conv128 x3 | pool | Dropout 0.5 |
  Flatten | Dense128 relu | Dense softmax; 3x3 kernels, same padding, relu.

  Hyperparameters (what a KerasTuner sweep searches):
    filters: filters of the 4 conv blocks, a list of 4 ints (a tuner builds it from
      4 scalar choices, e.g. ``[hp.Choice(f"filters_{i}", [32, 64, 128]) for i in
      range(4)]``; the list goes to ``--hparams`` JSON as is).
    dropout: rate of the dropout before Flatten, in [0, 1).
    dense_units: width of the hidden dense layer.

  One addition to the notebook: a fixed (non-trainable, parameter-free) input
  standardisation, (x - mean) / std with FER2013's train-split pixel statistics,
  that ships inside the saved model. Why: with no batch norm, Keras's default
  (Glorot) init and all-positive [0, 1] inputs, eight ReLU convs shrink the
  signal until the first epoch ends predicting the majority class (24.9%
  PublicTest, "happy"); centred, unit-scale inputs leave that plateau within
  the first epoch. docs/models.md has the measurements and their command.
  """
  filters = check_filters("filters", filters, len(IMPROVED_CNN_CONVS))
  dropout = check_rate("dropout", dropout)
  dense_units = check_int("dense_units", dense_units)
  num_classes = check_int("num_classes", num_classes, 2)
  source = weights_source(weights, "improved_cnn", imagenet=False)

  inputs = keras.Input((CNN_IMAGE_SIZE, CNN_IMAGE_SIZE, 1), name="image")
  x = layers.Normalization(mean=FER2013_PIXEL_MEAN, variance=FER2013_PIXEL_STD**2,
                           name="standardize")(inputs)
  for block, (width, convs) in enumerate(zip(filters, IMPROVED_CNN_CONVS, strict=True), 1):
    for conv in range(1, convs + 1):
      x = layers.Conv2D(
          width, 3, padding="same", activation="relu", name=f"block{block}_conv{conv}"
      )(x)
    x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
  x = layers.Dropout(dropout, name="dropout")(x)
  x = layers.Flatten(name="flatten")(x)
  x = layers.Dense(dense_units, activation="relu", name="dense")(x)
  return with_weights(keras.Model(inputs, classifier(x, num_classes), name="improved_cnn"), source)
