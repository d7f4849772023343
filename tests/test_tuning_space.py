"""The search space of tuning sweeps: bounds from flags and files, checks, KerasTuner names.

No training here: parsing and checking must reject bad bounds with one clear
line before anything runs, and a trial's values must become exactly the
builder's arguments and the trainer's --hparams keys.
"""

import json

import keras_tuner as kt
import pytest
from absl import flags

from trainers import cli, models
from trainers import config as trainer_config
from tuning import config as tuning_config
from tuning import search_space
from tuning.search_space import SpaceError


def test_default_space_contains_the_untuned_model():
  space = search_space.build()
  defaults = models.default_hparams("improved_cnn")
  for block, width in enumerate(defaults["filters"]):
    assert width in space.filters[block]
  low, high, _ = space.dropout
  assert low <= defaults["dropout"] <= high
  assert defaults["dense_units"] in space.dense_units
  assert space.learning_rate[0] <= 1e-3 <= space.learning_rate[1]
  assert space.augment_strength == ()  # not searched unless asked for

  hp = kt.HyperParameters()
  search_space.declare(space, hp, defaults)
  assert [p.name for p in hp.space] == space.names()
  # A stepped dropout is its grid, MAX included (KerasTuner's stepped Float misses it).
  assert hp.space[space.names().index("dropout")].values == [0.2, 0.3, 0.4, 0.5, 0.6]
  assert search_space.dropout_grid(0.2, 0.5, 0.1) == (0.2, 0.3, 0.4, 0.5)
  assert search_space.dropout_grid(0.1, 0.45, 0.1) == (0.1, 0.2, 0.3, 0.4)
  model_hparams, training = search_space.split_values(space, hp.values)
  assert model_hparams == defaults  # the declared defaults are the untuned model
  assert training == {"learning_rate": 1e-3}


def test_flags_and_file_forms():
  space = search_space.build(
      {"filters": [[8, 16], [16], [32, 16], [64]], "dropout": [0.1, 0.3], "learning_rate": 1e-3},
      "space.json",
      {"dense_units": "32,16", "augment_strength": "0,1"})
  assert space.filters == ((8, 16), (16,), (16, 32), (64,))  # sorted choices per block
  assert space.dropout == (0.1, 0.3, None)  # continuous
  assert space.learning_rate == (1e-3, 1e-3)  # fixed
  assert space.dense_units == (16, 32)
  assert space.augment_strength == (0.0, 1.0)

  every_block = search_space.build(flag_values={"filters": "4/8", "dropout": "0.5"})
  assert every_block.filters == ((4, 8),) * 4
  assert every_block.dropout == (0.5, 0.5, None)
  per_block = search_space.build(flag_values={"filters": "4/8,8,16/32,32"})
  assert per_block.filters == ((4, 8), (8,), (16, 32), (32,))
  assert search_space.build(per_block.to_json()) == per_block  # the JSON form reads back

  hp = kt.HyperParameters()
  search_space.declare(space, hp, models.default_hparams("improved_cnn"))
  kinds = {p.name: type(p).__name__ for p in hp.space}
  assert kinds["filters_2"] == "Fixed" and kinds["filters_1"] == "Choice"
  assert kinds["learning_rate"] == "Fixed" and kinds["dropout"] == "Float"
  values = {"filters_1": 8, "filters_2": 16, "filters_3": 32, "filters_4": 64,
            "dropout": 0.30000001192092896, "dense_units": 16, "learning_rate": 0.00123456789,
            "augment_strength": 0.5, "tuner/epochs": 3}
  model_hparams, training = search_space.split_values(space, values)
  assert model_hparams == {"filters": [8, 16, 32, 64], "dropout": 0.3, "dense_units": 16}
  assert training == {"learning_rate": 0.00123457, "augment_strength": 0.5}
  models.build_model("improved_cnn", **model_hparams)  # the builder takes them as they are


