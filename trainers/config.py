"""The training config: every setting of a run, its default, its flag and its help, in one place.

Why a frozen dataclass with generated flags (rather than ml_collections'
`config_flags`): the config is flat and typed, a run records it as JSON
(run_config.json) and compares it field by field to decide whether a model_dir
may be resumed, KerasTuner trials derive theirs with `dataclasses.replace`, and
no extra dependency is needed. Each field's metadata holds its help text,
section and bounds; `define_flags()` turns the fields into absl flags, so a
default is written once, here.

Precedence when a run's config is resolved (`config_from_flags`): the field
defaults, then the recipe of `--config=NAME` (trainers/configs/NAME.py), then
the `--hparams` file (a KerasTuner result), then flags given on the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from absl import flags

from trainers import cli, configs, models, tta
from trainers.cli import UsageError

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
CLASS_WEIGHTS = ("none", "balanced")
EVAL_SPLITS = ("validation", "test")
INPUT_PLACEMENTS = ("auto", "host", "device")
# Keys an --hparams file may hold besides the model's own hparams.
TRAINING_HPARAMS = ("learning_rate", "batch_size")


def setting(default: Any, help: str, section: str, *, choices: Iterable[str] | None = None,
            lower: float | None = None, upper: float | None = None, flag: str | None = None,
            factory: Any = None) -> Any:
  """A dataclass field with what its flag needs: help, section, choices and bounds.

  `flag`: the flag's name when it differs from the field's ("" for no flag).
  """
  metadata = {"help": help, "section": section, "choices": tuple(choices or ()),
              "lower": lower, "upper": upper, "flag": flag}
  if factory is not None:
    return dataclasses.field(default_factory=factory, metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


def _model_help() -> str:
  lines = [f"{name}: {spec.description}" for name, spec in sorted(models.MODELS.items())]
  return "The model to train. " + "; ".join(lines)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run depends on, resolved from flags, a recipe and the --hparams file."""

  # --- data ---
  dataset: str = setting(cli.DATASET_DEFAULT, cli.DATASET_HELP, "data")
  data_dir: str | None = setting(None, cli.DATA_DIR_HELP, "data")
  augment_strength: float = setting(
      1.0, "Scale of the training augmentation (flip, rotation, shift, zoom, brightness, "
      "contrast); 0 turns it off.", "data", lower=0.0)
  augment_warmup_epochs: int = setting(
      2, "Epochs over which the augmentation ramps up linearly from none to "
      "--augment_strength (epoch e of W trains at strength e/W; 0: full strength from the "
      "start). Unaugmented early epochs leave the majority-class plateau sooner "
      "(docs/models.md). Not with --data_service (full strength there).", "data", lower=0)
  data_service: str | None = setting(
      None, "grpc://HOST:PORT of a tf.data service dispatcher (tools/data_service.py): the "
      "training input's reading, shuffling and augmentation run on its workers "
      "(parallel_epochs: each worker makes its own endless shuffled stream). Not repeatable, "
      "so not with --deterministic. Validation and the reports read locally.", "data")
  input: str = setting(
      "auto", "Where the training input lives. host: every image goes through the host's "
      "tf.data pipeline (read, shuffle, augment) and is copied to the device. device: the "
      "train split is held as uint8 on every replica's device and the host sends only "
      "example indices and labels; gather and augmentation run inside the replica's step "
      "(trainers/device_input.py). auto: device when the split takes at most 10% of one "
      "device's memory, else host (the log says which and why).", "data",
      choices=INPUT_PLACEMENTS)
  # --- model ---
  model: str = setting("improved_cnn", "", "model", choices=sorted(models.MODELS))
  weights: str = setting(
      "none", "Initial weights: none, imagenet (pretrained models only), or the path of a "
      ".keras or .weights.h5 file.", "model")
  hparams: dict[str, Any] = setting(None, "The model's own hparams (from --hparams).", "model",
                                    flag="", factory=dict)
  hparams_file: str | None = setting(
      None, "JSON file of model hparams (as written by a KerasTuner sweep), optionally with "
      "learning_rate and batch_size, and model (must match --model when that is given). "
      "Flags given on the command line win over the file; unknown keys are an error; "
      "KerasTuner's own 'tuner/...' keys are ignored.", "model", flag="hparams")
  # --- optimisation ---
  epochs: int = setting(30, "Number of epochs.", "optimisation", lower=1)
  batch_size: int = setting(
      64, "Global batch size, split evenly over the replicas of --strategy.", "optimisation",
      lower=1)
  max_steps_per_epoch: int = setting(
      0, "Cap on training steps per epoch (0: one pass over the train split). For smoke runs.",
      "optimisation", lower=0)
  optimizer: str = setting("adam", "adam; adamw (with --weight_decay); sgd (momentum 0.9, "
                           "Nesterov).", "optimisation", choices=OPTIMIZERS)
  learning_rate: float = setting(1e-3, "Peak learning rate.", "optimisation", lower=0.0)
  weight_decay: float = setting(4e-3, "Decoupled weight decay of --optimizer=adamw.",
                                "optimisation", lower=0.0)
  lr_schedule: str = setting(
      "cosine", "constant, or cosine decay to 0 over the run; both after --warmup_epochs of "
      "linear warmup.", "optimisation", choices=LR_SCHEDULES)
  warmup_epochs: float = setting(0.0, "Epochs of linear learning-rate warmup from 0.",
                                 "optimisation", lower=0.0)
  ema: float = setting(
      0.0, "Decay of an exponential moving average of the weights (e.g. 0.999; 0: off). The "
      "average is what validation scores, what best.keras and the export hold, and it is "
      "saved and restored with the run's backup; training updates the raw weights.",
      "optimisation", lower=0.0, upper=0.99999)
  label_smoothing: float = setting(
      0.0, "Label smoothing of the categorical cross-entropy (on one-hot labels), in [0, 1).",
      "optimisation", lower=0.0, upper=0.999)
  class_weights: str = setting(
      "none", "balanced: weight each class by n / (7 * count) from the train split's label "
      "counts (FER2013's disgust class has only 436 training images).", "optimisation",
      choices=CLASS_WEIGHTS)
  # --- run ---
  model_dir: str = setting(
      "", "Where the run's files go (TensorBoard logs, history.csv, checkpoints, best.keras, "
      "model.keras, saved_model/, reports). Default: runs/<model>. Rerunning the same command "
      "on an unfinished run resumes it.", "run")
  overwrite: bool = setting(
      False, "Delete an existing run in --model_dir (finished, or with other settings) and "
      "start over.", "run")
  mixed_precision: bool = setting(
      False, "Compute in float16 (GPU) or bfloat16 (CPU), keep float32 variables.", "run")
  jit_compile: bool = setting(False, "Compile the train step with XLA.", "run")
  sync_batch_norm: bool = setting(
      False, "Synchronise batch norm across the replicas: in training, every "
      "BatchNormalization layer (the transfer backbones' too) normalises with the mean and "
      "variance of the global batch, all-reduced over the replicas at each step, instead of "
      "its replica's share, so a multi-replica run trains as one device would. Use it with "
      "several replicas (--strategy=mirrored, multi_worker_mirrored, tpu) when the batch per "
      "replica is small; it costs three small all-reduces per batch-norm layer per step. No "
      "effect on one replica or on improved_cnn (no batch norm).", "run")
  steps_per_execution: int = setting(1, "Train steps per tf.function call.", "run", lower=1)
  seed: int = setting(0, "Seed of weights, shuffling and augmentation.", "run")
  deterministic: bool = setting(
      False, "Deterministic ops and tf.data order: repeatable runs, somewhat slower.", "run")
  strategy: str = setting(
      "default", "tf.distribute strategy: default (no distribution), one_device (the first "
      "GPU, else the CPU), mirrored (every GPU, else every logical CPU device; see "
      "--cpu_devices), multi_worker_mirrored (several machines: the cluster comes from the "
      "TF_CONFIG environment variable, docs/distributed.md; trains with a custom loop), tpu "
      "(the TPU named by --tpu).", "run", choices=STRATEGIES)
  tpu: str | None = setting(
      None, "With --strategy=tpu: the TPU to use (its name, a grpc:// address, or 'local' on a "
      "TPU VM).", "run")
  cpu_devices: int = setting(
      0, "Split the CPU into this many logical devices before TensorFlow starts, so that "
      "--strategy=mirrored has several replicas without GPUs (trials, tests). 0: leave as is.",
      "run", lower=0)
  eval_split: str = setting(
      "validation", "Split of the final evaluation report. The validation report is always "
      "written; 'test' (FER2013's PrivateTest) adds a report on it. Keep 'test' for the one "
      "final measurement: it is never read unless asked for here.", "run",
      choices=EVAL_SPLITS)
  tta: str = setting(
      "none", "Test-time augmentation of the reports (trainers/tta.py): none; flip (the face "
      "and its mirror image, 2 passes); flip_shift (also shifted 2 pixels left and right, 6 "
      "passes). Epoch selection (fit's validation) does not use it.", "run",
      choices=tuple(tta.VIEWS))

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


