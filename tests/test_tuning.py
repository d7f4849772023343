"""KerasTuner sweeps (`python -m tuning.main`, `python -m tuning.launch`) on tiny data.

Sweeps in this process share one TensorFlow; what needs fresh processes runs
as subprocesses: SIGKILL during a trial and the rerun that resumes, the chief
and two workers on 127.0.0.1, and the exit code and stderr of bad input.
Every trial is tiny: 4-8 filters, 2 steps of 8 images, one epoch.
Over 400 lines on purpose: the sweeps share one module-scoped dataset fixture and
one argv helper; split, each part would rebuild them.
"""

import csv
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fer_helpers as helpers
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from trainers import cli, data, device_input, run_dir
from trainers import config as trainer_config
from trainers import main as trainer_main
from tuning import distributed, launch, results
from tuning import main as tuning_main
from tuning.hypermodel import FerHyperModel, Pipelines

ROOT = Path(__file__).resolve().parents[1]
ROWS = (56, 14, 14)  # train, validation, test examples
TINY = ["--dataset=fer2013", "--batch_size=8", "--max_steps_per_epoch=2", "--epochs=1",
        "--space_filters=4/8", "--space_dense_units=8,16"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A tiny fer2013 (from drawn rows), prepared once for the module."""
  root = tmp_path_factory.mktemp("fer2013")
  helpers.build_fake_fer2013(root, ROWS, seed=3)
  return str(root / "tfds")


def sweep_args(data_dir, directory, *extra, name="sweep"):
  return ["tuning.main", f"--data_dir={data_dir}", f"--directory={directory}",
          f"--project_name={name}", *TINY, *extra]


def trial_table(project):
  with open(Path(project) / results.TRIALS_CSV, newline="") as f:
    return list(csv.DictReader(f))


def error_line(stderr):
  """The one `error: ...` line of `stderr`, which must also be its last line."""
  errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, stderr
  assert stderr.rstrip().splitlines()[-1] == errors[0], stderr
  assert "Traceback" not in stderr, stderr
  return errors[0]


def subprocess_env(**extra):
  path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
  return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def fits_per_trial(project):
  """How many times each trial trained: the TensorBoard train logs KerasTuner keeps per trial."""
  logs = Path(project) / results.LOGS
  return {d.name: len(list(d.glob("execution*/train/events.out.tfevents.*")))
          for d in logs.iterdir() if d.is_dir()}


# --- one process -----------------------------------------------------------------------------


def test_sweep_writes_results_that_the_trainer_takes(data_dir, tmp_path, monkeypatch):
  splits = []
  original = data.make_dataset

  def spy(split, **kwargs):
    splits.append(split)
    return original(split, **kwargs)

  graphs = []

  def count_graphs(tuner, trial, info):
    gc.collect()
    graphs.append(sum(type(o).__name__ == "FuncGraph" for o in gc.get_objects()))

  loaded = device_input.load_split

  def spy_load(split, **kwargs):  # --input=device (auto on CPU) loads train once for all trials
    splits.append(split)
    return loaded(split, **kwargs)

  monkeypatch.setattr(data, "make_dataset", spy)
  monkeypatch.setattr(device_input, "load_split", spy_load)
  argv = sweep_args(data_dir, tmp_path, "--max_trials=3")
  assert tuning_main.run(argv, trial_hooks=[count_graphs]) == 0
  # One pipeline each for the whole sweep, all on train: carving the objective split (holdout),
  # the trials' training (the rest) and their objective (the holdout); PublicTest (validation)
  # and PrivateTest (test) are never read.
  assert splits == ["train", "train", "train"]
  # No trial's traced graphs outlive it (TensorFlow would keep them: tuners.py).
  assert len(graphs) == 3 and graphs[0] == graphs[1] == graphs[2]

  project = tmp_path / "sweep"
  rows = trial_table(project)
  assert [r["trial"] for r in rows] == ["0", "1", "2"]
  assert {r["status"] for r in rows} == {"COMPLETED"}
  for row in rows:
    # Scored on the holdout slice of train: 1 of the 8 examples of each class, 7 in all.
    assert float(row["val_accuracy"]) * 7 == pytest.approx(round(float(row["val_accuracy"]) * 7))
    assert set(row["filters"].split("-")) <= {"4", "8"}
    assert float(row["seconds"]) >= float(row["fit_seconds"]) > 0
    assert row["worker"] == "tuner0" and row["error"] == ""
  markdown = (project / results.TRIALS_MD).read_text()
  assert markdown.count("| COMPLETED |") == 3 and "Best: trial" in markdown
  assert (project / results.PLOT).read_bytes()[:8] == PNG_SIGNATURE
  # TensorBoard: the HParams experiment at the top, a session and scalars per trial.
  experiment = event_accumulator.EventAccumulator(str(project / results.LOGS))
  experiment.Reload()
  raw = experiment.PluginTagToContent("hparams")["_hparams_/experiment"]
  names = [h.name for h in plugin_data_pb2.HParamsPluginData.FromString(raw)
           .experiment.hparam_infos]
  assert names == ["filters_1", "filters_2", "filters_3", "filters_4", "dropout", "dense_units",
                   "learning_rate"]
  assert fits_per_trial(project) == {"0": 1, "1": 1, "2": 1}

  # best_hparams.json is the best row, and trainers.main trains from it as it is.
  best_file = project / results.BEST_HPARAMS
  best = json.loads(best_file.read_text())
  top = max(rows, key=lambda r: float(r["val_accuracy"]))
  assert best["tuner/trial_id"] == top["trial"]
  assert best["model"] == "improved_cnn" and best["batch_size"] == 8
  assert "-".join(map(str, best["filters"])) == top["filters"]
  model_dir = tmp_path / "retrained"
  code = trainer_main.run(["trainers.main", f"--hparams={best_file}", f"--data_dir={data_dir}",
                           f"--model_dir={model_dir}", "--dataset=fer2013",
                           "--max_steps_per_epoch=2", "--epochs=1"])
  assert code == 0
  run_config = json.loads((model_dir / run_dir.RUN_CONFIG).read_text())["flags"]
  assert run_config["hparams"] == {k: best[k] for k in ("filters", "dropout", "dense_units")}
  assert run_config["learning_rate"] == best["learning_rate"] and run_config["batch_size"] == 8

  # The same command again: the finished sweep is reloaded, nothing runs twice.
  assert tuning_main.run(argv) == 0
  assert [r["trial"] for r in trial_table(project)] == ["0", "1", "2"]
  assert fits_per_trial(project) == {"0": 1, "1": 1, "2": 1}
  # Raising --max_trials continues it.
  assert tuning_main.run(argv[:-1] + ["--max_trials=4"]) == 0
  assert [r["trial"] for r in trial_table(project)] == ["0", "1", "2", "3"]


def test_failed_trial_is_recorded_and_the_sweep_goes_on(data_dir, tmp_path, monkeypatch):
  calls = []
  original = FerHyperModel.fit

  def fit(self, hp, model, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    return original(self, hp, model, *args, **kwargs)

  monkeypatch.setattr(FerHyperModel, "fit", fit)
  assert tuning_main.run(sweep_args(data_dir, tmp_path, "--max_trials=3")) == 0
  rows = trial_table(tmp_path / "sweep")
  assert [r["status"] for r in rows] == ["COMPLETED", "FAILED", "COMPLETED"]
  assert rows[1]["val_accuracy"] == ""
  assert "out of memory: OOM when allocating tensor" in rows[1]["error"]
  trial = json.loads((tmp_path / "sweep" / "trial_1" / "trial.json").read_text())
  assert trial["status"] == "FAILED" and "ResourceExhaustedError" in trial["message"]
  assert "FAILED" in (tmp_path / "sweep" / results.TRIALS_MD).read_text()


def test_too_many_failures_in_a_row_stop_the_sweep(data_dir, tmp_path, monkeypatch, capsys):
  def fit(self, hp, model, *args, **kwargs):
    raise ValueError("broken trial")

  monkeypatch.setattr(FerHyperModel, "fit", fit)
  argv = sweep_args(data_dir, tmp_path, "--max_trials=5", "--max_consecutive_failed_trials=2")
  assert tuning_main.run(argv) == tuning_main.EXIT_FAILED
  err = capsys.readouterr().err
  assert "stopped after 2 failed trials in a row" in err and "broken trial" in err
  rows = trial_table(tmp_path / "sweep")
  assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
  assert rows[0]["error"] == "ValueError: broken trial"


def test_hyperband_continues_the_best_trial_from_its_checkpoint(data_dir, tmp_path):
  # max_epochs 2, factor 2: two 1-epoch trials, then the better one trained on to epoch 2.
  argv = sweep_args(data_dir, tmp_path, "--tuner=hyperband", "--max_epochs=2",
                    "--hyperband_factor=2", "--max_trials=3")
  assert tuning_main.run(argv) == 0
  rows = trial_table(tmp_path / "sweep")
  assert [(r["status"], r["epochs"], r["initial_epoch"]) for r in rows] == [
      ("COMPLETED", "1", "0"), ("COMPLETED", "1", "0"), ("COMPLETED", "2", "1")]
  first_round = [r for r in rows if r["epochs"] == "1"]
  best = max(first_round, key=lambda r: float(r["val_accuracy"]))
  assert rows[2]["filters"] == best["filters"] and rows[2]["dropout"] == best["dropout"]


def test_searched_augmentation_builds_one_pipeline_per_strength(data_dir, tmp_path,
                                                               monkeypatch):
  # Once trainers.main --hparams takes augment_strength, a sweep may search it.
  monkeypatch.setattr(trainer_config, "TRAINING_HPARAMS",
                      (*trainer_config.TRAINING_HPARAMS, "augment_strength"))
  builds = []
  original = Pipelines.train

  def spy(self, augment_strength):
    result = original(self, augment_strength)
    builds[:] = self.builds
    return result

  monkeypatch.setattr(Pipelines, "train", spy)
  argv = sweep_args(data_dir, tmp_path, "--max_trials=3", "--space_augment_strength=0,1",
                    "--space_filters=4", "--space_dense_units=8")
  assert tuning_main.run(argv) == 0
  rows = trial_table(tmp_path / "sweep")
  strengths = {float(r["augment_strength"]) for r in rows}
  trains = [b for b in builds if b.startswith("train")]
  assert sorted(trains) == sorted(f"train@{s:g}" for s in strengths)  # each built once
  best = json.loads((tmp_path / "sweep" / results.BEST_HPARAMS).read_text())
  _, training, _ = trainer_config.load_hparams(str(tmp_path / "sweep" / results.BEST_HPARAMS),
                                              "improved_cnn")
  assert training["augment_strength"] == best["augment_strength"] in strengths


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    (["--tuner=grid"], "flag --tuner=grid: value should be one of <hyperband|bayesian|random>"),
    (["--space_filters=8,16"], "--space_filters: the model has 4 conv blocks"),
    (["--model_dir=elsewhere"], "--model_dir is a trainers.main flag"),
])
def test_bad_input_is_one_error_and_nothing_runs(data_dir, tmp_path, capsys, extra, message):
  assert tuning_main.run(sweep_args(data_dir, tmp_path, *extra)) == tuning_main.EXIT_USAGE
  assert message in capsys.readouterr().err
  assert not (tmp_path / "sweep").exists()


def test_port_in_use_is_a_clear_error(data_dir, tmp_path, monkeypatch, capsys):
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    monkeypatch.setenv(distributed.TUNER_ID, "chief")
    monkeypatch.setenv(distributed.ORACLE_IP, "127.0.0.1")
    monkeypatch.setenv(distributed.ORACLE_PORT, str(port))
    assert tuning_main.run(sweep_args(data_dir, tmp_path)) == tuning_main.EXIT_USAGE
  assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
  assert not (tmp_path / "sweep").exists()


def test_unreachable_chief_is_a_clear_error(data_dir, tmp_path, monkeypatch, capsys):
  port = distributed.free_port()
  monkeypatch.setenv(distributed.TUNER_ID, "tuner0")
  monkeypatch.setenv(distributed.ORACLE_IP, "127.0.0.1")
  monkeypatch.setenv(distributed.ORACLE_PORT, str(port))
  start = time.monotonic()
  code = tuning_main.run(sweep_args(data_dir, tmp_path, "--oracle_timeout=1"))
  assert code == tuning_main.EXIT_USAGE and time.monotonic() - start < 30
  assert (f"cannot reach the chief oracle at 127.0.0.1:{port} within 1 s"
          in capsys.readouterr().err)


def test_incomplete_distributed_environment(monkeypatch):
  monkeypatch.setenv(distributed.ORACLE_IP, "127.0.0.1")
  monkeypatch.delenv(distributed.ORACLE_PORT, raising=False)
  monkeypatch.delenv(distributed.TUNER_ID, raising=False)
  with pytest.raises(cli.UsageError, match="needs KERASTUNER_TUNER_ID, "
                     "KERASTUNER_ORACLE_PORT as well"):
    distributed.role()
  monkeypatch.setenv(distributed.TUNER_ID, "tuner3")
  monkeypatch.setenv(distributed.ORACLE_PORT, "http")
  with pytest.raises(cli.UsageError, match="'http' is not a port number"):
    distributed.role()
  monkeypatch.setenv(distributed.ORACLE_PORT, "8000")
  assert distributed.role() == "tuner3"


def test_bad_input_from_a_fresh_process(data_dir, tmp_path):
  command = [sys.executable, "-m", "tuning.main", *sweep_args(data_dir, tmp_path)[1:],
             "--space_dropout=0.9,0.1"]
  result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 2
  assert error_line(result.stderr) == (
      "error: --space_dropout: need 0 <= MIN <= MAX < 1, got MIN=0.9, MAX=0.1")


# --- SIGKILL during a trial, then the same command -------------------------------------------

# Runs tuning.main with a callback that slows every step and logs each fit, so the
# test can kill the sweep in the middle of a known trial.
_SLOW_SWEEP = textwrap.dedent("""
    import os, sys, time
    import keras
    from tuning import main

    progress = os.environ["PROGRESS_FILE"]

    class Slow(keras.callbacks.Callback):
      def on_train_begin(self, logs=None):
        with open(progress, "a") as f:
          f.write("fit\\n")

      def on_train_batch_end(self, batch, logs=None):
        time.sleep(float(os.environ["STEP_DELAY"]))
        with open(progress, "a") as f:
          f.write("step\\n")

    sys.argv[0] = "tuning.main"
    main.main(callbacks=[Slow()])
""")


def _read(path):
  return path.read_text() if path.exists() else ""


@pytest.mark.slow
def test_sigkill_during_a_trial_then_the_same_command_resumes(data_dir, tmp_path):
  script = tmp_path / "slow_sweep.py"
  script.write_text(_SLOW_SWEEP)
  progress = tmp_path / "progress.txt"
  env = subprocess_env(PROGRESS_FILE=str(progress), STEP_DELAY="0.3")
  command = [sys.executable, str(script), *sweep_args(data_dir, tmp_path / "sweeps")[1:],
             "--max_trials=3"]
  project = tmp_path / "sweeps" / "sweep"

  first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
  try:
    # Kill once trial 0 is recorded and trial 1 has trained a step.
    deadline = time.monotonic() + 180
    while not (_read(progress).split().count("fit") == 2 and _read(progress).endswith("step\n")):
      assert first.poll() is None, first.stderr.read()[-3000:]
      assert time.monotonic() < deadline, "timed out waiting for trial 1"
      time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
  finally:
    if first.poll() is None:
      os.killpg(first.pid, signal.SIGKILL)
      first.wait()
  assert first.returncode == -signal.SIGKILL
  before = trial_table(project)  # written after each trial: trial 0 only
  assert [(r["trial"], r["status"]) for r in before] == [("0", "COMPLETED")]
  assert json.loads((project / "trial_1" / "trial.json").read_text())["status"] == "RUNNING"
  trial0 = json.loads((project / "trial_0" / "run.json").read_text())

  second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
  assert second.returncode == 0, second.stderr[-3000:]
  rows = trial_table(project)
  assert [(r["trial"], r["status"]) for r in rows] == [
      ("0", "COMPLETED"), ("1", "COMPLETED"), ("2", "COMPLETED")]
  assert rows[0]["val_accuracy"] == before[0]["val_accuracy"]  # kept, not rerun
  assert json.loads((project / "trial_0" / "run.json").read_text()) == trial0
  # Fits: trial 0, trial 1 (killed), trial 1 again, trial 2.
  assert _read(progress).split().count("fit") == 4
  fits = fits_per_trial(project)
  assert fits["0"] == fits["2"] == 1 and fits["1"] in (1, 2)  # 2: the killed attempt's log


# --- a chief and two workers -----------------------------------------------------------------


def test_chief_and_two_workers_run_every_trial_once(data_dir, tmp_path):
  directory = tmp_path / "sweeps"
  command = [sys.executable, "-m", "tuning.launch", "--workers=2", "--oracle_ip=127.0.0.1",
             *sweep_args(data_dir, directory)[1:], "--max_trials=4"]
  result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=400)
  project = directory / "sweep"
  logs = {p.name: p.read_text() for p in (project / launch.LOGS).glob("*.log")}
  assert result.returncode == 0, (result.stderr[-3000:], {n: t[-2000:] for n, t in logs.items()})
  assert sorted(logs) == ["chief.log", "tuner0.log", "tuner1.log"]
  assert "Chief oracle listening on 127.0.0.1:" in logs["chief.log"]

  rows = trial_table(project)
  assert [(r["trial"], r["status"]) for r in rows] == [(str(i), "COMPLETED") for i in range(4)]
  assert {r["worker"] for r in rows} <= {"tuner0", "tuner1"}
  assert fits_per_trial(project) == {str(i): 1 for i in range(4)}  # every trial ran once
  best = json.loads((project / results.BEST_HPARAMS).read_text())
  trainer_config.load_hparams(str(project / results.BEST_HPARAMS), "improved_cnn")
  assert best["tuner/trial_id"] in {r["trial"] for r in rows}
  assert "Best: trial" in result.stdout


def _python(code):
  return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def test_launcher_stops_everything_when_a_worker_fails():
  chief = _python("import time; time.sleep(120)")
  workers = {"tuner0": _python("import time; time.sleep(120)"),
             "tuner1": _python("import sys, time; time.sleep(0.5); sys.exit(3)")}
  start = time.monotonic()
  codes = launch.supervise(chief, workers, poll=0.05)
  assert time.monotonic() - start < 30
  assert codes["tuner1"] == 3
  assert codes["tuner0"] == -signal.SIGTERM and codes["chief"] == -signal.SIGTERM


def test_launcher_waits_for_the_chief_after_the_workers():
  chief = _python("import time; time.sleep(1)")
  workers = {"tuner0": _python("pass"), "tuner1": _python("import time; time.sleep(0.3)")}
  assert launch.supervise(chief, workers, poll=0.05) == {"tuner0": 0, "tuner1": 0, "chief": 0}


@pytest.mark.parametrize("extra, message", [
    (["--gpus=0,0"], "--gpus=0,0: expected distinct GPU indices"),
    (["--gpus=0,1", "--workers=2"], "give --gpus or --workers, not both"),
    (["--gpus=0,1,2", "--gpus_per_worker=2"], "3 GPUs do not split into workers"),
    (["--workers=1", "--nochief"], "--nochief needs the remote chief's --oracle_port"),
    (["--workers=1", "--tuner=grid"], "--tuner=grid"),
])
def test_launcher_bad_input(data_dir, tmp_path, capsys, extra, message):
  argv = ["tuning.launch", *sweep_args(data_dir, tmp_path)[1:], *extra]
  assert launch.run(argv) == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "sweep").exists()


def test_launcher_splits_gpus_over_workers(monkeypatch):
  assert launch.worker_devices("0,1,2,3", 0, 1) == ["0", "1", "2", "3"]
  assert launch.worker_devices("0,1,2,3", 0, 2) == ["0,1", "2,3"]
  assert launch.worker_devices(None, 3, 1) == ["", "", ""]
  monkeypatch.setattr(launch, "_VISIBLE_AT_START", "2,3")  # CUDA_VISIBLE_DEVICES=2,3
  assert launch.worker_devices("all", 0, 1) == ["2", "3"]
  assert launch.worker_devices(None, 0, 2) == ["2,3"]
  monkeypatch.setattr(launch, "_VISIBLE_AT_START", "")
  with pytest.raises(cli.UsageError, match="no GPU found"):
    launch.worker_devices(None, 0, 1)
