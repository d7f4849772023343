"""Distributed sweeps through KerasTuner's own mechanism: a chief oracle served over gRPC.

Every process runs `python -m tuning.main` with the same flags; the
environment says its role (KerasTuner's variables):

  KERASTUNER_TUNER_ID      "chief" for the oracle, "tuner0", "tuner1", ... for workers
  KERASTUNER_ORACLE_IP     the chief's address (the chief listens on it)
  KERASTUNER_ORACLE_PORT   the chief's port

Workers are stock KerasTuner tuners whose oracle is KerasTuner's OracleClient.
The chief serves KerasTuner's OracleServicer; only the server loop is ours
(KerasTuner's `oracle_chief.start_server` binds with SO_REUSEPORT, so a port
already in use is not an error there, and polls every 20 s before exiting):
a port in use is a clear error before anything else starts, the chief exits
within a second of the last worker finishing, and it reports progress after
every trial. Workers check that the chief answers before they build anything,
and give up with a clear error after --oracle_timeout seconds instead of
KerasTuner's one hour.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

from trainers.cli import UsageError

TUNER_ID = "KERASTUNER_TUNER_ID"
ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
CHIEF = "chief"
POLL_SECONDS = 0.5


def role(environ: dict[str, str] | None = None) -> str | None:
  """None for a single-process sweep, "chief", or the worker's tuner id.

  Incomplete or malformed settings are a UsageError naming the variable
  (KerasTuner itself raises a RuntimeError deep inside the tuner).
  """
  env = os.environ if environ is None else environ
  given = [name for name in (TUNER_ID, ORACLE_IP, ORACLE_PORT) if env.get(name)]
  if not given:
    return None
  if ORACLE_IP not in given:
    # KerasTuner reads KERASTUNER_TUNER_ID alone as a single-process tuner's name.
    if TUNER_ID in given and ORACLE_PORT not in given:
      return None
    raise UsageError(f"{ORACLE_PORT} is set but {ORACLE_IP} is not; set both (and {TUNER_ID})")
  missing = [name for name in (TUNER_ID, ORACLE_PORT) if name not in given]
  if missing:
    raise UsageError(f"distributed tuning needs {', '.join(missing)} as well as {ORACLE_IP} "
                     f"({TUNER_ID}=chief for the oracle, tuner0, tuner1, ... for workers)")
  address()  # checks the port
  tuner_id = env[TUNER_ID]
  return CHIEF if CHIEF in tuner_id else tuner_id


def address(environ: dict[str, str] | None = None) -> tuple[str, int]:
  """(ip, port) of the chief oracle, from the environment."""
  env = os.environ if environ is None else environ
  port = env.get(ORACLE_PORT, "")
  if not port.isdigit() or not 0 < int(port) < 65536:
    raise UsageError(f"{ORACLE_PORT}={port!r} is not a port number (1 to 65535)")
  return env[ORACLE_IP], int(port)


def _family(ip: str) -> socket.AddressFamily:
  return socket.AF_INET6 if ":" in ip else socket.AF_INET


def check_port_free(ip: str, port: int) -> None:
  """UsageError unless (ip, port) can be listened on (nothing else is bound to it)."""
  with socket.socket(_family(ip), socket.SOCK_STREAM) as sock:
    # As gRPC binds: connections of a previous chief in TIME_WAIT do not block a restart,
    # a socket still listening there does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      sock.bind((ip, port))
      sock.listen(1)
    except OSError as e:
      if e.errno == errno.EADDRINUSE:
        raise UsageError(f"port {port} on {ip} is already in use ({ORACLE_PORT}); stop what "
                         "listens there or pick another port (tuning.launch picks a free one "
                         "with --oracle_port=0)") from None
      raise UsageError(f"cannot listen on {ip}:{port} ({ORACLE_IP}/{ORACLE_PORT}): "
                       f"{e.strerror or e}") from None


def free_port(ip: str = "127.0.0.1") -> int:
  """A port that nothing listens on at the moment (for the launcher and tests)."""
  with socket.socket(_family(ip), socket.SOCK_STREAM) as sock:
    sock.bind((ip, 0))
    return int(sock.getsockname()[1])


def wait_for_chief(ip: str, port: int, timeout: float) -> None:
  """Returns once the chief's gRPC server answers; UsageError after `timeout` seconds."""
  import grpc

  channel = grpc.insecure_channel(f"{ip}:{port}")
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout)
  except grpc.FutureTimeoutError:
    raise UsageError(
        f"cannot reach the chief oracle at {ip}:{port} within {timeout:g} s; start it first "
        f"(python -m tuning.main ... with {TUNER_ID}=chief), check {ORACLE_IP}/{ORACLE_PORT} "
        "and the firewall, or raise --oracle_timeout") from None
  finally:
    channel.close()


def set_request_timeout(seconds: float) -> None:
  """How long a worker's requests to the chief may wait (KerasTuner's default: one hour)."""
  from keras_tuner.src.distribute import oracle_client

  oracle_client.TIMEOUT = max(1.0, seconds)


def serve(oracle: Any, ip: str, port: int,
          on_progress: Callable[[], None] | None = None) -> None:
  """Serves `oracle` to the workers until the search is over and every worker has left.

  The search is over once a worker has been told STOPPED; it has ended when no
  trial is running and every worker that asked for a trial has been told to
  stop (KerasTuner's `exit_chief`). `on_progress` runs after each finished trial.
  """
  import grpc
  from keras_tuner.src import protos
  from keras_tuner.src.distribute import oracle_chief

  check_port_free(ip, port)
  # No SO_REUSEPORT: a second chief on the same port must fail, not share it.
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=1),
                       options=[("grpc.so_reuseport", 0)])
  servicer = oracle_chief.OracleServicer(oracle)
  protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
  try:
    server.add_insecure_port(f"{ip}:{port}")
  except RuntimeError as e:
    raise UsageError(f"cannot listen on {ip}:{port}: {e}") from None
  server.start()
  print(f"Chief oracle listening on {ip}:{port}.", flush=True)
  ended = len(oracle.end_order)
  try:
    while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
      time.sleep(POLL_SECONDS)
      if on_progress is not None and len(oracle.end_order) != ended:
        ended = len(oracle.end_order)
        on_progress()
  finally:
    server.stop(grace=1).wait()
