"""Transfer models: a keras.applications backbone (MobileNetV2, ResNet50) plus a small head.

Why here and not in the CNN files: these take 96x96 RGB, can start from ImageNet
weights, and carry the backbone's own input preprocessing inside the model.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from trainers.models.common import (
    BN_MOMENTUM,
    NUM_CLASSES,
    WeightsArg,
    check_bool,
    check_int,
    check_rate,
    classifier,
    weights_source,
    with_weights,
)

# The backbones see the 48x48 faces upsampled 2x and tiled to RGB by the input
# pipeline. 96 is the smallest size keras.applications has MobileNetV2 ImageNet
# weights for, leaves both backbones (stride 32) a 3x3 final feature map rather
# than 1x1 or 2x2, and costs (96/224)^2 = 18% of the usual 224x224 compute, which
# decides whether a 2-core CPU can train them at all.
BACKBONE_IMAGE_SIZE = 96
# ImageNet channel means in BGR order, on the 0..255 scale (caffe preprocessing).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def _transfer_model(
    name: str,
    backbone: Callable[..., keras.Model],
    preprocess: Callable[[keras.KerasTensor], keras.KerasTensor],
    num_classes: int,
    weights: WeightsArg,
    dropout: float,
    dense_units: int,
    freeze_backbone: bool,
    **backbone_kwargs: Any,
) -> keras.Model:
  """[0, 1] RGB -> backbone preprocessing -> keras.applications backbone -> small head.

  The backbone is the nested model named "backbone", so a trainer can freeze or
  unfreeze it between fine-tuning phases (``model.get_layer("backbone")``). Frozen,
  it also runs its batch norm in inference mode (the Keras transfer-learning
  recipe); unfrozen, batch norm adapts to faces, which random init needs anyway.
  """
  dropout = check_rate("dropout", dropout)
  dense_units = check_int("dense_units", dense_units)
  freeze_backbone = check_bool("freeze_backbone", freeze_backbone)
  num_classes = check_int("num_classes", num_classes, 2)
  source = weights_source(weights, name, imagenet=True)

  size = BACKBONE_IMAGE_SIZE
  inputs = keras.Input((size, size, 3), name="image")
  base = backbone(
      include_top=False,
      weights="imagenet" if source == "imagenet" else None,
      input_shape=(size, size, 3),
      name="backbone",
      **backbone_kwargs,
  )
  base.trainable = not freeze_backbone
  if not freeze_backbone:
    # keras.applications' batch norm momentum (MobileNetV2 0.999, ResNet50 0.99) needs
    # thousands of steps before the moving statistics that evaluation uses describe the
    # trained weights: MobileNetV2 from scratch then validated on the majority class for 3
    # FER2013 epochs while it trained. The project's BN_MOMENTUM instead (docs/models.md).
    for layer in base.layers:
      if isinstance(layer, layers.BatchNormalization):
        layer.momentum = BN_MOMENTUM
  x = preprocess(inputs)
  x = base(x, training=False) if freeze_backbone else base(x)
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  x = layers.Dropout(dropout, name="pool_dropout")(x)
  x = layers.Dense(dense_units, activation="relu", name="dense")(x)
  x = layers.Dropout(dropout, name="dense_dropout")(x)
  return with_weights(keras.Model(inputs, classifier(x, num_classes), name=name), source)


def _to_minus_one_one(x: keras.KerasTensor) -> keras.KerasTensor:
  """[0, 1] -> [-1, 1], what MobileNetV2's preprocess_input produces from 0..255."""
  return layers.Rescaling(2.0, offset=-1.0, name="to_minus_one_one")(x)


def _caffe(x: keras.KerasTensor) -> keras.KerasTensor:
  """[0, 1] RGB -> 0..255 BGR minus the ImageNet mean (ResNet50's preprocess_input).

  The channel flip is a plain slice: Keras serialises it as its built-in GetItem
  op, so the saved model needs no custom layer.
  """
  x = layers.Rescaling(255.0, name="to_0_255")(x)
  x = x[..., ::-1]  # RGB -> BGR
  return layers.Normalization(mean=CAFFE_BGR_MEAN, variance=(1.0, 1.0, 1.0), name="caffe_mean")(x)


def mobilenet_v2(
    dropout: float = 0.3,
    dense_units: int = 128,
    freeze_backbone: bool = False,
    alpha: float = 1.0,
    num_classes: int = NUM_CLASSES,
    weights: WeightsArg = "none",
) -> keras.Model:
  """MobileNetV2 backbone on 96x96x3 plus a small head (2.42 M params, 55.2 M MACs).

  ``alpha`` is the width multiplier (ImageNet weights exist for 0.35, 0.5, 0.75,
  1.0, 1.3 and 1.4; 0.35 costs ~11 M MACs).
  """
  if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or alpha <= 0:
    raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
  return _transfer_model(
      "mobilenet_v2", keras.applications.MobileNetV2, _to_minus_one_one, num_classes, weights,
      dropout, dense_units, freeze_backbone, alpha=float(alpha),
  )


def resnet50(
    dropout: float = 0.3,
    dense_units: int = 128,
    freeze_backbone: bool = False,
    num_classes: int = NUM_CLASSES,
    weights: WeightsArg = "none",
) -> keras.Model:
  """ResNet50 backbone on 96x96x3 plus a small head (23.9 M params, 708.5 M MACs).

  The heavy option: 12.5x improved_cnn's compute per image, meant for a GPU or a
  frozen-backbone run.
  """
  return _transfer_model(
      "resnet50", keras.applications.ResNet50, _caffe, num_classes, weights, dropout,
      dense_units, freeze_backbone,
  )
