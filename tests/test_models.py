"""The model registry: exact notebook architectures, the shared contract, weights loading.

Fast by design: the CNNs are tiny, and each backbone is built once per module with
random weights (no download; imagenet needs internet and is not tested here).
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from trainers import cli, models
from trainers.models import __main__ as table

CNNS = [name for name, spec in models.MODELS.items() if spec.channels == 1]
BACKBONES = [name for name, spec in models.MODELS.items() if spec.channels == 3]


def images(name, batch=2, seed=0):
  spec = models.MODELS[name]
  shape = (batch, spec.image_size, spec.image_size, spec.channels)
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def predict(model, x):
  return np.asarray(model(x, training=False))


def improved_cnn_params(filters, dense_units, num_classes=7):
  """Parameters of improved_cnn, counted by hand: convs, the 3x3xF4 flatten, the head."""
  f1, f2, f3, f4 = filters
  conv = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731
  convs = (conv(1, f1) + conv(f1, f2) + conv(f2, f2) + conv(f2, f3) + conv(f3, f3)
           + conv(f3, f4) + 2 * conv(f4, f4))
  return convs + (9 * f4 + 1) * dense_units + (dense_units + 1) * num_classes


@pytest.fixture(scope="module")
def backbone():
  """One random-init build per backbone for the whole module (ResNet50 takes seconds)."""
  built = {}

  def get(name):
    if name not in built:
      built[name] = models.build_model(name)
    return built[name]

  return get


# --- the notebook's architectures ------------------------------------------------------------


def test_improved_cnn_is_the_notebook_model():
  model = models.improved_cnn()
  assert model.count_params() == 647_111
  assert improved_cnn_params((32, 64, 64, 128), 128) == 647_111
  # The one addition: a fixed, parameter-free standardisation with FER2013's pixel statistics.
  standardize = model.layers[1]
  assert isinstance(standardize, layers.Normalization) and not standardize.weights
  images = np.full((1, 48, 48, 1), 0.5077 + 0.2551, np.float32)
  np.testing.assert_allclose(standardize(images).numpy(), 1.0, rtol=1e-5)
  sequence = []
  for layer in model.layers[2:]:
    if isinstance(layer, layers.Conv2D):
      assert layer.kernel_size == (3, 3) and layer.padding == "same"
      assert layer.activation.__name__ == "relu"
      sequence.append(f"Conv{layer.filters}")
    elif isinstance(layer, layers.Dense):
      sequence.append(f"Dense{layer.units}:{layer.activation.__name__}")
    elif isinstance(layer, layers.Dropout):
      sequence.append(f"Dropout{layer.rate}")
    else:
      sequence.append(type(layer).__name__)
  assert sequence == [
      "Conv32", "MaxPooling2D",
      "Conv64", "Conv64", "MaxPooling2D",
      "Conv64", "Conv64", "MaxPooling2D",
      "Conv128", "Conv128", "Conv128", "MaxPooling2D",
      "Dropout0.5", "Flatten", "Dense128:relu", "Dense7:softmax",
  ]
  assert models.count_macs(model) == 56_550_272


def test_vgg_style_is_an_8_conv_vgg_with_the_notebook_count():
  model = models.vgg_style()
  assert model.count_params() == 528_295
  convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
  assert len(convs) == 8
  assert all(conv.kernel_size == (3, 3) for conv in convs)
  assert [conv.filters for conv in convs] == [32, 32, 32, 32, 128, 128, 128, 128]
  assert sum(isinstance(layer, layers.MaxPooling2D) for layer in model.layers) == 4


# --- the table docs/models.md quotes (python -m trainers.models) ---------------------------


def test_table_prints_the_exact_counts_docs_quote(capsys):
  """The command's rows carry the tested counts, and docs/models.md holds them verbatim."""
  table.print_table(["improved_cnn", "vgg_style"])
  rows = capsys.readouterr().out.splitlines()
  assert rows[2:] == [
      "| improved_cnn | 48x48x1 | 647,111 | 56.6 M |",
      "| vgg_style | 48x48x1 | 528,295 | 69.7 M |",
  ]
  docs = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
  assert all(row in docs for row in rows)


