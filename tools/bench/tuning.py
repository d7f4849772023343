r"""Memory and time per trial of a tuning sweep: does a long sweep leak, what does a trial cost.

Runs a small sweep in this process (`tuning.main` with its flags; defaults
below: 12 random trials of one short epoch) and after every trial prints its
wall time, fit time, overhead (wall minus fit: model build, compile, tracing is
in fit; checkpoint, oracle bookkeeping, results files), the gap since the
previous trial ended, and the process's current and peak RSS. The summary
gives the peak-RSS growth from the end of trial 2 (the first trial pays for the
data cache and one-off start-up) to the last trial, per trial.

    python -m tools.bench.tuning                       # 12 trials on the default data
    python -m tools.bench.tuning --max_trials=20 --max_steps_per_epoch=5 --dataset=fer2013
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

from absl import flags

FLAGS = flags.FLAGS
# A small sweep unless the command line says otherwise.
DEFAULTS = {"max_trials": 12, "epochs": 1, "max_steps_per_epoch": 20, "batch_size": 64,
            "overwrite": True, "project_name": "bench_tuning"}


def rss_mib() -> tuple[float, float]:
  """(current, peak) resident set size of this process, MiB."""
  current = 0.0
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        current = int(line.split()[1]) / 1024
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
  return current, peak


class Recorder:
  """The trial hook: one line per trial, kept for the summary."""

  def __init__(self) -> None:
    self.rows: list[dict[str, Any]] = []

  def __call__(self, tuner: Any, trial: Any, info: dict[str, Any]) -> None:
    del tuner
    current, peak = rss_mib()
    wall = info["ended_at"] - info["started_at"]
    gap = info["started_at"] - self.rows[-1]["ended_at"] if self.rows else float("nan")
    row = {"trial": trial.trial_id, "status": trial.status, "wall": wall,
           "fit": info["fit_seconds"], "overhead": wall - info["fit_seconds"], "gap": gap,
           "rss": current, "peak": peak, "ended_at": info["ended_at"]}
    self.rows.append(row)
    if len(self.rows) == 1:
      print(f"{'trial':>5} {'status':>9} {'wall s':>7} {'fit s':>7} {'overhead s':>10} "
            f"{'gap s':>6} {'RSS MiB':>8} {'peak MiB':>9}")
    print(f"{row['trial']:>5} {row['status']:>9} {wall:7.2f} {row['fit']:7.2f} "
          f"{row['overhead']:10.2f} {gap:6.2f} {current:8.1f} {peak:9.1f}", flush=True)


def summary(rows: list[dict[str, Any]]) -> str:
  if len(rows) < 3:
    return "too few trials for a growth figure (need 3 or more)"
  later = rows[1:]
  growth = later[-1]["peak"] - later[0]["peak"]
  per_trial = growth / (len(later) - 1)
  rss_growth = later[-1]["rss"] - later[0]["rss"]
  overheads = [r["overhead"] for r in later]
  gaps = [r["gap"] for r in later]
  return (
      f"{len(rows)} trials. Peak RSS {rows[0]['peak']:.1f} MiB after trial {rows[0]['trial']}, "
      f"{later[0]['peak']:.1f} after trial {later[0]['trial']}, {later[-1]['peak']:.1f} after "
      f"trial {later[-1]['trial']}: growth {growth:+.1f} MiB over {len(later) - 1} trials "
      f"({per_trial:+.2f} MiB/trial); current RSS {rss_growth:+.1f} MiB.\n"
      f"Per trial (trials 2 on): wall {statistics.median(r['wall'] for r in later):.2f} s, "
      f"fit {statistics.median(r['fit'] for r in later):.2f} s, overhead (wall - fit) median "
      f"{statistics.median(overheads):.2f} s (max {max(overheads):.2f}), gap between trials "
      f"median {statistics.median(gaps):.2f} s.")


def main(argv: list[str]) -> int:
  from trainers import cli
  from tuning import config as tuning_config
  from tuning import main as tuning_main

  tuning_config.define_flags()
  for name, value in DEFAULTS.items():
    FLAGS.set_default(name, value)
  FLAGS.set_default("directory", os.path.join(tempfile.gettempdir(), "fer_bench_tuning"))
  cli.parse_flags(argv)
  recorder = Recorder()
  start = time.perf_counter()
  try:
    code = tuning_main.sweep_from_flags(trial_hooks=[recorder])
  except cli.UsageError as e:
    cli.fail(e)
  print(f"Sweep took {time.perf_counter() - start:.1f} s in all.")
  print(summary(recorder.rows), flush=True)
  return code


if __name__ == "__main__":
  sys.exit(main(sys.argv))
