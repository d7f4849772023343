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

import sys

if __name__ == "__main__":  # before anything loads TensorFlow (trainers/console.py)
  from trainers import console

  console.start(sys.argv)

import functools
import os
from collections.abc import Sequence
from typing import Any

from absl import flags

from trainers import cli, run_dir
from tuning import config as tuning_config
from tuning import distributed, results
from tuning.config import SweepSettings

LAUNCH_LOGS = "launch"  # tuning.launch's log folder in the sweep directory
EXIT_USAGE = cli.EXIT_USAGE
EXIT_FAILED = cli.EXIT_FAILED
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
  dataset, holdout = prepare_sweep(settings)
  if role == distributed.CHIEF:
    return _run_chief(settings)
  return _run_single(settings, dataset, holdout, callbacks, trial_hooks)


def resolve_dataset(settings: SweepSettings) -> str:
  """The prepared dataset of the sweep's --dataset (UsageError when it cannot be had)."""
  from trainers import task  # TensorFlow starts here, after the flags are known good

  return task.resolve_dataset(settings.train.dataset, settings.train.data_dir)


def prepare_sweep(settings: SweepSettings) -> tuple[str, Any]:
  """(dataset, holdout): resolved and carved, and the sweep directory prepared with them."""
  dataset = resolve_dataset(settings)
  holdout = carve_holdout(settings, dataset)
  prepare_project(settings, dataset, holdout)
  return dataset, holdout


def carve_holdout(settings: SweepSettings, dataset: str) -> Any:
  """The objective split of --objective_split=holdout (tuning/holdout.py), else None."""
  if settings.objective_split != "holdout":
    return None
  from trainers import task
  from tuning import holdout

  info = task.data_info(settings.train, dataset)
  return holdout.carve(dataset, settings.train.data_dir, settings.holdout_fraction,
                       info.num_classes)


SWEEP = run_dir.Kind(config_file=results.SWEEP_CONFIG, noun="sweep", holds_no="sweep",
                     with_other="a sweep", retry="--directory or --project_name",
                     ignore=(LAUNCH_LOGS,))
# Settings that may change when a sweep is resumed: how it runs, not what it measures.
RESUMABLE = frozenset({
    "max_trials", "directory", "project_name", "overwrite", "max_retries_per_trial",
    "max_consecutive_failed_trials", "oracle_timeout",
})


def prepare_project(settings: SweepSettings, dataset: str, holdout: Any = None) -> None:
  """Creates the sweep directory, or accepts it for resuming; never clobbers silently.

  Refused without --overwrite: a sweep with other settings (model, space,
  tuner, epochs, batch size, dataset, ...; the error names them). Always
  refused: a non-empty directory that holds no sweep (it is never deleted).
  The launcher's logs may be there first (a worker machine on a shared file
  system); a sweep started before sweep_config.json existed has oracle.json.
  """
  record = {**tuning_config.sweep_record(settings), "dataset": dataset,
            "holdout": holdout.record() if holdout is not None else None}
  run_dir.prepare(settings.project_dir, settings.project_dir, SWEEP, record, settings.overwrite,
                  sweep_changes,
                  accept=lambda d: os.path.exists(os.path.join(d, "oracle.json")))


def sweep_changes(previous: dict[str, Any], record: dict[str, Any]) -> list[str]:
  """`name: old -> new` for each setting that forbids resuming `previous` as `record`."""

  def comparable(rec: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in rec.items() if k not in RESUMABLE and k != "train"}
    values.update({f"train.{k}": v for k, v in rec.get("train", {}).items()
                   if k not in run_dir.RESUMABLE_CHANGES})
    return values

  return run_dir.differences(comparable(previous), comparable(record))


def _training_setup(settings: SweepSettings, dataset: str, holdout: Any) -> tuple[Any, Any]:
  """(strategy, Pipelines): what a training process needs, made once."""
  from trainers import train
  from tuning.hypermodel import Pipelines

  strategy = train.start(settings.train)
  return strategy, Pipelines(settings.train, strategy, dataset, holdout)


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


def _run_single(settings: SweepSettings, dataset: str, holdout: Any, callbacks: Sequence[Any],
                trial_hooks: Sequence[Any]) -> dict[str, Any]:
  from tuning.hypermodel import FerHyperModel
  from tuning.tuners import make_tuner

  strategy, pipelines = _training_setup(settings, dataset, holdout)
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
  dataset = resolve_dataset(settings)
  strategy, pipelines = _training_setup(settings, dataset, carve_holdout(settings, dataset))
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
    objective = tuning_config.OBJECTIVE
    print(f"Best: trial {best['trial']}, {objective} {best[objective]:.4f}; train it with: "
          "python -m trainers.main --hparams="
          f"{os.path.join(settings.project_dir, results.BEST_HPARAMS)}", flush=True)


# --- command line ----------------------------------------------------------------------------


def sweep_from_flags(callbacks: Sequence[Any] = (), trial_hooks: Sequence[Any] = ()) -> int:
  """Runs the sweep of the parsed flags; returns the exit code (UsageError propagates)."""
  settings = tuning_config.settings_from_flags(flags.FLAGS)
  try:
    run_sweep(settings, callbacks, trial_hooks)
  except SweepFailed as e:
    cli.print_error(e)
    return EXIT_FAILED
  return 0


def run(argv: Sequence[str], callbacks: Sequence[Any] = (),
        trial_hooks: Sequence[Any] = ()) -> int:
  """In-process entry point (tests, benchmarks): parse `argv`, sweep, return the exit code."""
  tuning_config.define_flags()
  return cli.run_in_process(argv, lambda _: sweep_from_flags(callbacks, trial_hooks))


def main(callbacks: Sequence[Any] = ()) -> None:
  """The command line: absl sets up logging; `callbacks` are extra Keras callbacks."""
  tuning_config.define_flags()
  cli.run(functools.partial(_app_main, callbacks=callbacks))


def _app_main(argv: Sequence[str], callbacks: Sequence[Any]) -> int:
  del argv
  return sweep_from_flags(callbacks)


def _last_line(text: str) -> str:
  lines = [line for line in text.splitlines() if line.strip()]
  return lines[-1].strip() if lines else ""


if __name__ == "__main__":
  main()
