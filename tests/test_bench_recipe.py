"""tools.bench.recipe: a recipe over seeds, its per-seed figures read back from the runs."""

import json
import subprocess
import sys
from pathlib import Path

import fer_helpers as helpers
import pytest

pytestmark = pytest.mark.slow  # each runs whole recipes in fresh processes

ROOT = Path(__file__).resolve().parents[1]


def test_two_seeds_of_a_recipe_and_their_mean(tmp_path):
  helpers.build_fake_fer2013(tmp_path, (56, 14, 9), seed=7)  # 14 vs 9: accuracies differ
  extra = ",".join(["--dataset=fer2013", f"--data_dir={tmp_path / 'tfds'}", "--epochs=2",
                    "--max_steps_per_epoch=2", "--eval_split=test"])
  command = [sys.executable, "-m", "tools.bench.recipe", "--config=quickstart", "--seeds=0,1",
             f"--work_dir={tmp_path / 'runs'}", f"--extra={extra}"]
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.strip().splitlines()
  record = json.loads(lines[-1])
  assert [r["seed"] for r in record["runs"]] == [0, 1] and record["config"] == "quickstart"
  for run in record["runs"]:
    finished = json.loads((Path(run["model_dir"]) / "finished.json").read_text())
    assert run["test"] == finished["eval_accuracy"]  # PrivateTest, once per seed
    assert run["validation"] == finished["validation_accuracy"]
    assert run["train_seconds"] == finished["time_to_accuracy"]["train_seconds"] > 0
  rows = [line for line in lines if line.startswith(("0 |", "1 |"))]
  assert len(rows) == 2
  mean = next(line for line in lines if line.startswith("mean +- std"))
  best = [r["best_val"] for r in record["runs"]]
  assert f"{sum(best) / 2:.4g}" in mean.split(" | ")[2]
  assert "cores" in record["machine"] and record["commit"]


def test_test_once_measures_privatetest_of_an_exploration_run_as_the_trainer_would(tmp_path):
  """A seed trained without PrivateTest (exploring on PublicTest) gets it with --test_once:
  the same figure as a run that reported it at its end (deterministic twins), measured once."""
  helpers.build_fake_fer2013(tmp_path, (56, 14, 9), seed=7)
  common = ["--dataset=fer2013", f"--data_dir={tmp_path / 'tfds'}", "--epochs=1",
            "--max_steps_per_epoch=2", "--deterministic", "--tta=flip"]

  def bench(work_dir, extra, *more):
    command = [sys.executable, "-m", "tools.bench.recipe", "--config=quickstart", "--seeds=0",
               f"--work_dir={tmp_path / work_dir}", f"--extra={','.join(common + extra)}", *more]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["runs"][0]

  reported = bench("at_end", ["--eval_split=test"])
  explored = bench("explore", ["--eval_split=validation"])
  assert explored["test"] is None  # PrivateTest is not read while exploring
  report = Path(explored["model_dir"]) / "report_test.json"
  assert not report.exists()
  measured = bench("explore", [], "--test_once")
  assert measured["test"] == json.loads(report.read_text())["accuracy"]
  assert abs(measured["test"] - reported["test"]) < 1e-6
  assert json.loads(report.read_text())["tta"] == "flip"
  written = report.stat().st_mtime_ns
  assert bench("explore", [], "--test_once")["test"] == measured["test"]
  assert report.stat().st_mtime_ns == written  # never measured twice