# --- flags generated from the fields -----------------------------------------------------------


def flag_name(field: dataclasses.Field) -> str:
  """The flag of a field: its own name unless its metadata names another ("" for none)."""
  name = field.metadata.get("flag")
  return field.name if name is None else name


def flag_fields(cls: type) -> list[dataclasses.Field]:
  """The fields of dataclass `cls` that have a flag."""
  return [f for f in dataclasses.fields(cls) if flag_name(f)]


def _base_type(cls: type, field: dataclasses.Field) -> type:
  """bool, int, float or str: the field's type without `| None`."""
  hint = typing.get_type_hints(cls)[field.name]
  if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
    hint = next(a for a in typing.get_args(hint) if a is not type(None))
  return hint


def define_dataclass_flags(cls: type, help_overrides: Mapping[str, str] | None = None,
                           skip: Iterable[str] = ()) -> None:
  """Defines one absl flag per field of `cls`, with its default, help, choices and bounds."""
  for field in flag_fields(cls):
    name = flag_name(field)
    if name in skip:
      continue
    meta = field.metadata
    help_text = (help_overrides or {}).get(name) or meta["help"]
    default = field.default
    kind = _base_type(cls, field)
    bounds = {k: v for k, v in (("lower_bound", meta["lower"]), ("upper_bound", meta["upper"]))
              if v is not None}
    if meta["choices"]:
      flags.DEFINE_enum(name, default, list(meta["choices"]), help_text)
    elif kind is bool:
      flags.DEFINE_bool(name, default, help_text)
    elif kind is int:
      flags.DEFINE_integer(name, default, help_text, **bounds)
    elif kind is float:
      flags.DEFINE_float(name, default, help_text, **bounds)
    else:
      flags.DEFINE_string(name, default or None, help_text)


