"""The sweep's settings, their flags and defaults, and their translation into SweepSettings.

Why the trainer's own flags: every trial trains exactly as `python -m
trainers.main` would with the same flags (`--epochs`, `--batch_size`,
`--optimizer`, `--lr_schedule`, `--mixed_precision`, `--strategy`, `--seed`,
...), so a sweep's score and the run trained from its best_hparams.json are
comparable. Only the sweep's own settings (SweepSettings' fields, whose
defaults and help live here once) and the search-space bounds are added.
Trainer flags that make no sense for a sweep (`--model_dir`, `--hparams`,
`--weights`, `--eval_split`) are refused, and so is a fixed value for something
that is searched. `--config=NAME` takes a sweep recipe from trainers/configs/.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any

from absl import flags

from trainers import cli, models
from trainers import config as trainer_config
from trainers.cli import UsageError
from trainers.config import setting
from tuning import search_space

TUNERS = ("hyperband", "bayesian", "random")
# Keras's name for the accuracy on fit's validation data: the sweep's objective split (a
# holdout slice of train by default, or PublicTest); PrivateTest is never read.
OBJECTIVE = "val_accuracy"
OBJECTIVE_SPLITS = ("holdout", "validation")
# One trial runs in one process; several processes are tuning.launch's job.
TRIAL_STRATEGIES = ("default", "one_device", "mirrored")
# Trainer flags a sweep refuses: where a run's files go, or a fixed starting point.
UNUSED_TRAINER_FLAGS = {
    "model_dir": "a sweep writes into --directory/--project_name",
    "hparams": "it is what a sweep writes (best_hparams.json); --space sets the bounds",
    "weights": "every trial starts from random weights",
    "eval_split": "a sweep evaluates on the validation split only",
}
DEFAULT_DIRECTORY = os.path.join("runs", "tuning")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepSettings:
  """Everything a sweep depends on; `train` is the TrainConfig every trial starts from."""

  tuner: str = setting("random", "Search algorithm: random, bayesian (Gaussian process) or "
                       "hyperband.", "sweep", choices=TUNERS)
  max_trials: int = setting(
      10, "Trials in the sweep. With --tuner=hyperband, 0 (allowed only there) runs as many as "
      "its brackets need; more caps them. Raising it on a finished sweep continues it.",
      "sweep", lower=0)
  max_epochs: int = setting(  # resolved: 0 becomes --epochs
      0, "Hyperband: epochs of its longest trials (0: --epochs). Other tuners train every "
      "trial for --epochs.", "sweep", lower=0)
  hyperband_factor: int = setting(3, "Hyperband's reduction factor.", "sweep", lower=2)
  executions_per_trial: int = setting(
      1, "Trainings per trial (seeds --seed, --seed+1, ...); the score is their mean.",
      "sweep", lower=1)
  directory: str = setting(DEFAULT_DIRECTORY, "Parent directory of sweeps.", "sweep")
  project_name: str = setting(  # resolved: None becomes <model>_<tuner>
      None, "The sweep's folder in --directory (default: <model>_<tuner>). Rerunning the same "
      "command resumes it; --overwrite starts it over.", "sweep")
  overwrite: bool = setting(False, "", "sweep", flag="")  # the trainer's --overwrite
  max_retries_per_trial: int = setting(
      0, "Reruns of a trial that raised an error (out of memory is never retried).", "sweep",
      lower=0)
  max_consecutive_failed_trials: int = setting(
      3, "Stop the sweep after this many failed trials in a row.", "sweep", lower=1)
  oracle_timeout: float = setting(
      300.0, "Distributed sweeps: seconds a worker waits for the chief oracle (at start and "
      "per request) before failing with an error.", "sweep", lower=0.1)
  objective_split: str = setting(
      "holdout", "Where trials are scored: holdout (a stratified slice of the train split, "
      "--holdout_fraction, fixed seed, kept out of the trials' training, so PublicTest stays "
      "an unbiased comparison of the tuned model) or validation (PublicTest itself).",
      "sweep", choices=OBJECTIVE_SPLITS)
  holdout_fraction: float = setting(
      0.1, "With --objective_split=holdout: the share of each class of the train split that "
      "scores the trials.", "sweep", lower=0.01, upper=0.5)
  space: search_space.SearchSpace = setting(None, "", "sweep", flag="")
  train: trainer_config.TrainConfig = setting(None, "", "sweep", flag="")

  @property
  def project_dir(self) -> str:
    return os.path.join(self.directory, self.project_name)

  @property
  def trial_epochs(self) -> int:
    """The longest a trial trains (the learning-rate schedule's length)."""
    return self.max_epochs if self.tuner == "hyperband" else self.train.epochs


def _define_sweep_flags() -> None:
  trainer_config.define_dataclass_flags(SweepSettings)
  flags.DEFINE_string("space", None,
                      "JSON file of search-space bounds, keys: "
                      f"{', '.join(search_space.KEYS)} (same forms as the --space_* flags; "
                      "flags given win).")
  for key in search_space.KEYS:
    flags.DEFINE_string(f"space_{key}", None, search_space.FLAG_HELP[key])


def define_flags() -> None:
  """The flags of tuning.main and tuning.launch: the trainer's, then the sweep's own."""
  from trainers import main as trainer_main

  trainer_main.define_flags()
  cli.define_once(_define_sweep_flags, "tuner")


def sweep_flag_names() -> list[str]:
  """Every flag a sweep (or a sweep recipe) may set besides the trainer's."""
  names = [trainer_config.flag_name(f) for f in trainer_config.flag_fields(SweepSettings)]
  return names + ["space"] + [f"space_{k}" for k in search_space.KEYS]


def settings_from_flags(values: flags.FlagValues = flags.FLAGS) -> SweepSettings:
  """The SweepSettings of parsed flags; anything a sweep could not use is a UsageError."""
  trainer_flags = [trainer_config.flag_name(f)
                   for f in trainer_config.flag_fields(trainer_config.TrainConfig)]
  trainer_config.apply_recipe(values, trainer_flags + sweep_flag_names())
  for name, why in UNUSED_TRAINER_FLAGS.items():
    if values[name].present:
      raise UsageError(f"--{name} is a trainers.main flag that tuning does not take: {why}")
  config = trainer_config.config_from_flags(values, recipe=False)
  if config.strategy not in TRIAL_STRATEGIES:
    raise UsageError(f"--strategy={config.strategy}: a trial runs in one process; use "
                     f"{', '.join(TRIAL_STRATEGIES)} (several workers: python -m tuning.launch)")
  space = space_from_flags(values, config.model)
  if values["learning_rate"].present:
    raise UsageError("--learning_rate is searched; fix it with --space_learning_rate="
                     f"{values.learning_rate:g} instead")
  if space.augment_strength:
    if values["augment_strength"].present:
      raise UsageError("--augment_strength is searched (--space_augment_strength); give one "
                       "or the other")
    if search_space.AUGMENT_STRENGTH not in trainer_config.TRAINING_HPARAMS:
      raise UsageError(
          "--space_augment_strength: trainers.main --hparams does not take augment_strength "
          "yet, so the sweep's best_hparams.json could not be trained; leave it unsearched")
  tuner = values.tuner
  if tuner == "bayesian" and importlib.util.find_spec("sklearn") is None:
    raise UsageError("--tuner=bayesian needs scikit-learn (KerasTuner's Gaussian process): "
                     "pip install scikit-learn, or use --tuner=random or hyperband")
  if values.max_trials == 0 and tuner != "hyperband":
    raise UsageError(f"--max_trials must be >= 1 with --tuner={tuner} (0 is for hyperband)")
  return SweepSettings(
      tuner=tuner,
      max_trials=values.max_trials,
      max_epochs=values.max_epochs or config.epochs,
      hyperband_factor=values.hyperband_factor,
      executions_per_trial=values.executions_per_trial,
      directory=values.directory,
      project_name=values.project_name or f"{config.model}_{tuner}",
      overwrite=config.overwrite,
      max_retries_per_trial=values.max_retries_per_trial,
      max_consecutive_failed_trials=values.max_consecutive_failed_trials,
      oracle_timeout=values.oracle_timeout,
      objective_split=values.objective_split,
      holdout_fraction=values.holdout_fraction,
      space=space,
      train=config,
  )


def space_from_flags(values: flags.FlagValues, model: str) -> search_space.SearchSpace:
  """The search space: defaults, then the --space file, then --space_* flags given."""
  missing = [k for k in search_space.MODEL_KEYS if k not in models.MODELS[model].hparams]
  if missing:
    able = [n for n, s in sorted(models.MODELS.items())
            if set(search_space.MODEL_KEYS) <= set(s.hparams)]
    raise UsageError(f"--model={model} has no {', '.join(missing)} hyperparameter(s) to search; "
                     f"tuning searches {', '.join(able)}")
  blocks = len(models.default_hparams(model)[search_space.FILTERS])
  try:
    file_values = search_space.read_file(values.space) if values.space else None
    flag_values = {k: values[f"space_{k}"].value for k in search_space.KEYS
                   if values[f"space_{k}"].value is not None}
    return search_space.build(file_values, values.space or "", flag_values, blocks)
  except search_space.SpaceError as e:
    raise UsageError(str(e)) from None


def sweep_record(settings: SweepSettings) -> dict[str, Any]:
  """What a sweep is, for sweep_config.json: a rerun must match it to resume."""
  record = dataclasses.asdict(settings)
  record["space"] = settings.space.to_json()
  record["objective"] = OBJECTIVE
  return record
