"""Every command-line flag of `python -m trainers.main`, and their translation into a TrainConfig.

Why one place: `--help` lists them together, the KerasTuner `--hparams` file is
merged with them by one rule, and `run_config.json` records exactly what a run
used (and decides whether a model_dir may be resumed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any

from absl import flags

from trainers import models

FLAGS = flags.FLAGS

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
CLASS_WEIGHTS = ("none", "balanced")
EVAL_SPLITS = ("validation", "test")
# Keys an --hparams file may hold besides the model's own hparams.
TRAINING_HPARAMS = ("learning_rate", "batch_size")


class UsageError(Exception):
  """Bad input from the user: main prints it as one `error: ...` line and exits 2."""


def _model_help() -> str:
  lines = [f"{name}: {spec.description}" for name, spec in sorted(models.MODELS.items())]
  return "The model to train. " + "; ".join(lines)


flags.DEFINE_enum("model", "improved_cnn", sorted(models.MODELS), _model_help())
flags.DEFINE_string(
    "model_dir", None,
    "Where the run's files go (TensorBoard logs, history.csv, checkpoints, best.keras, "
    "model.keras, saved_model/, reports). Default: runs/<model>. Rerunning the same command "
    "on an unfinished run resumes it.")
flags.DEFINE_bool(
    "overwrite", False,
    "Delete an existing run in --model_dir (finished, or with other settings) and start over.")
flags.DEFINE_string(
    "dataset", "auto",
    "TFDS dataset: fer2013, fer2013_synthetic (drawn faces, not FER2013), or auto: fer2013 "
    "when it is prepared in --data_dir, else fer2013_synthetic (logged).")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default: ~/tensorflow_datasets).")
flags.DEFINE_integer("epochs", 30, "Number of epochs.", lower_bound=1)
flags.DEFINE_integer(
    "batch_size", 64, "Global batch size, split evenly over the replicas of --strategy.",
    lower_bound=1)
flags.DEFINE_integer(
    "max_steps_per_epoch", 0,
    "Cap on training steps per epoch (0: one pass over the train split). For smoke runs.",
    lower_bound=0)
flags.DEFINE_enum("optimizer", "adam", OPTIMIZERS,
                  "adam; adamw (with --weight_decay); sgd (momentum 0.9, Nesterov).")
flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate.", lower_bound=0.0)
flags.DEFINE_float("weight_decay", 4e-3, "Decoupled weight decay of --optimizer=adamw.",
                   lower_bound=0.0)
flags.DEFINE_enum(
    "lr_schedule", "cosine", LR_SCHEDULES,
    "constant, or cosine decay to 0 over the run; both after --warmup_epochs of linear warmup.")
flags.DEFINE_float("warmup_epochs", 0.0, "Epochs of linear learning-rate warmup from 0.",
                   lower_bound=0.0)
flags.DEFINE_float(
    "label_smoothing", 0.0,
    "Label smoothing of the categorical cross-entropy (on one-hot labels), in [0, 1).",
    lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_enum(
    "class_weights", "none", CLASS_WEIGHTS,
    "balanced: weight each class by n / (7 * count) from the train split's label counts "
    "(FER2013's disgust class has only 436 training images).")
flags.DEFINE_float("augment_strength", 1.0,
                   "Scale of the training augmentation (flip, rotation, shift, zoom, "
                   "brightness, contrast); 0 turns it off.", lower_bound=0.0)
flags.DEFINE_bool("mixed_precision", False,
                  "Compute in float16 (GPU) or bfloat16 (CPU), keep float32 variables.")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_integer("steps_per_execution", 1, "Train steps per tf.function call.",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of weights, shuffling and augmentation.")
flags.DEFINE_bool(
    "deterministic", False,
    "Deterministic ops and tf.data order: repeatable runs, somewhat slower.")
flags.DEFINE_enum(
    "strategy", "default", STRATEGIES,
    "tf.distribute strategy: default (no distribution), one_device (the first GPU, else "
    "the CPU), mirrored (every GPU, else every logical CPU device; see --cpu_devices), "
    "multi_worker_mirrored (several machines: the cluster comes from the TF_CONFIG "
    "environment variable, docs/distributed.md; trains with a custom loop), tpu (the TPU "
    "named by --tpu).")
flags.DEFINE_string(
    "tpu", None,
    "With --strategy=tpu: the TPU to use (its name, a grpc:// address, or 'local' on a TPU VM).")
flags.DEFINE_string(
    "data_service", None,
    "grpc://HOST:PORT of a tf.data service dispatcher (tools/data_service.py): the training "
    "input's reading, shuffling and augmentation run on its workers (parallel_epochs: "
    "each worker makes its own endless shuffled stream). Not repeatable, so not with "
    "--deterministic. Validation and the reports read locally.")
flags.DEFINE_integer(
    "cpu_devices", 0,
    "Split the CPU into this many logical devices before TensorFlow starts, so that "
    "--strategy=mirrored has several replicas without GPUs (trials, tests). 0: leave as is.",
    lower_bound=0)
flags.DEFINE_string(
    "hparams", None,
    "JSON file of model hparams (as written by a KerasTuner sweep), optionally with "
    "learning_rate and batch_size, and model (must match --model when that is given). "
    "Flags given on the command line win over the file; unknown keys are an error; "
    "KerasTuner's own 'tuner/...' keys are ignored.")
flags.DEFINE_string(
    "weights", "none",
    "Initial weights: none, imagenet (pretrained models only), or the path of a .keras or "
    ".weights.h5 file.")
flags.DEFINE_enum(
    "eval_split", "validation", EVAL_SPLITS,
    "Split of the final evaluation report. The validation report is always written; 'test' "
    "(FER2013's PrivateTest) adds a report on it. Keep 'test' for the one final "
    "measurement: it is never read unless asked for here.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run depends on, resolved from flags and the --hparams file."""

  model: str = "improved_cnn"
  model_dir: str = "runs/improved_cnn"
  overwrite: bool = False
  dataset: str = "auto"
  data_dir: str | None = None
  epochs: int = 30
  batch_size: int = 64
  max_steps_per_epoch: int = 0
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  weight_decay: float = 4e-3
  lr_schedule: str = "cosine"
  warmup_epochs: float = 0.0
  label_smoothing: float = 0.0
  class_weights: str = "none"
  augment_strength: float = 1.0
  mixed_precision: bool = False
  jit_compile: bool = False
  steps_per_execution: int = 1
  seed: int = 0
  deterministic: bool = False
  strategy: str = "default"
  tpu: str | None = None
  data_service: str | None = None
  cpu_devices: int = 0
  hparams: dict[str, Any] = dataclasses.field(default_factory=dict)  # the model's own
  hparams_file: str | None = None
  weights: str = "none"
  eval_split: str = "validation"

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def config_from_flags(values: flags.FlagValues = FLAGS) -> TrainConfig:
  """The TrainConfig of parsed flags, merged with the --hparams file (flags given win)."""
  fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"hparams", "hparams_file"}
  settings = {name: values[name].value for name in fields}
  given = {name for name in fields if values[name].present}
  hparams: dict[str, Any] = {}
  if values.hparams:
    file_model, training, hparams = load_hparams(values.hparams, settings["model"])
    if file_model is not None and file_model != settings["model"]:
      if "model" in given:
        raise UsageError(
            f"--hparams {values.hparams} is for model {file_model!r}, not --model="
            f"{settings['model']}")
      settings["model"] = file_model
    settings.update({k: v for k, v in training.items() if k not in given})
  if not settings["model_dir"]:
    settings["model_dir"] = os.path.join("runs", settings["model"])
  check_distribution(settings)
  return TrainConfig(**settings, hparams=hparams, hparams_file=values.hparams)


def check_distribution(settings: dict[str, Any]) -> None:
  """UsageError for --tpu / --data_service values that cannot work, before TF starts."""
  if settings["strategy"] == "tpu" and not settings["tpu"]:
    raise UsageError("--strategy=tpu needs --tpu=NAME (or --tpu=local on a TPU VM)")
  if settings["tpu"] and settings["strategy"] != "tpu":
    raise UsageError(f"--tpu is only used with --strategy=tpu, not --strategy="
                     f"{settings['strategy']}")
  service = settings["data_service"]
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
