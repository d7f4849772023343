"""Starts a tf.data service dispatcher or worker, for `python -m trainers.main --data_service=...`.

Why: with `--data_service=grpc://HOST:PORT` the training input's reading,
shuffling and augmentation run on these workers instead of the training
machine's CPUs, so the input can use more cores than the trainer has. One
dispatcher, then any number of workers (on any machines that can read the
TFDS data_dir at the same path); workers may come and go during training.

  python -m tools.data_service --role=dispatcher --port=5050 --work_dir=/tmp/dispatcher
  python -m tools.data_service --role=worker --dispatcher_address=127.0.0.1:5050
  python -m trainers.main --data_service=grpc://127.0.0.1:5050 ...

`--work_dir` makes the dispatcher fault tolerant: it journals its state there,
and a dispatcher restarted with the same --port and --work_dir carries on with
the same jobs and workers. `--port=0` picks a free port; the first line
printed (flushed) is the address to use, e.g. `dispatcher grpc://127.0.0.1:5050`
or `worker 127.0.0.1:43107`. The server runs until the process is stopped.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined only when run as a command, so that importing this
  module next to other tools (tests, benchmarks) defines no flags."""
  flags.DEFINE_enum("role", None, ["dispatcher", "worker"], "Which server to run.")
  flags.DEFINE_integer("port", 0, "Port to listen on (0: a free one, printed).",
                       lower_bound=0, upper_bound=65535)
  flags.DEFINE_string(
      "host", "127.0.0.1",
      "This machine's address as the others reach it: printed for the dispatcher, and "
      "advertised to the trainers by a worker.")
  flags.DEFINE_string(
      "dispatcher_address", None, "Worker: the dispatcher's HOST:PORT (grpc:// optional).")
  flags.DEFINE_string(
      "work_dir", None,
      "Dispatcher: directory for its journal; given, the dispatcher runs in fault-tolerant "
      "mode (restart it with the same --port and --work_dir to recover).")


service = tf.data.experimental.service


def _port(target: str) -> int:
  return int(target.rsplit(":", 1)[1])


def start_dispatcher(port: int = 0, work_dir: str | None = None) -> service.DispatchServer:
  """A running dispatcher; fault tolerant (journal in `work_dir`) when one is given."""
  config = service.DispatcherConfig(port=port, work_dir=work_dir,
                                    fault_tolerant_mode=bool(work_dir))
  return service.DispatchServer(config)


def start_worker(dispatcher_address: str, port: int = 0,
                 host: str = "127.0.0.1") -> service.WorkerServer:
  """A running worker registered with the dispatcher at `dispatcher_address`."""
  address = dispatcher_address.removeprefix("grpc://")
  config = service.WorkerConfig(dispatcher_address=address, worker_address=f"{host}:%port%",
                                port=port)
  return service.WorkerServer(config)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.role is None:
    raise app.UsageError("--role=dispatcher or --role=worker is required")
  if FLAGS.role == "dispatcher":
    if FLAGS.dispatcher_address:
      raise app.UsageError("--dispatcher_address is for --role=worker")
    server = start_dispatcher(FLAGS.port, FLAGS.work_dir)
    print(f"dispatcher grpc://{FLAGS.host}:{_port(server.target)}", flush=True)
  else:
    if not FLAGS.dispatcher_address:
      raise app.UsageError("--role=worker needs --dispatcher_address=HOST:PORT")
    if FLAGS.work_dir:
      raise app.UsageError("--work_dir is for --role=dispatcher")
    server = start_worker(FLAGS.dispatcher_address, FLAGS.port, FLAGS.host)
    print(f"worker {FLAGS.host}:{_port(server._address)}", flush=True)  # noqa: SLF001
  server.join()


if __name__ == "__main__":
  define_flags()
  app.run(main)
