"""`--strategy=multi_worker_mirrored` on 2 local workers (127.0.0.1, free ports).

Each worker is a fresh process (MultiWorkerMirroredStrategy must be made before
TensorFlow runs anything), started in its own process group and killed in a
`finally`; every wait is bounded. Tiny data: the fer2013 of test_trainer.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fer_helpers as helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_tfds.fer2013 import fake_data
from tools import launch_local_cluster as cluster
from trainers import export, main, run_dir

ROOT = Path(__file__).resolve().parents[1]
ROWS = (56, 14, 14)  # train (8 per class), validation, test
MULTI = "--strategy=multi_worker_mirrored"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("fer2013")
  helpers.build_fake_fer2013(root, ROWS, seed=3)
  return str(root / "tfds")


def args(data_dir, model_dir, *extra):
  return [f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--dataset=fer2013",
          "--batch_size=8", "--max_steps_per_epoch=2", *extra]


def history(model_dir):
  with open(Path(model_dir) / run_dir.HISTORY, newline="") as f:
    return list(csv.DictReader(f))


def env_with_root(**extra):
  path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
  return {**os.environ, "PYTHONPATH": path, **extra}


def finish(processes, timeout):
  """(returncode, stdout, stderr) of each process, waiting at most `timeout` s in all; kills
  them all on expiry."""
  deadline = time.monotonic() + timeout
  results = []
  try:
    for process in processes:
      out, err = process.communicate(timeout=max(1, deadline - time.monotonic()))
      results.append((process.returncode, out or "", err or ""))
  finally:
    cluster.stop(processes)
  return results


def run_both(data_dir, tmp_path, *extra, multi_input="host"):
  """The same training on 2 local workers (their input at `multi_input`) and in one process
  (Keras fit, host input), at once; returns (multi_dir, single_dir, the launcher's output,
  the launcher's command)."""
  hparams = tmp_path / "hp.json"
  hparams.write_text('{"dropout": 0.0}')
  same = ["--epochs=2", f"--batch_size={ROWS[0]}", "--max_steps_per_epoch=3",
          "--deterministic", "--augment_strength=0", f"--hparams={hparams}",
          "--lr_schedule=constant", *extra]
  multi_dir, single_dir, scratch = tmp_path / "multi", tmp_path / "single", tmp_path / "tmp"
  scratch.mkdir()
  launcher = [sys.executable, "-m", "tools.launch_local_cluster", "--num_workers=2",
              "--timeout=240", "--", *args(data_dir, multi_dir, *same), MULTI,
              f"--input={multi_input}"]
  single = [sys.executable, "-m", "trainers.main", *args(data_dir, single_dir, *same),
            "--input=host"]
  processes = [
      subprocess.Popen(launcher, cwd=ROOT, env=env_with_root(TMPDIR=str(scratch)),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       start_new_session=True),
      subprocess.Popen(single, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, start_new_session=True),
  ]
  # The launcher merges the workers' stderr into its stdout.
  (code_m, out_m, _), (code_s, _, err_s) = finish(processes, 280)
  assert code_m == 0, out_m[-4000:]
  assert code_s == 0, err_s[-3000:]
  return multi_dir, single_dir, out_m, launcher


def assert_same_history(multi_dir, single_dir, rel=1e-4):
  """history.csv of both runs: same columns, same losses and accuracies epoch by epoch."""
  rows_m, rows_s = history(multi_dir), history(single_dir)
  assert [r["epoch"] for r in rows_m] == ["0", "1"]
  assert list(rows_m[0]) == list(rows_s[0])  # the same history.csv columns
  for row_m, row_s in zip(rows_m, rows_s, strict=True):
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
      assert float(row_m[key]) == pytest.approx(float(row_s[key]), rel=rel, abs=1e-6), key
  assert float(rows_m[1]["loss"]) < float(rows_m[0]["loss"])  # it trained


# --- the same training as one process, only the chief writes --------------------------------


def test_two_workers_match_one_process_and_only_the_chief_writes(data_dir, tmp_path):
  """Same global batch and seed, deterministic, no augmentation or dropout: the 2-worker run's
  losses and accuracies match a single-process `fit` run's, epoch by epoch (run_both).

  What is compared: each step's global batch is the whole train split (56 = 2 x 28, each
  worker's even split), so every step sees the same examples in both runs whatever the
  shuffled order. So this checks the forward pass, the loss, the gradients summed over the
  workers, the optimizer update and the reported metrics of the custom loop against Keras
  `fit`; not the order of the data, which differs by design (each worker shuffles its half).
  Tolerance: relative 1e-4 (float sums in another order; 6 Adam steps).
  """
  multi_dir, single_dir, out_m, launcher = run_both(data_dir, tmp_path)
  scratch = tmp_path / "tmp"

  record = json.loads((multi_dir / run_dir.RUN_CONFIG).read_text())
  assert record["num_replicas"] == 2 and record["num_workers"] == 2
  assert_same_history(multi_dir, single_dir)

  # The chief wrote exactly the files of a one-process run; worker 1 left nothing behind.
  assert sorted(os.listdir(multi_dir)) == sorted(os.listdir(single_dir))
  assert sorted(p.name for p in (multi_dir / run_dir.CHECKPOINTS).iterdir()) == [
      "epoch_001.weights.h5", "epoch_002.weights.h5"]
  assert list((multi_dir / run_dir.LOGS).rglob("events.out.tfevents.*"))
  assert not [p.name for p in scratch.iterdir() if p.name.startswith("fer-tf-")]
  assert out_m.count("Epoch 1/2") == 1  # progress from the chief only

  # The chief's export evaluates: its predictions give the report's accuracy.
  result = json.loads((multi_dir / run_dir.report_name("validation")).read_text())
  exported = keras.saving.load_model(multi_dir / run_dir.FINAL)
  common = dict(dataset="fer2013", data_dir=data_dir, image_size=48, channels=1, seed=0,
                deterministic=True)
  labels, probabilities = export.predict_split(exported, "validation", 7, common)
  assert len(labels) == ROWS[1]
  assert (probabilities.argmax(axis=1) == labels).mean() == pytest.approx(result["accuracy"])
  loaded = tf.saved_model.load(str(multi_dir / run_dir.SAVED_MODEL))
  images = np.random.default_rng(0).random((2, 48, 48, 1)).astype(np.float32)
  np.testing.assert_allclose(loaded.serve(images).numpy(), exported.predict(images, verbose=0),
                             rtol=1e-4, atol=1e-6)

  # The same command again: the chief refuses the finished run, and so do the others
  # (they learn it from the chief instead of waiting for it).
  again = subprocess.run(launcher, cwd=ROOT, env=env_with_root(), capture_output=True,
                         text=True, timeout=180)
  assert again.returncode == 2, again.stdout[-3000:]
  assert "[worker 0] error: " in again.stdout and "finished run" in again.stdout
  assert "[worker 1] error: the chief worker refused the run" in again.stdout


@pytest.fixture(scope="module")
def unbalanced_data_dir(tmp_path_factory):
  """Train labels 40/30/30% over 3 classes: balanced class weights are not all 1."""
  root = tmp_path_factory.mktemp("unbalanced")
  rows = helpers.bar_rows({"Training": ROWS[0], "PublicTest": ROWS[1], "PrivateTest": ROWS[2]})
  fake_data.write_csv(root / "manual" / "fer2013.csv", rows)
  helpers.build(root / "manual", root / "tfds")
  return str(root / "tfds")


def test_two_workers_with_device_input_match_one_process_with_host_input(data_dir, tmp_path):
  """--input=device on 2 workers (each holds the split, gathers its half of every global
  batch in its step) against Keras fit on the host pipeline in one process: with the whole
  split as the batch, the same examples every step, so the same losses (rel 1e-4)."""
  multi_dir, single_dir, out_m, _ = run_both(data_dir, tmp_path, multi_input="device")
  assert "Input on the device: --input=device" in out_m
  assert_same_history(multi_dir, single_dir)


@pytest.mark.parametrize("multi_input", ["host", "device"])
def test_two_workers_match_one_process_with_class_weights_smoothing_and_bf16(
    unbalanced_data_dir, tmp_path, multi_input):
  """As above, with --class_weights=balanced on unbalanced labels, --label_smoothing and
  --mixed_precision (bfloat16 on CPU). Keras's `fit` does not weigh `metrics=["accuracy"]`
  by the sample (class) weights, so neither may the custom loop.
  Tolerance: relative 1e-3 (bfloat16 sums in another order)."""
  multi_dir, single_dir, _, _ = run_both(
      unbalanced_data_dir, tmp_path, "--class_weights=balanced", "--label_smoothing=0.1",
      "--mixed_precision", multi_input=multi_input)
  assert_same_history(multi_dir, single_dir, rel=1e-3)


def test_two_workers_steps_per_execution_trains_the_same_steps(unbalanced_data_dir, tmp_path):
  """--steps_per_execution=3 in the custom loop: the same 3 steps per epoch, on the same
  batches, as one step per execution (both on 2 workers: the same shuffled order, seeded).
  `fit` cannot be the reference: its epoch has other batches than the workers' halves."""
  hparams = tmp_path / "hp.json"
  hparams.write_text('{"dropout": 0.0}')
  dirs = {spe: tmp_path / f"spe{spe}" for spe in (1, 3)}
  processes = []
  for spe, model_dir in dirs.items():
    scratch = tmp_path / f"tmp{spe}"
    scratch.mkdir()
    command = [sys.executable, "-m", "tools.launch_local_cluster", "--num_workers=2",
               "--timeout=240", "--", *args(unbalanced_data_dir, model_dir), MULTI,
               "--epochs=2", "--batch_size=18", "--max_steps_per_epoch=0", "--deterministic",
               "--augment_strength=0", f"--hparams={hparams}", "--lr_schedule=constant",
               f"--steps_per_execution={spe}"]
    processes.append(subprocess.Popen(command, cwd=ROOT, env=env_with_root(TMPDIR=str(scratch)),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True))
  for code, out, _ in finish(processes, 280):
    assert code == 0, out[-4000:]
  assert "3 steps/epoch" in out  # 56 // 18
  assert_same_history(dirs[3], dirs[1])


def test_steps_per_execution_must_divide_the_epoch(data_dir, tmp_path, capsys):
  """Keras's fit would round each epoch up to a multiple of --steps_per_execution: refused."""
  code = main.run(["trainers.main", *args(data_dir, tmp_path / "run"), "--epochs=1",
                   "--max_steps_per_epoch=4", "--steps_per_execution=3"])
  assert code == 2
  (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
  assert "--steps_per_execution=3 does not divide the 4 steps" in line
  assert "such as 2 or 4" in line


# --- input sharding: each worker its own examples, every epoch ------------------------------

_SHARD_SCRIPT = textwrap.dedent("""
    import json, sys
    from trainers import data
    from trainers import strategy as strategy_lib

    strategy = strategy_lib.make_strategy("multi_worker_mirrored")
    data_dir, out = sys.argv[1:]
    # Global batch 14 = 7 per worker, 4 steps: one pass over a worker's 28 examples.
    ds = data.distributed_dataset(strategy, "train", global_batch_size=14, dataset="fer2013",
                                  data_dir=data_dir, training=True, with_ids=True, repeat=True)
    iterator = iter(ds)
    epochs = []
    for _ in range(3):
      ids = []
      for _ in range(4):
        batch = next(iterator)
        for part in strategy.experimental_local_results(batch[2]):
          ids += [i.decode() for i in part.numpy()]
      epochs.append(ids)
    json.dump(epochs, open(out, "w"))
""")


def test_each_worker_reads_its_own_examples_every_epoch(data_dir, tmp_path):
  """The train split is 16 TFRecord files (fer_tfds/sharding.py), so the 2 workers shard it
  by files (8 each, data.shard_split): their epochs are disjoint and complete."""
  script = tmp_path / "shards.py"
  script.write_text(_SHARD_SCRIPT)
  outs = [tmp_path / f"ids_{i}.json" for i in range(2)]
  processes = _start_shard_workers(script, data_dir, outs)
  for code, _, err in finish(processes, 150):
    assert code == 0, err[-3000:]
  seen = [json.loads(out.read_text()) for out in outs]
  every_id = set()
  for epoch in range(3):
    first, second = (set(worker[epoch]) for worker in seen)
    assert len(seen[0][epoch]) == len(first) == 28 and len(second) == 28, epoch
    assert not first & second, epoch
    every_id |= first | second
    assert len(first | second) == ROWS[0], epoch
  assert len(every_id) == ROWS[0]
  assert seen[0][0] != seen[0][1]  # reshuffled each epoch


def _start_shard_workers(script, data_dir, outs):
  addresses = [f"127.0.0.1:{port}" for port in cluster.free_ports(2)]
  processes = []
  try:
    for index, out in enumerate(outs):
      env = env_with_root(TF_CONFIG=cluster.tf_config(addresses, index))
      processes.append(subprocess.Popen(
          [sys.executable, str(script), data_dir, str(out)], cwd=ROOT, env=env,
          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
          start_new_session=True))
  except BaseException:
    cluster.stop(processes)
    raise
  return processes


# --- fault tolerance: SIGKILL a worker, restart the cluster with the same command -----------

# trainers.main with a callback that slows every step and logs progress and a checksum
# of the weights per worker, so the test can kill at a known point and compare workers.
_SLOW_LAUNCHER = textwrap.dedent("""
    import json, os, sys, time
    import keras
    import numpy as np
    from trainers import main

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    progress = os.environ["PROGRESS_FILE"] + f".{index}"
    delay = float(os.environ["STEP_DELAY"])

    def log(line):
      with open(progress, "a") as f:
        f.write(line + "\\n")

    class Slow(keras.callbacks.Callback):
      def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        log(f"begin {epoch}")

      def on_train_batch_end(self, batch, logs=None):
        time.sleep(delay)
        log(f"step {self.epoch} {batch}")

      def on_epoch_end(self, epoch, logs=None):
        total = sum(float(np.sum(w, dtype=np.float64)) for w in self.model.get_weights())
        log(f"weights {epoch} {total!r} {int(self.model.optimizer.iterations.numpy())}")

    sys.argv[0] = "trainers.main"
    main.main(callbacks=[Slow()])
""")


def _read(path):
  return path.read_text() if path.exists() else ""


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["host", "device"])
def test_sigkill_a_worker_then_same_command_resumes(data_dir, tmp_path, placement):
  launcher = tmp_path / "slow_main.py"
  launcher.write_text(_SLOW_LAUNCHER)
  model_dir = tmp_path / "run"
  progress = tmp_path / "progress"
  chief_log, other_log = (Path(f"{progress}.{i}") for i in range(2))
  env = env_with_root(PROGRESS_FILE=str(progress), STEP_DELAY="0.3")
  command = [sys.executable, str(launcher), *args(data_dir, model_dir, "--epochs=3",
                                                  "--max_steps_per_epoch=4", MULTI,
                                                  f"--input={placement}")]
  backup = model_dir / run_dir.BACKUP / "training_metadata.json"

  first = cluster.start_workers(command, 2, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 180
    # Kill worker 1 once epoch 0 is backed up and epoch 1 is half done (2 of 4 steps).
    while not (backup.exists() and "step 1 1" in _read(chief_log)):
      dead = [p.returncode for p in first if p.poll() is not None]
      assert not dead, f"a worker ended (rc {dead}) early: {first[0].stderr.read()[-3000:]}"
      assert time.monotonic() < deadline, "timed out waiting for the backup of epoch 0"
      time.sleep(0.05)
    os.killpg(first[1].pid, signal.SIGKILL)
    assert first[1].wait(30) == -signal.SIGKILL
    # Worker 0 fails on its lost peer (UnavailableError) instead of waiting for ever.
    first[0].wait(90)
    assert first[0].returncode not in (None, 0)
  finally:
    cluster.stop(first)
  assert [r["epoch"] for r in history(model_dir)] == ["0"]
  assert not (model_dir / run_dir.FINISHED).exists()

  for log in (chief_log, other_log):
    log.write_text("")
  second = cluster.start_workers(command, 2, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
  (code_0, _, err_0), (code_1, _, err_1) = finish(second, 300)
  assert code_0 == 0, err_0[-3000:]
  assert code_1 == 0, err_1[-3000:]
  assert "Resuming" in err_0 and "after epoch 1 of 3" in err_0
  for log in (chief_log, other_log):  # both workers resumed at epoch 1, from the chief's state
    assert [line for line in _read(log).splitlines() if line.startswith("begin")] == [
        "begin 1", "begin 2"], log
  weights = [[line for line in _read(log).splitlines() if line.startswith("weights")]
             for log in (chief_log, other_log)]
  assert weights[0] == weights[1] and len(weights[0]) == 2  # same weights and step count
  assert weights[0][0].endswith(" 8")  # optimizer steps: 4 restored + 4 in epoch 1
  assert [r["epoch"] for r in history(model_dir)] == ["0", "1", "2"]
  assert (model_dir / run_dir.FINISHED).is_file() and (model_dir / run_dir.FINAL).is_file()
  assert not (model_dir / run_dir.BACKUP).exists()


# --- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    (["--strategy=tpu"], "--strategy=tpu needs --tpu"),
    (["--tpu=local"], "--tpu is only used with --strategy=tpu"),
])
def test_tpu_flags_are_checked_before_training(data_dir, tmp_path, capsys, extra, message):
  code = main.run(["trainers.main", *args(data_dir, tmp_path / "run"), *extra])
  assert code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err
  assert not (tmp_path / "run").exists()


def test_multi_worker_in_a_process_that_already_ran_tensorflow_is_one_error(
    data_dir, tmp_path, capsys, monkeypatch):
  tf.constant(1.0) + 1.0  # TensorFlow has started in this process
  addresses = [f"127.0.0.1:{port}" for port in cluster.free_ports(2)]
  monkeypatch.setenv("TF_CONFIG", cluster.tf_config(addresses, 0))
  code = main.run(["trainers.main", *args(data_dir, tmp_path / "run"), MULTI])
  assert code == 2
  assert "must start in a fresh process" in capsys.readouterr().err
