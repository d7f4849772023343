"""Trains a facial-emotion model on FER2013 (or, without it, on the synthetic faces).

  python -m trainers.main --model=fer_net --epochs=20 --model_dir=runs/fer_net
  python -m trainers.main --config=recipe_fer_net          # a recipe (trainers/configs/)
  python -m trainers.main --config=recipe_fer_net --epochs=5  # ... with a flag overridden

Rerunning the same command resumes an interrupted run. Bad input (flags, the
--hparams file, a missing dataset, the model_dir) is one `error: ...` line on
stderr and exit code 2. The flags are generated from trainers/config.py's
TrainConfig, where each default and help text is written once.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # before anything loads TensorFlow (trainers/console.py)
  from trainers import console

  console.start(sys.argv)

import functools
from collections.abc import Sequence
from typing import Any

from absl import flags

from trainers import cli, config


def define_flags() -> None:
  """The trainer's flags (once per process: main, tests and tuning.main share them)."""
  cli.define_once(config.define_flags, "batch_size")


def train_from_flags(callbacks: Sequence[Any] = ()) -> int:
  """Runs training with the parsed flags; returns the exit code (2 for bad input)."""
  run_config = config.config_from_flags(flags.FLAGS)
  from trainers import train  # TensorFlow starts here, after the flags are known good

  train.run(run_config, callbacks)
  return 0


def run(argv: Sequence[str], callbacks: Sequence[Any] = ()) -> int:
  """In-process entry point (tests, notebooks): parse `argv`, train, return the exit code."""
  define_flags()
  return cli.run_in_process(argv, lambda _: train_from_flags(callbacks))


def main(callbacks: Sequence[Any] = ()) -> None:
  """The command line: absl sets up logging; `callbacks` are extra Keras callbacks."""
  define_flags()
  cli.run(functools.partial(_app_main, callbacks=callbacks))


def _app_main(argv: Sequence[str], callbacks: Sequence[Any]) -> int:
  del argv  # cli.parse_flags has rejected positional arguments
  return train_from_flags(callbacks)


if __name__ == "__main__":
  main()
