"""`--data_service`: the training input through a tf.data service on 127.0.0.1.

The servers are tools/data_service.py processes (port 0: each prints the
address it got), in their own process groups, stopped in a `finally`; every
wait is bounded. Tiny data: the fer2013 of test_trainer.
"""

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fer_helpers as helpers
import pytest

from tools import data_service
from tools import launch_local_cluster as cluster
from trainers import data, main, run_dir

ROOT = Path(__file__).resolve().parents[1]
ROWS = (56, 14, 14)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("fer2013")
  helpers.build_fake_fer2013(root, ROWS, seed=3)
  return str(root / "tfds")


def start_server(*flags, timeout=90):
  """A tools.data_service process and the address it printed."""
  process = subprocess.Popen([sys.executable, "-m", "tools.data_service", *flags], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
  deadline = time.monotonic() + timeout
  try:
    line = process.stdout.readline()  # blocks until the server is up (or the process ends)
    if not line or time.monotonic() > deadline:
      raise AssertionError(f"no address from {flags}: {process.stderr.read()[-2000:]}")
  except BaseException:
    cluster.stop([process])
    raise
  return process, line.split()[1]


# --- training through 2 workers, one killed mid-run -----------------------------------------

_LAUNCHER = textwrap.dedent("""
    import os, sys, time
    import keras
    from trainers import main

    progress = os.environ["PROGRESS_FILE"]

    class Progress(keras.callbacks.Callback):
      def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

      def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.2)
        with open(progress, "a") as f:
          f.write(f"step {self.epoch} {batch}\\n")

    sys.argv[0] = "trainers.main"
    main.main(callbacks=[Progress()])
""")


@pytest.mark.slow
def test_training_through_the_service_survives_a_worker_kill(data_dir, tmp_path):
  launcher = tmp_path / "launcher.py"
  launcher.write_text(_LAUNCHER)
  progress = tmp_path / "progress.txt"
  model_dir = tmp_path / "run"
  processes = []
  try:
    dispatcher, address = start_server("--role=dispatcher", f"--work_dir={tmp_path / 'work'}")
    processes.append(dispatcher)
    for _ in range(2):
      worker, _ = start_server("--role=worker", f"--dispatcher_address={address}")
      processes.append(worker)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    trainer = subprocess.Popen(
        [sys.executable, str(launcher), f"--data_dir={data_dir}", f"--model_dir={model_dir}",
         "--dataset=fer2013", "--batch_size=8", "--max_steps_per_epoch=4", "--epochs=3",
         f"--data_service={address}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": path, "PROGRESS_FILE": str(progress)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    processes.append(trainer)
    deadline = time.monotonic() + 180
    while "step 0 1" not in (progress.read_text() if progress.exists() else ""):
      assert trainer.poll() is None, trainer.stderr.read()[-3000:]
      assert time.monotonic() < deadline, "timed out waiting for training to start"
      time.sleep(0.05)
    os.killpg(processes[2].pid, signal.SIGKILL)  # one of the two workers, mid-epoch 0
    _, err = trainer.communicate(timeout=240)
    assert trainer.returncode == 0, err[-3000:]
    assert processes[2].wait(10) == -signal.SIGKILL
    assert processes[1].poll() is None  # the other worker kept serving
  finally:
    cluster.stop(processes)
  with open(model_dir / run_dir.HISTORY, newline="") as f:
    assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1", "2"]
  steps = progress.read_text().split()
  assert steps.count("step") == 12  # 3 epochs x 4 steps: 10 of them after the kill
  assert (model_dir / run_dir.FINISHED).is_file()


# --- what the service sends -----------------------------------------------------------------


def test_workers_send_their_own_shuffles_of_every_example(data_dir):
  """Two in-process workers, the pipeline trainers use: the client gets every example, and the
  workers' streams differ (with the trainer's fixed seed they would be the same batches
  twice: every worker runs the same pipeline)."""
  dispatcher = data_service.start_dispatcher()
  workers = [data_service.start_worker(dispatcher.target) for _ in range(2)]
  try:
    ds = data.make_dataset("train", dataset="fer2013", data_dir=data_dir, batch_size=8,
                           training=True, with_ids=True, seed=0, data_service=dispatcher.target)
    batches = [tuple(i.decode() for i in batch[2].numpy()) for batch in ds.take(28)]
  finally:
    for server in (*workers, dispatcher):
      server.stop()
  assert all(len(batch) == 8 for batch in batches)
  assert len({i for batch in batches for i in batch}) == ROWS[0]
  assert len(set(batches)) == len(batches)  # no batch came twice


@pytest.mark.parametrize("extra, message", [
    (["--data_service=127.0.0.1:5050"], "must be grpc://HOST:PORT"),
    (["--data_service=grpc://127.0.0.1:5050", "--deterministic"], "--deterministic"),
])
def test_bad_data_service_flags_are_one_error(data_dir, tmp_path, capsys, extra, message):
  code = main.run(["trainers.main", f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'r'}",
                   "--dataset=fer2013", *extra])
  assert code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err
  assert not (tmp_path / "r").exists()