def define_flags() -> None:
  """The flags of `python -m trainers.main`: every TrainConfig field, plus --config."""
  flags.DEFINE_string(
      "config", None,
      f"A recipe from trainers/configs/ ({', '.join(configs.names())}): its settings replace "
      "the defaults; flags given on the command line win over it. Its docstring says the "
      "command, machine, time and measured result.")
  define_dataclass_flags(TrainConfig, {"model": _model_help()})


def apply_recipe(values: flags.FlagValues, allowed: Iterable[str],
                 model_hparams: bool = False) -> dict[str, Any]:
  """Sets the flags of `--config=NAME`'s recipe that the command line did not give.

  Returns the recipe's settings ({} without --config). A key that is not one of
  `allowed` flags is a UsageError naming the recipe; with `model_hparams`, the
  key "model_hparams" (the model's own hparams, a dict; "hparams" is the flag of
  an hparams file) is allowed too and left to the caller.
  """
  name = values["config"].value if "config" in values else None
  if not name:
    return {}
  try:
    recipe = configs.get(name)
  except ValueError as e:
    raise UsageError(f"--config={name}: {e}") from None
  allowed = set(allowed) | ({"model_hparams"} if model_hparams else set())
  unknown = sorted(set(recipe) - allowed)
  if unknown:
    raise UsageError(f"--config={name}: recipe sets {', '.join(unknown)}, which this command "
                     "does not take (a sweep recipe runs with python -m tuning.main)")
  for key, value in recipe.items():
    if key != "model_hparams" and not values[key].present:
      values[key].value = value
  return recipe


def config_from_flags(values: flags.FlagValues = flags.FLAGS, recipe: bool = True) -> TrainConfig:
  """The TrainConfig of parsed flags: recipe, then --hparams file, then flags given.

  A recipe's "model_hparams" (e.g. fer_net's base_filters) come first;
  an --hparams file's update them. `recipe=False`: the caller has applied
  --config already (tuning, whose recipes also set sweep flags).
  """
  fields = {flag_name(f): f.name for f in flag_fields(TrainConfig)}
  recipe_settings = apply_recipe(values, fields, model_hparams=True) if recipe else {}
  recipe_hparams = dict(recipe_settings.get("model_hparams") or {})
  settings = {field: values[name].value for name, field in fields.items()}
  given = {field for name, field in fields.items() if values[name].present}
  hparams: dict[str, Any] = {}
  if settings["hparams_file"]:
    path = settings["hparams_file"]
    file_model, training, hparams = load_hparams(path, settings["model"])
    if file_model is not None and file_model != settings["model"]:
      if "model" in given:
        raise UsageError(f"--hparams {path} is for model {file_model!r}, not --model="
                         f"{settings['model']}")
      settings["model"] = file_model
    settings.update({k: v for k, v in training.items() if k not in given})
  if recipe_hparams:
    taken = models.MODELS[settings["model"]].hparams
    unknown = sorted(set(recipe_hparams) - set(taken))
    if unknown:
      raise UsageError(f"--config={values['config'].value}: its model_hparams {', '.join(unknown)} "
                       f"are not hparams of model {settings['model']} (it takes "
                       f"{', '.join(taken) or 'none'}); drop --model or the recipe")
    hparams = {**recipe_hparams, **hparams}
  if not settings["model_dir"]:
    settings["model_dir"] = os.path.join("runs", settings["model"])
  check_distribution(settings)
  return TrainConfig(**settings, hparams=hparams)


