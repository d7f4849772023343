"""Starts N training workers on this machine (127.0.0.1) as one MultiWorkerMirroredStrategy cluster.

Why: to try `--strategy=multi_worker_mirrored` (or debug it) without several
machines. Each worker is `python -m trainers.main ARGS` with its own TF_CONFIG
naming every worker's 127.0.0.1 port; their output is prefixed with
`[worker i]`. If one worker fails, the others are stopped (they would wait
for it forever), so the command ends with the first failure's exit code.

  python -m tools.launch_local_cluster --num_workers=2 -- \
      --model=fer_net --epochs=5 --batch_size=64 --model_dir=runs/mw

`--strategy=multi_worker_mirrored` is added unless ARGS give a strategy. On
real machines run one worker per host instead, each with its own TF_CONFIG
(docs/distributed.md). The worker processes split this machine's cores: it
shows that the cluster works, not that it is faster.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined only when run as a command (tests import this)."""
  flags.DEFINE_integer("num_workers", 2, "Workers to start.", lower_bound=1)
  flags.DEFINE_string("host", "127.0.0.1", "Address the workers listen on and dial.")
  flags.DEFINE_float("timeout", 0, "Stop every worker after this many seconds (0: no limit).",
                     lower_bound=0)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
  """`count` distinct ports that were free a moment ago (another process may still take
  one before the worker binds it: TF_CONFIG needs the numbers up front)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind((host, 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def tf_config(addresses: Sequence[str], index: int) -> str:
  """The TF_CONFIG (JSON) of worker `index` of the cluster of workers at `addresses`."""
  return json.dumps({"cluster": {"worker": list(addresses)},
                     "task": {"type": "worker", "index": index}})


def start_workers(command: Sequence[str], num_workers: int, host: str = "127.0.0.1",
                  env: dict[str, str] | None = None, **popen: object) -> list[subprocess.Popen]:
  """Starts `command` once per worker, each with its TF_CONFIG, in its own process group
  (so `stop` ends it and whatever it started). Worker 0 is the chief."""
  addresses = [f"{host}:{port}" for port in free_ports(num_workers, host)]
  processes = []
  try:
    for index in range(num_workers):
      worker_env = {**(env if env is not None else os.environ),
                    "TF_CONFIG": tf_config(addresses, index)}
      processes.append(subprocess.Popen(list(command), env=worker_env, start_new_session=True,
                                        **popen))
  except BaseException:
    stop(processes)
    raise
  return processes


def stop(processes: Sequence[subprocess.Popen], grace: float = 5.0) -> None:
  """SIGTERM each still-running process group, then SIGKILL what is left after `grace` s."""
  for sig in (signal.SIGTERM, signal.SIGKILL):
    alive = [p for p in processes if p.poll() is None]
    for process in alive:
      try:
        os.killpg(process.pid, sig)
      except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    for process in alive:
      try:
        process.wait(max(0.1, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        pass


def _forward(stream: IO[str], prefix: str) -> None:
  for line in stream:
    sys.stdout.write(f"{prefix}{line}")
    sys.stdout.flush()


def run_cluster(args: Sequence[str], num_workers: int, host: str, timeout: float) -> int:
  """Runs the cluster to the end; the first failing worker's exit code, else 0."""
  if not any(a.startswith("--strategy") for a in args):
    args = [*args, "--strategy=multi_worker_mirrored"]
  command = [sys.executable, "-m", "trainers.main", *args]
  processes = start_workers(command, num_workers, host, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
  threads = [threading.Thread(target=_forward, args=(p.stdout, f"[worker {i}] "), daemon=True)
             for i, p in enumerate(processes)]
  for thread in threads:
    thread.start()
  deadline = time.monotonic() + timeout if timeout else None
  code = 0
  try:
    while any(p.poll() is None for p in processes):
      failed = [p for p in processes if p.returncode not in (None, 0)]
      if failed:
        code = failed[0].returncode
        print(f"launch_local_cluster: a worker exited with {code}; stopping the others.",
              flush=True)
        break
      if deadline and time.monotonic() > deadline:
        print(f"launch_local_cluster: --timeout={timeout:g} s reached; stopping the workers.",
              flush=True)
        code = 124
        break
      time.sleep(0.2)
  finally:
    stop(processes)
    for thread in threads:
      thread.join(5)
  if code == 0:
    code = next((p.returncode for p in processes if p.returncode), 0)
  return code if code >= 0 else 128 - code  # killed by a signal: 128 + signal number


def main(argv: list[str]) -> None:
  sys.exit(run_cluster(argv[1:], FLAGS.num_workers, FLAGS.host, FLAGS.timeout))


if __name__ == "__main__":
  define_flags()
  app.run(main)
