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

Parameters and forward multiply-adds per image (``count_macs``) at the defaults:

==============  ======  ==========  ========
model           input   params      MACs
==============  ======  ==========  ========
improved_cnn    48x48      647,111   56.6 M
vgg_style       48x48      528,295   69.7 M
fer_net         48x48      708,359   56.3 M
mobilenet_v2    96x96    2,422,855   55.2 M
resnet50        96x96   23,850,887  708.5 M
==============  ======  ==========  ========
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
from keras import layers

NUM_CLASSES = 7
CNN_IMAGE_SIZE = 48
# The backbones see the 48x48 faces upsampled 2x and tiled to RGB by the input
# pipeline. 96 is the smallest size keras.applications has MobileNetV2 ImageNet
# weights for, leaves both backbones (stride 32) a 3x3 final feature map rather
# than 1x1 or 2x2, and costs (96/224)^2 = 18% of the usual 224x224 compute, which
# decides whether a 2-core CPU can train them at all.
BACKBONE_IMAGE_SIZE = 96
# ImageNet channel means in BGR order, on the 0..255 scale (caffe preprocessing).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

WeightsArg = str | os.PathLike[str] | None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the trainer needs to know about a registered model."""

  build: Callable[..., keras.Model]  # build(num_classes=7, weights="none", **hparams)
  image_size: int  # input height = width the model expects
  channels: int  # 1 (grayscale) or 3 (pretrained backbones)
  hparams: tuple[str, ...]  # names of the tunable keyword arguments
  description: str


# --- argument checks: one-line ValueErrors that say what is allowed ---------------------------


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def _check_rate(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
    raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
  return float(value)


def _check_bool(name: str, value: Any) -> bool:
  if not isinstance(value, bool):
    raise ValueError(f"{name} must be true or false, got {value!r}")
  return value


def _check_filters(name: str, value: Any, count: int) -> tuple[int, ...]:
  """A list (JSON) or tuple of `count` positive ints, one per conv block."""
  if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != count:
    raise ValueError(f"{name} must be a list of {count} integers >= 1, got {value!r}")
  try:
    return tuple(_check_int(name, v) for v in value)
  except ValueError:
    raise ValueError(f"{name} must be a list of {count} integers >= 1, got {value!r}") from None


def _weights_source(weights: WeightsArg, model_name: str, imagenet: bool) -> str | Path | None:
  """Classifies `weights`: None (random init), "imagenet", or an existing file path."""
  if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
    return None
  if isinstance(weights, str) and weights.lower() == "imagenet":
    if not imagenet:
      raise ValueError(
          f"{model_name} has no imagenet weights; use 'none' or a weights file "
          f"(imagenet: {', '.join(n for n, s in MODELS.items() if s.channels == 3)})"
      )
    return "imagenet"
  if not isinstance(weights, str | os.PathLike):
    raise ValueError(f"weights must be 'none', 'imagenet' or a file path, got {weights!r}")
  path = Path(weights)
  if not path.is_file():
    raise ValueError(f"weights file {path} does not exist")
  if not (path.name.endswith(".weights.h5") or path.suffix == ".keras"):
    raise ValueError(f"weights file {path} must be a .weights.h5 or .keras file")
  return path


def _first_line(error: BaseException) -> str:
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


def _shape_difference(found: list[tuple[int, ...]], expected: list[tuple[int, ...]]) -> str:
  if len(found) != len(expected):
    return f"{len(found)} variables saved, {len(expected)} expected"
  index = next(i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b)
  return f"a saved variable has shape {found[index]} where {expected[index]} is expected"


def _load_weights_file(model: keras.Model, path: Path) -> None:
  """Loads full-model weights saved from the same architecture, or fails with a ValueError.

  Keras matches saved variables to layers by position and only complains when a
  shape differs, so the variable shapes are compared first: a file from another
  model (or other hyperparameters) fails loudly instead of half-loading.
  """
  expected = [tuple(w.shape) for w in model.weights]
  mismatch = f"weights file {path} does not match model {model.name} with these hyperparameters"
  if path.suffix == ".keras":
    try:
      saved = keras.saving.load_model(path, compile=False)
    except Exception as error:  # any unreadable file is an input error, not a crash
      raise ValueError(f"cannot read {path} as a .keras model: {_first_line(error)}") from error
    found = [tuple(w.shape) for w in saved.weights]
    if found != expected:
      raise ValueError(f"{mismatch} ({_shape_difference(found, expected)})")
    model.set_weights(saved.get_weights())
    return
  import h5py  # a Keras dependency; only needed here

  found: list[tuple[int, ...]] = []

  def collect(_: str, item: Any) -> None:
    if isinstance(item, h5py.Dataset):
      found.append(tuple(item.shape))

  try:
    with h5py.File(path, "r") as file:
      file.visititems(collect)
  except OSError as error:
    raise ValueError(f"cannot read {path} as a .weights.h5 file: {_first_line(error)}") from error
  if sorted(found) != sorted(expected):  # the file orders variables by layer path, not by model
    raise ValueError(f"{mismatch} ({_shape_difference(sorted(found), sorted(expected))})")
  try:
    model.load_weights(path)
  except Exception as error:  # a mismatch, reported with Keras' reason
    raise ValueError(f"{mismatch}: {_first_line(error)}") from error


def _finish(model: keras.Model, source: str | Path | None) -> keras.Model:
  if isinstance(source, Path):
    _load_weights_file(model, source)
  return model


# Keras's default (0.99) needs ~1,000 steps before the moving statistics that
# inference uses catch up; short runs (a quick start, a tuning trial of a few
# epochs at batch 64) then evaluate near chance while training accuracy is 64%.
BN_MOMENTUM = 0.9


def _classifier(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
  """The shared output: float32 softmax, so mixed precision keeps a float32 loss."""
  return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def _conv_bn_relu(x: keras.KerasTensor, width: int, name: str) -> keras.KerasTensor:
  x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv")(x)
  x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
  return layers.Activation("relu", name=f"{name}_relu")(x)


# --- the notebook's CNNs ---------------------------------------------------------------------

IMPROVED_CNN_CONVS = (1, 2, 2, 3)  # conv layers per block


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
  """
  filters = _check_filters("filters", filters, len(IMPROVED_CNN_CONVS))
  dropout = _check_rate("dropout", dropout)
  dense_units = _check_int("dense_units", dense_units)
  num_classes = _check_int("num_classes", num_classes, 2)
  source = _weights_source(weights, "improved_cnn", imagenet=False)

  inputs = keras.Input((CNN_IMAGE_SIZE, CNN_IMAGE_SIZE, 1), name="image")
  x = inputs
  for block, (width, convs) in enumerate(zip(filters, IMPROVED_CNN_CONVS, strict=True), 1):
    for conv in range(1, convs + 1):
      x = layers.Conv2D(
          width, 3, padding="same", activation="relu", name=f"block{block}_conv{conv}"
      )(x)
    x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
  x = layers.Dropout(dropout, name="dropout")(x)
  x = layers.Flatten(name="flatten")(x)
  x = layers.Dense(dense_units, activation="relu", name="dense")(x)
  return _finish(keras.Model(inputs, _classifier(x, num_classes), name="improved_cnn"), source)


