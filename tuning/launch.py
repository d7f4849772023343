"""Starts a distributed sweep on this machine: the chief oracle and one worker per GPU.

  python -m tuning.launch --gpus=0,1,2,3 --tuner=bayesian --max_trials=40 --epochs=10
  python -m tuning.launch --workers=2 --max_trials=6 --epochs=2        # CPU workers

Every process is `python -m tuning.main` with the same flags (all flags other
than the launcher's own are passed on, after being checked here first), with
KerasTuner's variables set: the chief (KERASTUNER_TUNER_ID=chief, no GPU)
serves the oracle on --oracle_ip:--oracle_port (0: a free port), each worker
(tuner0, tuner1, ...) sees only its GPUs through CUDA_VISIBLE_DEVICES. The
launcher waits for all of them and exits 0 only if every one succeeded; if one
fails, the others are stopped (the sweep is resumable: rerun the same command)
and the tail of its log is printed. Logs: <sweep directory>/launch/<id>.log.

Multi-machine: run the launcher with the chief on one machine, and with
--nochief --oracle_ip=<chief's address> --oracle_port=<its port> and a distinct
--worker_prefix on the others (docs/tuning.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from absl import flags

from trainers import cli
from tuning import config as tuning_config
from tuning import distributed
from tuning import main as tuning_main
from tuning.config import UsageError

FLAGS = flags.FLAGS


def _define_launch_flags() -> None:
  flags.DEFINE_string(
      "gpus", None,
      "GPUs to use, e.g. 0,1,2,3, or 'all' (CUDA_VISIBLE_DEVICES if set, else every GPU "
      "nvidia-smi lists). Default: all GPUs if there are any.")
  flags.DEFINE_integer("workers", 0, "CPU workers to start instead of GPU ones.", lower_bound=0)
  flags.DEFINE_integer(
      "gpus_per_worker", 1,
      "GPUs per worker (use --strategy=mirrored to train on all of them).", lower_bound=1)
  flags.DEFINE_string("oracle_ip", "127.0.0.1",
                      "Address the chief oracle listens on and workers connect to.")
  flags.DEFINE_integer("oracle_port", 0, "The chief's port (0: a free one).", lower_bound=0,
                       upper_bound=65535)
  flags.DEFINE_bool("chief", True,
                    "Start the chief oracle here (--nochief: workers for a remote chief).")
  flags.DEFINE_string("worker_prefix", "tuner",
                      "Worker ids are <prefix>0, <prefix>1, ...; must differ between machines.")
  flags.DEFINE_float("startup_timeout", 300.0, "Seconds the chief may take to start listening.",
                     lower_bound=1.0)


def define_flags() -> None:
  """The launcher's own flags plus every sweep flag (--help lists them: they are passed on)."""
  tuning_config.define_flags()
  cli.define_once(_define_launch_flags, "gpus_per_worker")


LAUNCH_FLAGS = ("gpus", "workers", "gpus_per_worker", "oracle_ip", "oracle_port", "chief",
                "worker_prefix", "startup_timeout")
LOGS = tuning_main.LAUNCH_LOGS
STOP_GRACE_SECONDS = 10.0
EXIT_USAGE, EXIT_FAILED = cli.EXIT_USAGE, cli.EXIT_FAILED


# What CUDA_VISIBLE_DEVICES said before main() hid the GPUs from the launcher itself.
_VISIBLE_AT_START = os.environ.get("CUDA_VISIBLE_DEVICES")


def visible_gpus() -> list[str]:
  """The GPUs this machine offers: CUDA_VISIBLE_DEVICES if set, else nvidia-smi's list."""
  visible = _VISIBLE_AT_START
  if visible is not None:
    return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
  if shutil.which("nvidia-smi") is None:
    return []
  try:
    listing = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
  except (subprocess.SubprocessError, OSError):
    return []
  return [line.strip() for line in listing.splitlines() if line.strip()]


