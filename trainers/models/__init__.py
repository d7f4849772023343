"""Model registry for the trainer's ``--model`` flag.

Every model takes float32 images scaled to [0, 1] of shape
``(spec.image_size, spec.image_size, spec.channels)`` and ends in
``Dense(num_classes, activation="softmax", dtype="float32")``, so the output stays
float32 under a ``mixed_float16`` policy. Preprocessing a backbone needs is built
from stock Keras layers and ops inside the model, so a saved ``.keras`` file
reloads with plain ``keras.saving.load_model`` (no ``custom_objects``, no Lambda).

Hyperparameters are keyword arguments whose values are JSON scalars or lists (the
trainer's ``--hparams=FILE`` feeds them); ``build_model`` rejects unknown names and
the builders reject bad values, each with a one-line ``ValueError``.

``weights``: ``"none"`` (random init), ``"imagenet"`` (backbone models only;
downloads through keras.applications, so it needs internet), or the path of a
``.weights.h5`` or ``.keras`` file saved from the same model with the same
hyperparameters (full-model weights, for example to resume or evaluate).

``sync_batch_norm=True`` makes every ``BatchNormalization`` layer of the built model,
the keras.applications backbones' included, synchronised across the replicas of a
tf.distribute strategy (``synchronize_batch_norm``): the builders stay as they are.

One file per model family: improved_cnn.py and vgg_style.py (the notebook's
CNNs), fer_net.py (our own), transfer.py (MobileNetV2, ResNet50); common.py holds
what they share. What each model is and costs: docs/models.md, whose parameter
and multiply-add table ``python -m trainers.models`` prints.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from trainers.models.common import (
    BN_MOMENTUM,
    CNN_IMAGE_SIZE,
    NUM_CLASSES,
    WeightsArg,
)
from trainers.models.fer_net import fer_net
from trainers.models.improved_cnn import IMPROVED_CNN_CONVS, improved_cnn
from trainers.models.transfer import BACKBONE_IMAGE_SIZE, CAFFE_BGR_MEAN, mobilenet_v2, resnet50
from trainers.models.vgg_style import vgg_style

__all__ = [
    "BACKBONE_IMAGE_SIZE",
    "BN_MOMENTUM",
    "CAFFE_BGR_MEAN",
    "CNN_IMAGE_SIZE",
    "IMPROVED_CNN_CONVS",
    "MODELS",
    "NUM_CLASSES",
    "ModelSpec",
    "WeightsArg",
    "build_model",
    "count_macs",
    "default_hparams",
    "fer_net",
    "improved_cnn",
    "mobilenet_v2",
    "resnet50",
    "synchronize_batch_norm",
    "vgg_style",
]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the trainer needs to know about a registered model."""

  build: Callable[..., keras.Model]  # build(num_classes=7, weights="none", **hparams)
  image_size: int  # input height = width the model expects
  channels: int  # 1 (grayscale) or 3 (pretrained backbones)
  hparams: tuple[str, ...]  # names of the tunable keyword arguments
  description: str


def _hparams_of(build: Callable[..., keras.Model]) -> tuple[str, ...]:
  """The builder's keyword arguments other than num_classes and weights, in order."""
  names = inspect.signature(build).parameters
  return tuple(n for n in names if n not in ("num_classes", "weights"))


def _spec(build: Callable[..., keras.Model], size: int, channels: int, text: str) -> ModelSpec:
  return ModelSpec(build, size, channels, _hparams_of(build), text)


MODELS: dict[str, ModelSpec] = {
    "improved_cnn": _spec(
        improved_cnn, CNN_IMAGE_SIZE, 1, "the notebook's improved CNN (8 convs, 647,111 params)"
    ),
    "vgg_style": _spec(
        vgg_style, CNN_IMAGE_SIZE, 1, "the notebook's VGG-like net (8 convs + BN, 528,295 params)"
    ),
    "fer_net": _spec(
        fer_net, CNN_IMAGE_SIZE, 1, "residual CNN with BN and global pooling (708,359 params)"
    ),
    "mobilenet_v2": _spec(
        mobilenet_v2, BACKBONE_IMAGE_SIZE, 3, "MobileNetV2 transfer model on 96x96 RGB"
    ),
    "resnet50": _spec(resnet50, BACKBONE_IMAGE_SIZE, 3, "ResNet50 transfer model on 96x96 RGB"),
}