def vgg_style(
    filters: Sequence[int] = (32, 32, 128, 128),
    dropout: float = 0.5,
    block_dropout: float = 0.25,
    dense_units: int = 128,
    num_classes: int = NUM_CLASSES,
    weights: WeightsArg = "none",
) -> keras.Model:
  """The notebook's 8-conv VGG-like net (528,295 parameters at the defaults).

  The notebook itself is lost; only "8 conv layers, VGG-like, 528,295 parameters"
  survives, so this layout was reconstructed from the parameter count. An
  enumeration over block layouts (2 to 5 blocks of 1 to 4 convs), widths, batch
  norm placement, padding, Flatten vs global pooling and dense heads of 0-2
  layers found no candidate with both doubling widths and a power-of-two head; the
  most VGG-like exact match is four blocks of two 3x3 convs (the classic 8-conv
  VGG layout) with batch norm after every conv and a one-layer head:

    [Conv32-BN-ReLU x2 | pool | drop] [Conv32 x2 ...] [Conv128 x2 ...] [Conv128 x2 ...]
    GlobalAveragePooling | Dense128-BN-ReLU | Dropout 0.5 | Dense softmax

  (conv and dense keep their biases before batch norm, as notebook code usually
  does). Exact alternatives rejected as less natural: the same eight convs as two
  4-conv stages (32 x4, 128 x4; 2 poolings, 4x the MACs), a 1-1-1-3-2 layout with
  widths 16-32-64-96-128, no batch norm and a Dense128-Dense64 head, and
  2-2-2-2 / 32-64-64-64 with a Dense192-Dense1024 head.

  Hyperparameters: ``filters`` (4 ints, one per 2-conv block), ``dropout`` (head),
  ``block_dropout`` (after every block), ``dense_units``.
  """
  filters = _check_filters("filters", filters, 4)
  dropout = _check_rate("dropout", dropout)
  block_dropout = _check_rate("block_dropout", block_dropout)
  dense_units = _check_int("dense_units", dense_units)
  num_classes = _check_int("num_classes", num_classes, 2)
  source = _weights_source(weights, "vgg_style", imagenet=False)

  inputs = keras.Input((CNN_IMAGE_SIZE, CNN_IMAGE_SIZE, 1), name="image")
  x = inputs
  for block, width in enumerate(filters, 1):
    for conv in (1, 2):
      x = _conv_bn_relu(x, width, f"block{block}_{conv}")
    x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = layers.Dropout(block_dropout, name=f"block{block}_dropout")(x)
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  x = layers.Dense(dense_units, name="dense")(x)
  x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="dense_bn")(x)
  x = layers.Activation("relu", name="dense_relu")(x)
  x = layers.Dropout(dropout, name="dropout")(x)
  return _finish(keras.Model(inputs, _classifier(x, num_classes), name="vgg_style"), source)


