"""fer_net: our own small residual CNN, sized for training on a few CPU cores."""

from __future__ import annotations

import keras
from keras import layers

from trainers.models.common import (
    BN_MOMENTUM,
    CNN_IMAGE_SIZE,
    NUM_CLASSES,
    WeightsArg,
    check_int,
    check_rate,
    classifier,
    conv_bn_relu,
    weights_source,
    with_weights,
)


def fer_net(
    base_filters: int = 24,
    dropout: float = 0.4,
    dense_units: int = 128,
    num_classes: int = NUM_CLASSES,
    weights: WeightsArg = "none",
) -> keras.Model:
  """A small residual CNN for FER2013 on a CPU budget (708,359 params, 56.3 M MACs/image).

  Stem Conv(b)-BN-ReLU at 48x48, then three residual stages at 24x24 (2b), 12x12
  (4b) and 6x6 (8b), each: max-pool, Conv3x3-BN-ReLU, Conv3x3-BN, plus a 1x1
  Conv-BN shortcut, add, ReLU. Then GlobalAveragePooling | Dropout |
  Dense(dense_units)-ReLU | Dropout | Dense softmax.

  Why this shape: at the same forward cost as improved_cnn (56.6 M MACs), the
  compute goes to convolutions (each stage ~18.6 M MACs, the 48x48 stem 0.5 M)
  rather than to improved_cnn's 1152x128 dense layer, and the widest layer (192
  channels) sits at 6x6 where it is cheap. Batch norm and the residual shortcuts
  are there to make it learn in the few epochs a 2-core CPU affords, and global
  pooling keeps the head small so dropout regularises features, not a huge dense
  layer. ``base_filters=32`` gives 1.25 M params and 99.8 M MACs; 16 gives 25 M
  MACs. Its accuracy and epoch time next to improved_cnn are not quoted here: no
  committed command reproduces them (docs/models.md).

  Hyperparameters: ``base_filters`` (b; widths b, 2b, 4b, 8b), ``dropout`` (both
  head dropouts), ``dense_units`` (0 drops the hidden dense layer).
  """
  base_filters = check_int("base_filters", base_filters)
  dropout = check_rate("dropout", dropout)
  dense_units = check_int("dense_units", dense_units, 0)
  num_classes = check_int("num_classes", num_classes, 2)
  source = weights_source(weights, "fer_net", imagenet=False)

  inputs = keras.Input((CNN_IMAGE_SIZE, CNN_IMAGE_SIZE, 1), name="image")
  x = conv_bn_relu(inputs, base_filters, "stem")
  for stage, width in enumerate((2 * base_filters, 4 * base_filters, 8 * base_filters), 1):
    name = f"stage{stage}"
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    shortcut = layers.Conv2D(width, 1, name=f"{name}_shortcut_conv")(x)
    shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_shortcut_bn")(shortcut)
    x = conv_bn_relu(x, width, f"{name}_1")
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_2_bn")(x)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    x = layers.Activation("relu", name=f"{name}_out")(x)
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  x = layers.Dropout(dropout, name="pool_dropout")(x)
  if dense_units:
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dense_dropout")(x)
  return with_weights(keras.Model(inputs, classifier(x, num_classes), name="fer_net"), source)