def check_distribution(settings: Mapping[str, Any]) -> None:
  """UsageError for --tpu / --data_service values that cannot work, before TF starts."""
  if settings["strategy"] == "tpu" and not settings["tpu"]:
    raise UsageError("--strategy=tpu needs --tpu=NAME (or --tpu=local on a TPU VM)")
  if settings["tpu"] and settings["strategy"] != "tpu":
    raise UsageError(f"--tpu is only used with --strategy=tpu, not --strategy="
                     f"{settings['strategy']}")
  service = settings["data_service"]
  if settings.get("input") == "device" and (service or settings["strategy"] == "tpu"):
    raise UsageError("--input=device cannot be used with "
                     + ("--data_service (its workers feed from the host)" if service else
                        "--strategy=tpu (TPUs are fed from the host here)")
                     + "; use --input=host or --input=auto")
  if service is not None:
    match = re.fullmatch(r"grpc://([^/:\s]+|\[[0-9a-fA-F:]+\]):(\d+)", service)
    if not match or not 0 < int(match.group(2)) < 65536:
      raise UsageError(f"--data_service={service!r} must be grpc://HOST:PORT (the "
                       "dispatcher's address)")
    if settings["deterministic"]:
      raise UsageError("--deterministic cannot be kept with --data_service: the service's "
                       "workers shuffle and augment independently and deliver batches in "
                       "arrival order")


def load_hparams(path: str, model: str) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
  """(model named in the file or None, training settings, model hparams) of an --hparams file.

  Fails with a UsageError naming the file for anything a run could not use:
  a missing or unreadable file, bad JSON, a key the model does not take, or a
  learning_rate/batch_size that is not a positive number.
  """
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except FileNotFoundError:
    raise UsageError(f"--hparams file not found: {path}") from None
  except (OSError, UnicodeDecodeError) as e:
    raise UsageError(f"--hparams {path}: cannot read it: {e}") from None
  except json.JSONDecodeError as e:
    raise UsageError(f"--hparams {path} is not valid JSON: {e}") from None
  if not isinstance(raw, dict):
    raise UsageError(f"--hparams {path} must hold a JSON object, not {type(raw).__name__}")
  raw = {k: v for k, v in raw.items() if not k.startswith("tuner/")}
  file_model = raw.pop("model", None)
  if file_model is not None:
    if file_model not in models.MODELS:
      raise UsageError(f"--hparams {path}: unknown model {file_model!r} (one of "
                       f"{', '.join(sorted(models.MODELS))})")
    model = file_model
  allowed = models.MODELS[model].hparams
  unknown = sorted(set(raw) - set(allowed) - set(TRAINING_HPARAMS))
  if unknown:
    raise UsageError(
        f"--hparams {path}: unknown key(s) {', '.join(unknown)} for model {model} (it takes "
        f"{', '.join(allowed) or 'no hparams'}, plus {', '.join(TRAINING_HPARAMS)})")
  training = {k: raw.pop(k) for k in TRAINING_HPARAMS if k in raw}
  lr = training.get("learning_rate")
  if lr is not None and not (_is_number(lr) and math.isfinite(lr) and lr > 0):
    raise UsageError(f"--hparams {path}: learning_rate must be a positive number, not {lr!r}")
  batch = training.get("batch_size")
  if batch is not None and not (_is_number(batch) and batch == int(batch) and batch >= 1):
    raise UsageError(f"--hparams {path}: batch_size must be a positive integer, not {batch!r}")
  if batch is not None:
    training["batch_size"] = int(batch)
  if lr is not None:
    training["learning_rate"] = float(lr)
  return file_model, training, raw


def _is_number(value: Any) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)