def worker_devices(gpus: str | None, workers: int, per_worker: int) -> list[str]:
  """CUDA_VISIBLE_DEVICES of each worker ("" for a CPU worker)."""
  if workers and gpus:
    raise UsageError("give --gpus or --workers, not both")
  if workers:
    return [""] * workers
  if gpus is None or gpus == "all":
    ids = visible_gpus()
    if not ids:
      raise UsageError("no GPU found (nvidia-smi, CUDA_VISIBLE_DEVICES); pass --workers=N for "
                       "CPU workers")
  else:
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if not ids or not all(g.isdigit() for g in ids) or len(set(ids)) != len(ids):
      raise UsageError(f"--gpus={gpus}: expected distinct GPU indices like 0,1,2,3, or 'all'")
  if len(ids) % per_worker:
    raise UsageError(f"{len(ids)} GPUs do not split into workers of --gpus_per_worker="
                     f"{per_worker}")
  return [",".join(ids[i:i + per_worker]) for i in range(0, len(ids), per_worker)]


def child_args() -> list[str]:
  """The flags given on the command line, minus the launcher's own, for tuning.main."""
  values = FLAGS
  args = []
  for name in sorted(set(values)):
    # A --flagfile is already expanded into the flags it holds (the launcher's own too).
    if name in LAUNCH_FLAGS or name in ("help", "helpshort", "helpfull", "helpxml", "flagfile"):
      continue
    flag = values[name]
    if flag.present and flag.name == name:
      args.append(flag.serialize())
  return args


