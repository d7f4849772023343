"""The training config: recipes (--config) against their flag form, precedence, one definition."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
from absl import flags

from trainers import cli, configs, main
from trainers import config as trainer_config
from tuning import config as tuning_config

ROOT = Path(__file__).resolve().parents[1]


def resolve(*argv):
  main.define_flags()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["trainers.main", *argv])
  return trainer_config.config_from_flags(flags.FLAGS)


def readme_command(marker):
  """The flags of the README's `python -m trainers.main` command that contains `marker`."""
  text = (ROOT / "README.md").read_text().replace("\\\n", " ")  # join continued lines
  for line in re.findall(r"python -m trainers\.main .*", text):
    args = shlex.split(line)[3:]
    if marker in args:
      return args
  raise AssertionError(f"no trainers.main command with {marker} in README.md")


def test_recipe_reproduces_the_readme_recipe_exactly():
  flag_form = readme_command("--model_dir=runs/recipe_fer_net")
  assert resolve(*flag_form) == resolve("--config=recipe_fer_net")


def test_flags_given_win_over_the_recipe_and_the_rest_comes_from_it():
  config = resolve("--config=recipe_fer_net", "--epochs=5", "--model_dir=/tmp/x")
  assert (config.epochs, config.model_dir) == (5, "/tmp/x")
  assert (config.model, config.batch_size, config.learning_rate) == ("fer_net", 128, 2e-3)
  # Without --config, the defaults: the recipe left no trace in the flags.
  assert resolve().epochs == trainer_config.TrainConfig.epochs


def test_every_recipe_loads_and_sets_only_known_flags():
  trainer = {trainer_config.flag_name(f) for f in trainer_config.flag_fields(
      trainer_config.TrainConfig)}
  sweep = set(tuning_config.sweep_flag_names())
  assert {"quickstart", "recipe_fer_net", "sweep_improved_cnn"} <= set(configs.names())
  for name in configs.names():
    settings = configs.get(name)
    assert settings and set(settings) <= trainer | sweep | {"model_hparams"}, name
    doc = __import__(f"trainers.configs.{name}", fromlist=["_"]).__doc__
    for part in ("Command:", "Machine:", "Time", "esult"):
      assert part in doc, f"{name}'s docstring says no {part}"


def test_unknown_recipe_and_sweep_recipe_in_the_trainer_are_one_line_errors():
  with pytest.raises(cli.UsageError, match="unknown recipe 'nope'; recipes: .*quickstart"):
    resolve("--config=nope")
  with pytest.raises(cli.UsageError, match="recipe sets .*max_trials.* python -m tuning.main"):
    resolve("--config=sweep_improved_cnn")


def test_sweep_recipe_sets_sweep_and_training_settings():
  tuning_config.define_flags()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["tuning.main", "--config=sweep_improved_cnn", "--max_trials=2"])
  settings = tuning_config.settings_from_flags(flags.FLAGS)
  assert (settings.tuner, settings.max_trials, settings.project_name) == (
      "random", 2, "sweep_improved_cnn")
  assert settings.train.epochs == 3 and settings.train.mixed_precision
  assert settings.space.learning_rate == (5e-4, 3e-3)


def test_each_default_is_the_flags_default():
  main.define_flags()
  for field in trainer_config.flag_fields(trainer_config.TrainConfig):
    default = flags.FLAGS[trainer_config.flag_name(field)].default
    expected = field.default if field.default != "" else None
    assert default == expected, field.name
  assert dataclasses.fields(trainer_config.TrainConfig)  # the config is a dataclass


def test_sync_batch_norm_reaches_the_run_and_a_sweeps_trials():
  """Off by default; a sweep's TrainConfig carries it (trials are dataclasses.replace of it)."""
  assert not resolve().sync_batch_norm
  assert resolve("--model=fer_net", "--sync_batch_norm").sync_batch_norm
  tuning_config.define_flags()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["tuning.main", "--model=vgg_style", "--sync_batch_norm"])
  assert tuning_config.settings_from_flags(flags.FLAGS).train.sync_batch_norm


def test_recipe_sets_model_hparams_and_an_hparams_file_wins(monkeypatch, tmp_path):
  """A recipe's "model_hparams" reach the config; a file's update them; a key the model does not
  take is a one-line error naming the recipe; the tuner's command refuses them."""
  recipes = {"wide": {"model": "fer_net", "model_hparams": {"base_filters": 32, "dropout": 0.3}}}
  monkeypatch.setattr(configs, "names", lambda: ["wide"])
  monkeypatch.setattr(configs, "get", lambda name: dict(recipes[name]))
  assert resolve("--config=wide").hparams == {"base_filters": 32, "dropout": 0.3}
  file = tmp_path / "h.json"
  file.write_text('{"dropout": 0.5}')
  assert resolve("--config=wide", f"--hparams={file}").hparams == {
      "base_filters": 32, "dropout": 0.5}
  with pytest.raises(cli.UsageError, match="--config=wide: its model_hparams base_filters "
                     "are not hparams of model improved_cnn"):
    resolve("--config=wide", "--model=improved_cnn")
  tuning_config.define_flags()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["tuning.main", "--config=wide"])
  with pytest.raises(cli.UsageError, match="recipe sets model_hparams"):
    tuning_config.settings_from_flags(flags.FLAGS)