@pytest.mark.parametrize("flag_values, message", [
    ({"filters": "32,64,128"}, "give 1 or 4 groups"),
    ({"filters": "16/0"}, "block 1: 0 is not an integer >= 1"),
    ({"filters": "16/16"}, "repeats a value"),
    ({"filters": "a/b"}, "not a comma-separated list of integers"),
    ({"dropout": "0.6,0.2"}, "need 0 <= MIN <= MAX < 1, got MIN=0.6, MAX=0.2"),
    ({"dropout": "0.2,1.0"}, "MAX < 1"),
    ({"dropout": "0.2,0.4,0.5"}, "STEP must be > 0 and <= MAX - MIN"),
    ({"dropout": "0.1,0.2,0.3,0.4"}, "expected MIN,MAX[,STEP]"),
    ({"dense_units": ""}, "needs at least one value"),
    ({"dense_units": "64,12.5"}, "not a comma-separated list of integers"),
    ({"learning_rate": "0,1e-3"}, "need 0 < MIN <= MAX"),
    ({"learning_rate": "1e-2,1e-4"}, "need 0 < MIN <= MAX"),
    ({"learning_rate": "nan"}, "finite"),
    ({"augment_strength": "-1,1"}, "-1.0 is not a number >= 0"),
])
def test_invalid_bounds_are_one_clear_error(flag_values, message):
  with pytest.raises(SpaceError) as error:
    search_space.build(flag_values=flag_values)
  text = str(error.value)
  assert message in text and "\n" not in text
  assert text.startswith(f"--space_{next(iter(flag_values))}")


@pytest.mark.parametrize("content, message", [
    ("{", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"filters": [16, 32], "dropuot": 0.5}', "unknown key(s) dropuot"),
    ('{"dense_units": [true]}', "expected a number or a list of numbers"),
    ('{"dropout": [0.9, 0.1]}', "dropout: need 0 <= MIN <= MAX < 1"),
])
def test_invalid_space_file(tmp_path, content, message):
  path = tmp_path / "space.json"
  path.write_text(content)
  with pytest.raises(SpaceError, match="--space .*space.json") as error:
    search_space.build(search_space.read_file(str(path)), str(path))
  assert message in str(error.value)
  with pytest.raises(SpaceError, match="not found"):
    search_space.read_file(str(tmp_path / "missing.json"))


def _settings(*argv):
  tuning_config.define_flags()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["tuning.main", *argv])
  return tuning_config.settings_from_flags()


@pytest.mark.parametrize("argv, message", [
    (["--model_dir=x"], "--model_dir is a trainers.main flag that tuning does not take"),
    (["--hparams=x.json"], "--hparams is a trainers.main flag"),
    (["--learning_rate=0.01"], "--learning_rate is searched"),
    (["--model=fer_net"],
     "fer_net has no filters hyperparameter(s) to search; tuning searches improved_cnn"),
    (["--tuner=bayesian", "--max_trials=0"], "--max_trials must be >= 1"),
    (["--space_dropout=2"], "--space_dropout: need 0 <= MIN <= MAX < 1"),
])
def test_flags_a_sweep_cannot_use(argv, message):
  with pytest.raises(cli.UsageError) as error:
    _settings(*argv)
  assert message in str(error.value)


def test_settings_carry_the_trainer_flags(tmp_path):
  space_file = tmp_path / "space.json"
  space_file.write_text(json.dumps({"dense_units": [32, 64], "dropout": 0.25}))
  settings = _settings("--tuner=hyperband", "--epochs=4", "--batch_size=32", "--optimizer=sgd",
                       f"--space={space_file}", "--space_dense_units=128")
  assert settings.train.epochs == 4 and settings.max_epochs == 4 and settings.trial_epochs == 4
  assert settings.train.batch_size == 32 and settings.train.optimizer == "sgd"
  assert settings.space.dense_units == (128,)  # the flag wins over the file
  assert settings.space.dropout == (0.25, 0.25, None)
  assert settings.project_name == "improved_cnn_hyperband"
  record = tuning_config.sweep_record(settings)
  assert json.loads(json.dumps(record))["space"]["dense_units"] == [128]


def test_bayesian_without_scikit_learn_is_a_clear_error(monkeypatch):
  find_spec = tuning_config.importlib.util.find_spec
  monkeypatch.setattr(tuning_config.importlib.util, "find_spec",
                      lambda name, *a: None if name == "sklearn" else find_spec(name, *a))
  with pytest.raises(cli.UsageError, match="--tuner=bayesian needs scikit-learn"):
    _settings("--tuner=bayesian")
  assert _settings("--tuner=random").tuner == "random"


def test_augment_strength_is_searched_only_where_the_trainer_takes_it(monkeypatch):
  monkeypatch.setattr(trainer_config, "TRAINING_HPARAMS", ("learning_rate", "batch_size"))
  with pytest.raises(cli.UsageError, match="does not take augment_strength yet"):
    _settings("--space_augment_strength=0,1")
  monkeypatch.setattr(trainer_config, "TRAINING_HPARAMS",
                      ("learning_rate", "batch_size", "augment_strength"))
  assert _settings("--space_augment_strength=0,1").space.augment_strength == (0.0, 1.0)
  with pytest.raises(cli.UsageError, match="--augment_strength is searched"):
    _settings("--space_augment_strength=0,1", "--augment_strength=0.5")
