"""Runs a KerasTuner sweep over a model's filters, dropout, dense width and learning rate.

  python -m tuning.main --tuner=random --max_trials=20 --epochs=10 --batch_size=128
  python -m tuning.main --tuner=hyperband --max_epochs=27 --space=space.json
  python -m trainers.main --hparams=runs/tuning/improved_cnn_random/best_hparams.json

Trials train as `python -m trainers.main` would with the same flags (all of its
training flags apply), on the train split, scored by validation accuracy on
the validation split (PublicTest); the test split is never read. Rerunning the
same command resumes a killed sweep: finished trials are kept and the one cut
short is rerun under its id; --overwrite starts over. With KerasTuner's
KERASTUNER_* variables set, this process is the chief oracle or one worker of a
distributed sweep (tuning.launch starts them). Bad input is one `error: ...`
line on stderr and exit code 2; a sweep stopped by failing trials exits 1.
docs/tuning.md is the guide.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from absl import app
from absl import flags as absl_flags

from trainers import main as trainer_main
from tuning import distributed, results
from tuning import flags as tuning_flags
from tuning.flags import SweepSettings, UsageError

absl_flags.adopt_module_key_flags(tuning_flags)
absl_flags.adopt_module_key_flags(trainer_main.flags)

LAUNCH_LOGS = "launch"  # tuning.launch's log folder in the sweep directory
EXIT_USAGE = 2
EXIT_FAILED = 1
CONSECUTIVE_FAILURES = "Number of consecutive failures exceeded"


class SweepFailed(Exception):
  """The sweep stopped without finishing (too many failed trials, lost chief)."""


def run_sweep(settings: SweepSettings, callbacks: Sequence[Any] = (),
              trial_hooks: Sequence[Any] = ()) -> dict[str, Any] | None:
  """Runs this process's part of the sweep; returns the results summary (None on a worker).

  `callbacks` are extra Keras callbacks of every trial's fit (deep-copied per
  trial); `trial_hooks` are called as hook(tuner, trial, run_info) after each
  trial (benchmarks).
  """
  role = distributed.role()
  if role is not None and role != distributed.CHIEF:
    return _run_worker(settings, callbacks, trial_hooks)
  if role == distributed.CHIEF:
    distributed.check_port_free(*distributed.address())  # before anything else starts
  dataset = _resolve_dataset(settings)
  prepare_project(settings, dataset)
  if role == distributed.CHIEF:
    return _run_chief(settings)
  return _run_single(settings, dataset, callbacks, trial_hooks)


def _resolve_dataset(settings: SweepSettings) -> str:
  from trainers import train  # TensorFlow starts here, after the flags are known good

  return train.resolve_dataset(settings.train.dataset, settings.train.data_dir)


def prepare_project(settings: SweepSettings, dataset: str) -> None:
  """Creates the sweep directory, or accepts it for resuming; never clobbers silently.

  Refused without --overwrite: a sweep with other settings (model, space,
  tuner, epochs, batch size, dataset, ...; the error names them). Always
  refused: a non-empty directory that holds no sweep (it is never deleted).
  """
  project = settings.project_dir
  path = os.path.join(project, results.SWEEP_CONFIG)
  record = {**tuning_flags.sweep_record(settings), "dataset": dataset}
  # The launcher's logs may be there first (a worker machine on a shared file system).
  if os.path.isdir(project) and set(os.listdir(project)) - {LAUNCH_LOGS}:
    previous = _read_json(path)
    if previous is None and not os.path.exists(os.path.join(project, "oracle.json")):
      raise UsageError(f"{project} is not empty and holds no sweep ({results.SWEEP_CONFIG} "
                       "missing); choose another --directory or --project_name")
    if settings.overwrite:
      print(f"--overwrite: deleting the sweep in {project}.", flush=True)
      shutil.rmtree(project)
    else:
      changes = sweep_changes(previous or {}, record)
      if changes:
        raise UsageError(
            f"{project} holds a sweep with other settings ({'; '.join(changes)}); rerun with "
            "its settings to resume it, pass --overwrite to replace it, or choose another "
            "--project_name")
      return
  elif os.path.exists(project) and not os.path.isdir(project):
    raise UsageError(f"{project} is a file, not a directory")
  os.makedirs(project, exist_ok=True)
  _write_json(path, record)


# Settings that may change when a sweep is resumed: how it runs, not what it measures.
RESUMABLE = frozenset({
    "max_trials", "directory", "project_name", "overwrite", "max_retries_per_trial",
    "max_consecutive_failed_trials", "oracle_timeout",
})


def sweep_changes(previous: dict[str, Any], record: dict[str, Any]) -> list[str]:
  """`name: old -> new` for each setting that forbids resuming `previous` as `record`."""
  from trainers import train

  def comparable(rec: dict[str, Any]) -> dict[str, Any]:
    rec = json.loads(json.dumps(rec))
    values = {k: v for k, v in rec.items() if k not in RESUMABLE and k != "train"}
    values.update({f"train.{k}": v for k, v in rec.get("train", {}).items()
                   if k not in train.RESUMABLE_CHANGES})
    return values

  old, new = comparable(previous), comparable(record)
  return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
          for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def _training_setup(settings: SweepSettings, dataset: str) -> tuple[Any, Any]:
  """(strategy, Pipelines): what a training process needs, made once."""
  import keras
  import tensorflow as tf

  from trainers import data
  from trainers import strategy as strategy_lib
  from tuning.hypermodel import Pipelines

  config = settings.train
  try:
    strategy_lib.split_cpu(config.cpu_devices)  # must precede every TensorFlow op
  except ValueError as e:
    raise UsageError(str(e)) from None
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = strategy_lib.make_strategy(config.strategy)
  try:
    data.check_global_batch(config.batch_size, strategy.num_replicas_in_sync)
  except ValueError as e:
    raise UsageError(f"{e} (--strategy={config.strategy})") from None
  return strategy, Pipelines(config, strategy, dataset)


def _search(tuner: Any, settings: SweepSettings, callbacks: Sequence[Any]) -> None:
  import keras

  tensorboard = keras.callbacks.TensorBoard(
      log_dir=os.path.join(settings.project_dir, results.LOGS), write_graph=False,
      profile_batch=0)
  try:
    tuner.search(epochs=settings.train.epochs, callbacks=[tensorboard, *callbacks],
                 verbose=1 if sys.stdout.isatty() else 2)
  except RuntimeError as e:
    if CONSECUTIVE_FAILURES not in str(e):
      raise
    raise SweepFailed(f"stopped after {settings.max_consecutive_failed_trials} failed trials "
                      f"in a row (--max_consecutive_failed_trials); last error: "
                      f"{_last_line(str(e))}") from None


def _run_single(settings: SweepSettings, dataset: str, callbacks: Sequence[Any],
                trial_hooks: Sequence[Any]) -> dict[str, Any]:
  from tuning.hypermodel import FerHyperModel
  from tuning.tuners import make_tuner

  strategy, pipelines = _training_setup(settings, dataset)
  hypermodel = FerHyperModel(settings, pipelines, strategy)

  def write(tuner: Any, trial: Any, info: dict[str, Any]) -> None:
    del trial, info
    results.write_all(tuner.oracle.trials, settings)

  tuner = make_tuner(settings, hypermodel, strategy, [write, *trial_hooks])
  results.write_hparams_config(tuner.oracle.get_space(),
                               os.path.join(settings.project_dir, results.LOGS))
  try:
    _search(tuner, settings, callbacks)
  finally:
    summary = results.write_all(tuner.oracle.trials, settings)
  _print_summary(settings, summary)
  return summary


def _run_chief(settings: SweepSettings) -> dict[str, Any]:
  from tuning.hypermodel import FerHyperModel
  from tuning.tuners import make_tuner

  tuner = make_tuner(settings, FerHyperModel(settings))
  oracle = tuner.oracle
  results.write_hparams_config(oracle.get_space(),
                               os.path.join(settings.project_dir, results.LOGS))
  tuner.save()
  write = functools.partial(results.write_all, oracle.trials, settings)
  try:
    distributed.serve(oracle, *distributed.address(), on_progress=write)
  finally:
    summary = write()
  _print_summary(settings, summary)
  return summary


def _run_worker(settings: SweepSettings, callbacks: Sequence[Any],
                trial_hooks: Sequence[Any]) -> None:
  import grpc

  from tuning.hypermodel import FerHyperModel
  from tuning.tuners import make_tuner

  ip, port = distributed.address()
  distributed.wait_for_chief(ip, port, settings.oracle_timeout)
  distributed.set_request_timeout(settings.oracle_timeout)
  dataset = _resolve_dataset(settings)
  strategy, pipelines = _training_setup(settings, dataset)
  try:
    tuner = make_tuner(settings, FerHyperModel(settings, pipelines, strategy), strategy,
                       trial_hooks)
    _search(tuner, settings, callbacks)
  except grpc.RpcError as e:
    raise SweepFailed(f"lost the chief oracle at {ip}:{port}: {e.code().name} "
                      f"({e.details()})") from None
  return None


def _print_summary(settings: SweepSettings, summary: dict[str, Any]) -> None:
  counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["counts"].items()))
  print(f"Sweep {settings.project_dir}: {summary['trials']} trials ({counts or 'none'}).")
  best = summary["best"]
  if best is not None:
    objective = tuning_flags.OBJECTIVE
    print(f"Best: trial {best['trial']}, {objective} {best[objective]:.4f}; train it with: "
          "python -m trainers.main --hparams="
          f"{os.path.join(settings.project_dir, results.BEST_HPARAMS)}", flush=True)


# --- command line ----------------------------------------------------------------------------


def sweep_from_flags(callbacks: Sequence[Any] = (), trial_hooks: Sequence[Any] = ()) -> int:
  """Runs the sweep of the parsed flags; returns the exit code."""
  try:
    settings = tuning_flags.settings_from_flags()
    run_sweep(settings, callbacks, trial_hooks)
  except UsageError as e:
    _fail(str(e))
    return EXIT_USAGE
  except SweepFailed as e:
    _fail(str(e))
    return EXIT_FAILED
  return 0


def run(argv: Sequence[str], callbacks: Sequence[Any] = (),
        trial_hooks: Sequence[Any] = ()) -> int:
  """In-process entry point (tests, benchmarks): parse `argv`, sweep, return the exit code."""
  tuning_flags.FLAGS.unparse_flags()
  try:
    trainer_main.parse_flags(argv)
  except SystemExit as e:
    return int(e.code or 0)
  return sweep_from_flags(callbacks, trial_hooks)


def main(callbacks: Sequence[Any] = ()) -> None:
  """The command line: absl sets up logging; `callbacks` are extra Keras callbacks."""
  app.run(functools.partial(_app_main, callbacks=callbacks),
          flags_parser=trainer_main.parse_flags)


def _app_main(argv: Sequence[str], callbacks: Sequence[Any]) -> int:
  del argv
  return sweep_from_flags(callbacks)


def _fail(message: str) -> None:
  print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
  lines = [line for line in text.splitlines() if line.strip()]
  return lines[-1].strip() if lines else ""


def _read_json(path: str) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _write_json(path: str, record: dict[str, Any]) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  os.replace(tmp, path)


if __name__ == "__main__":
  main()