# --- our own model ---------------------------------------------------------------------------


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
  make it learn fast enough for the ~20 epochs that fit in an hour on 2 CPU
  cores, and global pooling keeps the head small so dropout regularises features,
  not a huge dense layer. Measured on FER2013 here (Adam 1e-3, batch 64, no
  augmentation, 3 epochs, PublicTest accuracy): fer_net 33.5/44.0/50.1% vs
  improved_cnn 24.9/27.5/41.2%, at 2.9 vs 1.6 min per epoch (batch norm costs
  time that MACs do not show; another job shared the 2 cores). ``base_filters=32``
  gives 1.25 M params and 99.8 M MACs but trained ~2x slower per image; 16 gives
  25 M MACs.

  Hyperparameters: ``base_filters`` (b; widths b, 2b, 4b, 8b), ``dropout`` (both
  head dropouts), ``dense_units`` (0 drops the hidden dense layer).
  """
  base_filters = _check_int("base_filters", base_filters)
  dropout = _check_rate("dropout", dropout)
  dense_units = _check_int("dense_units", dense_units, 0)
  num_classes = _check_int("num_classes", num_classes, 2)
  source = _weights_source(weights, "fer_net", imagenet=False)

  inputs = keras.Input((CNN_IMAGE_SIZE, CNN_IMAGE_SIZE, 1), name="image")
  x = _conv_bn_relu(inputs, base_filters, "stem")
  for stage, width in enumerate((2 * base_filters, 4 * base_filters, 8 * base_filters), 1):
    name = f"stage{stage}"
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    shortcut = layers.Conv2D(width, 1, name=f"{name}_shortcut_conv")(x)
    shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_shortcut_bn")(shortcut)
    x = _conv_bn_relu(x, width, f"{name}_1")
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_2_bn")(x)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    x = layers.Activation("relu", name=f"{name}_out")(x)
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  x = layers.Dropout(dropout, name="pool_dropout")(x)
  if dense_units:
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dense_dropout")(x)
  return _finish(keras.Model(inputs, _classifier(x, num_classes), name="fer_net"), source)


# --- transfer models -------------------------------------------------------------------------


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
  dropout = _check_rate("dropout", dropout)
  dense_units = _check_int("dense_units", dense_units)
  freeze_backbone = _check_bool("freeze_backbone", freeze_backbone)
  num_classes = _check_int("num_classes", num_classes, 2)
  source = _weights_source(weights, name, imagenet=True)

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
  x = preprocess(inputs)
  x = base(x, training=False) if freeze_backbone else base(x)
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  x = layers.Dropout(dropout, name="pool_dropout")(x)
  x = layers.Dense(dense_units, activation="relu", name="dense")(x)
  x = layers.Dropout(dropout, name="dense_dropout")(x)
  return _finish(keras.Model(inputs, _classifier(x, num_classes), name=name), source)


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


# --- registry --------------------------------------------------------------------------------


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
    name: str, *, num_classes: int = NUM_CLASSES, weights: WeightsArg = "none", **hparams: Any
) -> keras.Model:
  """Builds registered model `name`; unknown names and hyperparameters raise ValueError."""
  spec = MODELS.get(name)
  if spec is None:
    raise _unknown_model(name)
  unknown = sorted(set(hparams) - set(spec.hparams))
  if unknown:
    raise ValueError(
        f"unknown hyperparameter(s) {', '.join(unknown)} for model {name!r}; "
        f"valid: {', '.join(spec.hparams)}"
    )
  return spec.build(num_classes=num_classes, weights=weights, **hparams)


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
