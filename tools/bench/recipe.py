r"""Time to accuracy of a recipe over several seeds: mean and spread, with machine and commit.

Why: the figure users compare between training systems is time to a given
accuracy, and one seed says little (FER2013 runs differ by about a point). This
trains `python -m trainers.main --config=NAME --seed=S` once per seed, one after
the other in fresh processes (they would share the cores otherwise), and
prints, per seed and as mean +- standard deviation: the training time, the time
to each validation (PublicTest) accuracy threshold that every run's
finished.json records, the best PublicTest accuracy, and PrivateTest when the
recipe asks for it (`--eval_split=test`: measured once per seed, at the end).

  python -m tools.bench.recipe --config=recipe_fer_net --seeds=0,1
  python -m tools.bench.recipe --config=quickstart --seeds=0,1,2 --extra=--epochs=2

A recipe chosen on PublicTest can keep its exploration runs: train them with
`--extra=--eval_split=validation`, and once the recipe is final, rerun the
same command with `--test_once` (and without that extra flag for new seeds):
the finished runs are reused and their PrivateTest is measured then, once,
as the trainer would have at its end (report_test.json in the run).

The CPU model and its vector/matrix flags (avx2, avx512*, amx*) and the commit
are printed with the figures: bf16 speed differs by machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from absl import flags

from trainers import cli

FLAGS = flags.FLAGS
REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_REPORT = "report_test.json"  # where the trainer writes PrivateTest, and --test_once too
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8")


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string("config", None, "The recipe (trainers/configs/NAME.py) to run.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds, one run each.")
  flags.DEFINE_string("work_dir", os.path.join("runs", "bench_recipe"),
                      "Where the runs go (WORK_DIR/NAME_seedS); a finished run is reused.")
  flags.DEFINE_list("extra", [], "Extra trainer flags for every run, e.g. --extra=--epochs=2.")
  flags.DEFINE_boolean(
      "test_once", False,
      "For a finished seed that did not report PrivateTest (trained with "
      "--extra=--eval_split=validation while the recipe was being chosen on PublicTest), "
      "measure it now, once, as the trainer would have at its end: tools.evaluate of the run's "
      "model.keras (its best epoch) on test with the run's --tta, written to "
      "RUN/report_test.json. A seed with that file is read, never measured again. Give it only "
      "once the recipe is final.")


def machine() -> str:
  model, cpu_flags = platform.processor(), set()
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as info:
      for line in info:
        if line.startswith("model name") and model in ("", platform.processor()):
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
          cpu_flags = set(line.split(":", 1)[1].split())
  shown = " ".join(f for f in CPU_FLAGS if f in cpu_flags) or "none of " + " ".join(CPU_FLAGS)
  return f"{len(os.sched_getaffinity(0))} cores, {model} ({shown})"


def commit() -> str:
  result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
  dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                         cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
  return (result.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def run_seed(config: str, seed: int, work_dir: Path, extra: list[str],
             test_once: bool = False) -> dict[str, Any]:
  """Trains one seed (unless its run is finished already) and reads what it wrote."""
  model_dir = work_dir / f"{config}_seed{seed}"
  command = [sys.executable, "-m", "trainers.main", f"--config={config}", f"--seed={seed}",
             f"--model_dir={model_dir}", *extra]
  if not (model_dir / "finished.json").exists():
    print(f"seed {seed}: {' '.join(command[1:])}", flush=True)
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
      cli.fail(f"seed {seed} failed (exit {done.returncode}): "
               f"{cli.first_line(done.stderr.strip().splitlines()[-1] if done.stderr else '')}")
    print(f"seed {seed}: done in {time.monotonic() - start:.0f} s", flush=True)
  finished = json.loads((model_dir / "finished.json").read_text())
  result = {"seed": seed, "model_dir": str(model_dir),
            "train_seconds": finished["time_to_accuracy"]["train_seconds"],
            "to": finished["time_to_accuracy"]["val_accuracy"],
            "best_val": finished["best_val_accuracy"],
            "validation": finished["validation_accuracy"], "test": None}
  test_report = model_dir / TEST_REPORT  # the trainer's (--eval_split=test) or --test_once's
  if not test_report.exists() and test_once:
    measure_test(model_dir)
  if test_report.exists():
    result["test"] = json.loads(test_report.read_text())["accuracy"]
  return result


def measure_test(model_dir: Path) -> None:
  """PrivateTest of a finished run that was trained without it: its best epoch, its TTA."""
  settings = json.loads((model_dir / "run_config.json").read_text())["flags"]
  command = [sys.executable, "-m", "tools.evaluate", f"--model={model_dir / 'model.keras'}",
             "--split=test", f"--dataset={settings['dataset']}", f"--tta={settings['tta']}",
             f"--out={model_dir / TEST_REPORT}"]
  if settings.get("data_dir"):
    command.append(f"--data_dir={settings['data_dir']}")
  print(f"{model_dir}: PrivateTest measured now, once: {' '.join(command[1:])}", flush=True)
  done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
  if done.returncode != 0:
    cli.fail(f"{model_dir}: evaluating test failed (exit {done.returncode}): "
             f"{cli.first_line(done.stderr.strip().splitlines()[-1] if done.stderr else '')}")


def _spread(values: list[float | None]) -> str:
  known = [v for v in values if v is not None]
  if not known:
    return "-"
  if len(known) < len(values):
    return f"reached by {len(known)} of {len(values)}"
  mean = statistics.fmean(known)
  std = statistics.stdev(known) if len(known) > 1 else 0.0
  return f"{mean:.4g} +- {std:.2g}"


def report(config: str, results: list[dict[str, Any]]) -> None:
  thresholds = list(results[0]["to"])
  print(f"\n=== {config}: {len(results)} seeds; {machine()}; commit {commit()} ===")
  header = ["seed", "train s", "best PublicTest", "PublicTest (report)", "PrivateTest",
            *(f"s to {float(t):.0%}" for t in thresholds)]
  print(" | ".join(header))
  for r in results:
    cells = [str(r["seed"]), f"{r['train_seconds']:.0f}", f"{r['best_val']:.4f}",
             f"{r['validation']:.4f}", "-" if r["test"] is None else f"{r['test']:.4f}",
             *("-" if r["to"][t] is None else f"{r['to'][t]:.0f}" for t in thresholds)]
    print(" | ".join(cells))
  summary = ["mean +- std", _spread([r["train_seconds"] for r in results]),
             _spread([r["best_val"] for r in results]),
             _spread([r["validation"] for r in results]),
             _spread([r["test"] for r in results]),
             *(_spread([r["to"][t] for r in results]) for t in thresholds)]
  print(" | ".join(summary))
  print(json.dumps({"config": config, "machine": machine(), "commit": commit(),
                    "runs": results}))


def main(argv: list[str]) -> int:
  del argv
  if not FLAGS.config:
    raise cli.UsageError("--config is required: a recipe of trainers/configs/")
  from trainers import configs

  if FLAGS.config not in configs.names():
    raise cli.UsageError(f"--config={FLAGS.config}: unknown recipe; recipes: "
                         f"{', '.join(configs.names())}")
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError:
    raise cli.UsageError(f"--seeds takes integers, got {','.join(FLAGS.seeds)}") from None
  if not seeds:
    raise cli.UsageError("--seeds needs at least one seed")
  work_dir = Path(FLAGS.work_dir)
  results = [run_seed(FLAGS.config, seed, work_dir, list(FLAGS.extra), FLAGS.test_once)
             for seed in seeds]
  report(FLAGS.config, results)
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