def test_table_command_refuses_unknown_models(capsys):
  assert cli.run_in_process(["trainers.models", "nope"], table.main, positional=True) == 2
  assert "unknown model(s) nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    "filters, dense_units",
    [((16, 32, 32, 64), 64), ((32, 64, 128, 256), 256), ([8, 8, 8, 8], 1)],
)
def test_improved_cnn_hparams_change_the_count_as_computed(filters, dense_units):
  model = models.improved_cnn(filters=filters, dense_units=dense_units, dropout=0.2)
  assert model.count_params() == improved_cnn_params(filters, dense_units)
  assert models.improved_cnn(num_classes=3).count_params() == improved_cnn_params(
      (32, 64, 64, 128), 128, num_classes=3
  )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters": (-32, 64, 64, 128)}, "filters"),
        ({"filters": (32, 64, 0, 128)}, "filters"),
        ({"filters": (32, 64, 64)}, "filters"),
        ({"filters": (32, 64, 64.5, 128)}, "filters"),
        ({"filters": "32,64,64,128"}, "filters"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": "0.5"}, "dropout"),
        ({"dense_units": 0}, "dense_units"),
        ({"dense_units": 12.5}, "dense_units"),
        ({"dense_units": True}, "dense_units"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_improved_cnn_rejects_bad_values(kwargs, message):
  with pytest.raises(ValueError, match=message) as error:
    models.improved_cnn(**kwargs)
  assert "\n" not in str(error.value)


# --- the registry ----------------------------------------------------------------------------


def test_unknown_model_lists_the_valid_names():
  with pytest.raises(ValueError) as error:
    models.build_model("nope")
  message = str(error.value)
  assert "'nope'" in message and "\n" not in message
  for name in ("improved_cnn", "vgg_style", "fer_net", "mobilenet_v2", "resnet50"):
    assert name in message


def test_unknown_hparam_lists_the_valid_ones():
  with pytest.raises(ValueError, match="filterz") as error:
    models.build_model("improved_cnn", filterz=[32, 64, 64, 128])
  assert "filters, dropout, dense_units" in str(error.value)


def test_bad_value_through_build_model():
  with pytest.raises(ValueError, match="dropout"):
    models.build_model("fer_net", dropout=1.5)
  with pytest.raises(ValueError, match="freeze_backbone"):
    models.build_model("mobilenet_v2", freeze_backbone="yes")


@pytest.mark.parametrize("name", list(models.MODELS))
def test_spec_hparams_are_the_builder_keywords_and_json_defaults_build(name):
  spec = models.MODELS[name]
  defaults = models.default_hparams(name)
  assert tuple(defaults) == spec.hparams
  assert spec.image_size in (48, 96) and spec.channels in (1, 3) and spec.description
  if name in CNNS:  # --hparams JSON: lists and plain scalars rebuild the same model
    from_json = json.loads(json.dumps(defaults))
    rebuilt = models.build_model(name, **from_json)
    assert rebuilt.count_params() == models.build_model(name).count_params()


# --- the contract every model keeps ----------------------------------------------------------


def check_contract(name, model, tmp_path):
  spec = models.MODELS[name]
  assert model.name == name
  assert tuple(model.input_shape) == (None, spec.image_size, spec.image_size, spec.channels)
  last = model.layers[-1]
  assert isinstance(last, layers.Dense) and last.activation.__name__ == "softmax"
  assert last.dtype_policy.compute_dtype == "float32"
  x = images(name)
  y = predict(model, x)
  assert y.shape == (2, 7)
  np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
  path = tmp_path / f"{name}.keras"
  model.save(path)
  reloaded = keras.saving.load_model(path)  # no custom_objects
  np.testing.assert_allclose(predict(reloaded, x), y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", CNNS)
def test_cnn_contract_and_keras_round_trip(name, tmp_path):
  check_contract(name, models.build_model(name), tmp_path)


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_contract_and_keras_round_trip(name, backbone, tmp_path):
  check_contract(name, backbone(name), tmp_path)


@pytest.mark.parametrize("name", CNNS)
def test_mixed_precision_keeps_a_float32_softmax(name):
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_float16")
  try:
    model = models.build_model(name)
  finally:
    keras.config.set_dtype_policy(previous)
  assert model.get_layer("block1_pool" if name != "fer_net" else "stem_conv").compute_dtype == (
      "float16"
  )
  y = predict(model, images(name))
  assert y.dtype == np.float32
  np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_fer_net_hparams():
  small = models.fer_net(base_filters=8, dense_units=0, num_classes=5)
  assert small.output_shape == (None, 5)
  assert "dense" not in [layer.name for layer in small.layers]
  assert models.fer_net().count_params() > small.count_params()


# --- backbone preprocessing ------------------------------------------------------------------


def test_backbone_preprocessing_matches_keras_applications(backbone):
  x = images("resnet50", seed=1)
  for name, layer, reference in [
      ("mobilenet_v2", "to_minus_one_one", keras.applications.mobilenet_v2.preprocess_input),
      ("resnet50", "caffe_mean", keras.applications.resnet50.preprocess_input),
  ]:
    model = backbone(name)
    preprocess = keras.Model(model.input, model.get_layer(layer).output)
    np.testing.assert_allclose(
        predict(preprocess, x), reference(x * 255.0), rtol=1e-5, atol=1e-4, err_msg=name
    )


def test_imagenet_weights_are_asked_of_keras_applications(monkeypatch):
  """No download here: the backbone constructor is stubbed and must be asked for imagenet."""
  asked = []
  real = keras.applications.MobileNetV2

  def stub(**kwargs):
    asked.append(kwargs["weights"])
    return real(**{**kwargs, "weights": None})

  monkeypatch.setattr(keras.applications, "MobileNetV2", stub)
  model = models.build_model("mobilenet_v2", weights="imagenet", alpha=0.35, dense_units=16)
  assert asked == ["imagenet"] and model.output_shape == (None, 7)


def test_backbone_under_mixed_precision():
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_float16")
  try:
    model = models.build_model("mobilenet_v2", alpha=0.35, dense_units=16)
  finally:
    keras.config.set_dtype_policy(previous)
  y = predict(model, images("mobilenet_v2"))
  assert model.get_layer("dense").compute_dtype == "float16" and y.dtype == np.float32
  np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_freeze_backbone_leaves_only_the_head_trainable():
  model = models.build_model("mobilenet_v2", freeze_backbone=True, alpha=0.35, dense_units=16)
  assert not model.get_layer("backbone").trainable
  assert {w.path.split("/")[0] for w in model.trainable_weights} == {"dense", "predictions"}


# --- synchronised batch norm (--sync_batch_norm; across replicas: tests/test_trainer.py) -----


def batch_norm_layers(model):
  """Every BatchNormalization layer of `model`, the nested backbone's included."""
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from batch_norm_layers(layer)
    elif isinstance(layer, layers.BatchNormalization):
      yield layer


@pytest.mark.parametrize("name", [*CNNS, "mobilenet_v2"])
def test_sync_batch_norm_synchronises_every_batch_norm_layer_and_nothing_else(name, tmp_path):
  hparams = {"alpha": 0.35, "dense_units": 16} if name == "mobilenet_v2" else {}
  keras.utils.set_random_seed(0)
  plain = models.build_model(name, **hparams)
  keras.utils.set_random_seed(0)
  synced = models.build_model(name, sync_batch_norm=True, **hparams)
  found = list(batch_norm_layers(synced))
  assert (len(found) == 0) == (name == "improved_cnn")  # the only model without batch norm
  assert all(layer.synchronized for layer in found)
  assert not any(layer.synchronized for layer in batch_norm_layers(plain))
  for a, b in zip(plain.get_weights(), synced.get_weights(), strict=True):
    np.testing.assert_array_equal(a, b)
  # One replica (no strategy): training-mode batch statistics as without the flag.
  x = images(name, batch=4)
  np.testing.assert_allclose(np.asarray(synced(x, training=True)),
                             np.asarray(plain(x, training=True)), rtol=1e-4, atol=1e-6)
  check_contract(name, synced, tmp_path)  # saved, reloaded with plain Keras, same outputs
  reloaded = keras.saving.load_model(tmp_path / f"{name}.keras")
  assert [layer.synchronized for layer in batch_norm_layers(reloaded)] == [True] * len(found)


# --- weights -------------------------------------------------------------------------------


def test_weights_path_round_trip_weights_h5(backbone, tmp_path):
  source = backbone("mobilenet_v2")
  path = tmp_path / "mobilenet_v2.weights.h5"
  source.save_weights(path)
  loaded = models.build_model("mobilenet_v2", weights=str(path))
  x = images("mobilenet_v2", seed=2)
  np.testing.assert_allclose(predict(loaded, x), predict(source, x), rtol=1e-6, atol=1e-7)


def test_weights_path_round_trip_keras_file(tmp_path):
  source = models.build_model("fer_net")
  path = tmp_path / "fer_net.keras"
  source.save(path)
  loaded = models.build_model("fer_net", weights=path)
  x = images("fer_net", seed=3)
  np.testing.assert_allclose(predict(loaded, x), predict(source, x), rtol=1e-6, atol=1e-7)


def test_missing_weights_file_names_the_path(tmp_path):
  path = tmp_path / "nowhere" / "mobilenet_v2.weights.h5"
  with pytest.raises(ValueError, match="does not exist") as error:
    models.build_model("mobilenet_v2", weights=str(path))
  assert str(path) in str(error.value)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weights_of_another_model_are_rejected(suffix, tmp_path):
  path = tmp_path / f"improved_cnn{suffix}"
  source = models.improved_cnn()
  source.save_weights(path) if suffix == ".weights.h5" else source.save(path)
  with pytest.raises(ValueError, match="does not match model vgg_style") as error:
    models.build_model("vgg_style", weights=path)
  assert str(path) in str(error.value) and "\n" not in str(error.value)
  with pytest.raises(ValueError, match="does not match model improved_cnn"):
    models.build_model("improved_cnn", weights=path, dense_units=64)


def test_weights_argument_errors(tmp_path):
  with pytest.raises(ValueError, match="no imagenet weights"):
    models.build_model("improved_cnn", weights="imagenet")
  other = tmp_path / "weights.npz"
  other.write_bytes(b"")
  with pytest.raises(ValueError, match=r"\.weights\.h5 or \.keras"):
    models.build_model("improved_cnn", weights=other)
  broken = tmp_path / "broken.weights.h5"
  broken.write_bytes(b"not hdf5")
  with pytest.raises(ValueError, match="cannot read"):
    models.build_model("improved_cnn", weights=broken)
  assert models.build_model("vgg_style", weights=None).count_params() == 528_295