def _unknown_model(name: str) -> ValueError:
  return ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")


def build_model(
    name: str,
    *,
    num_classes: int = NUM_CLASSES,
    weights: WeightsArg = "none",
    sync_batch_norm: bool = False,
    **hparams: Any,
) -> keras.Model:
  """Builds registered model `name`; unknown names and hyperparameters raise ValueError.

  `sync_batch_norm`: batch norm with the global batch's statistics under a
  tf.distribute strategy (``synchronize_batch_norm``).
  """
  spec = MODELS.get(name)
  if spec is None:
    raise _unknown_model(name)
  unknown = sorted(set(hparams) - set(spec.hparams))
  if unknown:
    raise ValueError(
        f"unknown hyperparameter(s) {', '.join(unknown)} for model {name!r}; "
        f"valid: {', '.join(spec.hparams)}"
    )
  model = spec.build(num_classes=num_classes, weights=weights, **hparams)
  if sync_batch_norm:
    synchronize_batch_norm(model)
  return model


def synchronize_batch_norm(model: keras.Model) -> int:
  """Sets ``synchronized=True`` on every BatchNormalization layer of `model`, nested models
  (the transfer backbones) included; returns how many.

  In training, a synchronised layer all-reduces the sum, the sum of squares and the count of
  its inputs over the replicas of the surrounding tf.distribute strategy, so every replica
  normalises with the global batch's mean and variance and updates the same moving
  statistics; with one replica, or outside a strategy, its statistics are the same up to
  rounding (computed as E[x^2] - E[x]^2).
  Keras reads the attribute at each call and saves it in the layer's config, so a saved
  model reloads with stock Keras (TensorFlow backend: Keras accepts ``synchronized=True``
  only there). Why after the build rather than an argument of every builder: one place,
  and keras.applications creates the backbones' layers itself.
  """
  if keras.backend.backend() != "tensorflow":
    raise ValueError("sync_batch_norm needs the TensorFlow backend of Keras, not "
                     f"{keras.backend.backend()}")
  count = 0
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      count += synchronize_batch_norm(layer)
    elif isinstance(layer, layers.BatchNormalization):
      layer.synchronized = True
      count += 1
  return count


def default_hparams(name: str) -> dict[str, Any]:
  """The defaults of `name`'s hyperparameters, JSON-ready (tuples as lists)."""
  spec = MODELS.get(name)
  if spec is None:
    raise _unknown_model(name)
  parameters = inspect.signature(spec.build).parameters
  defaults = {n: parameters[n].default for n in spec.hparams}
  return {n: list(v) if isinstance(v, tuple) else v for n, v in defaults.items()}


def count_macs(model: keras.Model) -> int:
  """Multiply-adds of one forward pass for one image (Conv2D, DepthwiseConv2D, Dense).

  Nested models (the backbones) are walked; batch norm, pooling and activations
  are not counted, as usual for MAC figures.
  """
  total = 0
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      total += count_macs(layer)
    elif isinstance(layer, layers.DepthwiseConv2D):
      _, height, width, channels = layer.output.shape
      kh, kw = layer.kernel_size
      total += height * width * kh * kw * channels
    elif isinstance(layer, layers.Conv2D):
      _, height, width, out_channels = layer.output.shape
      in_channels = layer.input.shape[-1]
      kh, kw = layer.kernel_size
      total += height * width * kh * kw * in_channels * out_channels // layer.groups
    elif isinstance(layer, layers.Dense):
      total += layer.input.shape[-1] * layer.units
  return int(total)