def start(name: str, args: Sequence[str], env: Mapping[str, str], log_dir: str
          ) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
  """`python -m tuning.main ARGS` in its own process group, output to <log_dir>/<name>.log."""
  log = open(os.path.join(log_dir, f"{name}.log"), "wb")  # noqa: SIM115  (closed by caller)
  process = subprocess.Popen([sys.executable, "-m", "tuning.main", *args],
                             env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
  return process, log


def wait_listening(ip: str, port: int, chief: subprocess.Popen[bytes], timeout: float) -> None:
  """Returns once something accepts connections on ip:port; fails if the chief exits first."""
  deadline = time.monotonic() + timeout
  host = "127.0.0.1" if ip in ("0.0.0.0", "") else "::1" if ip == "::" else ip
  while True:
    if chief.poll() is not None:
      raise ChildFailed("chief", chief.returncode)
    try:
      with socket.create_connection((host, port), timeout=1.0):
        return
    except OSError:
      pass
    if time.monotonic() > deadline:
      raise UsageError(f"the chief did not listen on {ip}:{port} within {timeout:g} s "
                       "(--startup_timeout)")
    time.sleep(0.2)


class ChildFailed(Exception):
  def __init__(self, name: str, returncode: int) -> None:
    super().__init__(f"{name} exited with code {returncode}")
    self.name, self.returncode = name, returncode


def stop(processes: Mapping[str, subprocess.Popen[Any]], grace: float = STOP_GRACE_SECONDS
         ) -> None:
  """SIGTERM every running process group, then SIGKILL what is left after `grace` seconds."""
  running = {n: p for n, p in processes.items() if p.poll() is None}
  for process in running.values():
    _signal_group(process, signal.SIGTERM)
  deadline = time.monotonic() + grace
  for process in running.values():
    try:
      process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      _signal_group(process, signal.SIGKILL)
      process.wait()


def _signal_group(process: subprocess.Popen[Any], sig: int) -> None:
  try:
    os.killpg(process.pid, sig)  # its own session: the group id is its pid
  except ProcessLookupError:
    pass


def supervise(chief: subprocess.Popen[Any] | None, workers: Mapping[str, subprocess.Popen[Any]],
              poll: float = 0.2, exit_timeout: float = 120.0) -> dict[str, int]:
  """Waits for every process; their exit codes, by name.

  The first process that fails stops all the others: a chief without workers,
  or workers without a chief, would wait forever. Once the workers are done the
  chief has `exit_timeout` seconds to exit (it does within a second), and once
  the chief is done, so do the workers.
  """
  processes = dict(workers)
  if chief is not None:
    processes["chief"] = chief
  try:
    while True:
      codes = {n: p.poll() for n, p in processes.items()}
      if any(c not in (None, 0) for c in codes.values()):
        break
      pending = [p for n, p in processes.items() if codes[n] is None]
      if not pending:
        break
      workers_done = all(codes[n] is not None for n in workers)
      if workers_done or (chief is not None and codes["chief"] is not None):
        deadline = time.monotonic() + exit_timeout  # the rest should end by themselves now
        while any(p.poll() is None for p in pending) and time.monotonic() < deadline:
          time.sleep(poll)
        break
      time.sleep(poll)
  finally:
    stop(processes)
  return {n: p.returncode for n, p in processes.items()}


def tail(path: str, lines: int = 25) -> str:
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return ""


def launch() -> int:
  """The launcher after flags are parsed; returns the exit code."""
  settings = tuning_config.settings_from_flags(FLAGS)  # every flag checked before anything starts
  devices = worker_devices(FLAGS.gpus, FLAGS.workers, FLAGS.gpus_per_worker)
  ip = FLAGS.oracle_ip
  port = FLAGS.oracle_port
  if not FLAGS.chief and not port:
    raise UsageError("--nochief needs the remote chief's --oracle_port (and --oracle_ip)")
  args = [a for a in child_args() if not a.startswith(("--overwrite", "--nooverwrite"))]
  if FLAGS.chief:
    port = port or distributed.free_port(ip if ip not in ("0.0.0.0", "") else "127.0.0.1")
    distributed.check_port_free(ip, port)
    # The launcher replaces (--overwrite) or checks the sweep once, before any process starts,
    # so that no worker ever sees a half-deleted directory.
    tuning_main.prepare_sweep(settings)
  log_dir = os.path.join(settings.project_dir, LOGS)
  os.makedirs(log_dir, exist_ok=True)
  oracle_env = {distributed.ORACLE_IP: ip, distributed.ORACLE_PORT: str(port)}
  logs: list[IO[bytes]] = []
  chief = None
  workers: dict[str, subprocess.Popen[bytes]] = {}
  try:
    if FLAGS.chief:
      chief, log = start("chief", args, {**oracle_env, distributed.TUNER_ID: "chief",
                                         "CUDA_VISIBLE_DEVICES": ""}, log_dir)
      logs.append(log)
      print(f"Chief oracle on {ip}:{port} (pid {chief.pid}).", flush=True)
      try:
        wait_listening(ip, port, chief, FLAGS.startup_timeout)
      except ChildFailed:
        print(tail(os.path.join(log_dir, "chief.log")), file=sys.stderr)
        raise UsageError("the chief oracle failed to start (its log is above)") from None
    for index, device in enumerate(devices):
      name = f"{FLAGS.worker_prefix}{index}"
      workers[name], log = start(name, args, {**oracle_env, distributed.TUNER_ID: name,
                                              "CUDA_VISIBLE_DEVICES": device}, log_dir)
      logs.append(log)
      print(f"Worker {name} on {'GPU ' + device if device else 'CPU'} (pid {workers[name].pid}).",
            flush=True)
    codes = supervise(chief, workers)
  except KeyboardInterrupt:
    stop({**workers, **({"chief": chief} if chief else {})})
    print("Interrupted; rerun the same command to resume the sweep.", file=sys.stderr)
    return 130
  except BaseException:
    stop({**workers, **({"chief": chief} if chief else {})})
    raise
  finally:
    for log in logs:
      log.close()
  failed = {n: c for n, c in codes.items() if c != 0}
  for name, code in failed.items():
    print(f"--- {name} exited with code {code}; end of {os.path.join(log_dir, name + '.log')}:",
          file=sys.stderr)
    print(tail(os.path.join(log_dir, f"{name}.log")), file=sys.stderr)
  if failed:
    print(f"error: {', '.join(sorted(failed))} failed; the sweep is resumable: rerun the same "
          "command", file=sys.stderr, flush=True)
    return EXIT_FAILED
  if chief is not None:
    print(tail(os.path.join(log_dir, "chief.log"), 2), end="", flush=True)
  return 0


def run(argv: Sequence[str]) -> int:
  """In-process entry point: parse `argv`, launch, return the exit code."""
  define_flags()
  return cli.run_in_process(argv, lambda _: launch())


def _interrupt(signum: int, frame: Any) -> None:
  del signum, frame
  raise KeyboardInterrupt


def main() -> None:
  # The launcher itself never computes: keep it off the GPUs its workers use (each child
  # gets its own CUDA_VISIBLE_DEVICES).
  os.environ["CUDA_VISIBLE_DEVICES"] = ""
  signal.signal(signal.SIGTERM, _interrupt)
  sys.exit(run(sys.argv))


if __name__ == "__main__":
  main()
