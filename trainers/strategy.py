"""The tf.distribute strategy factory, in its own module so new strategies are
added in one place without touching training.

multi_worker_mirrored reads the cluster from the `TF_CONFIG` environment
variable (no TF_CONFIG: one local worker); Keras 3's `fit` cannot train under
it (docs/distributed.md), so train.py runs it with trainers/custom_loop.py.
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging

# Strategies that train with trainers/custom_loop.py instead of Keras `fit`.
CUSTOM_LOOP = frozenset({"multi_worker_mirrored"})


def split_cpu(num_devices: int) -> None:
  """Splits the host CPU into `num_devices` logical devices.

  Lets MirroredStrategy run several replicas on a CPU-only machine (tests,
  trials). TensorFlow allows this only before its runtime starts, so call it
  before any op runs.
  """
  if num_devices <= 0:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == num_devices:
    return  # already split so (an earlier run in this process)
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
  except RuntimeError as e:
    raise ValueError(f"--cpu_devices={num_devices} must be set before TensorFlow starts "
                     f"(run it in a fresh process): {e}") from None


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
  """The strategy called `name`: default, one_device, mirrored, multi_worker_mirrored or tpu.

  mirrored uses every GPU, or else every logical CPU device: MirroredStrategy's
  own default would take only the first CPU, i.e. one replica.
  multi_worker_mirrored must be made before TensorFlow runs any op (it
  configures the runtime's collective ops), so it is made first here: before
  listing devices. tpu connects to the TPU `tpu` names (TPUClusterResolver:
  a name, a grpc:// address, or "local" on a TPU VM).
  """
  if name == "multi_worker_mirrored":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task_type, task_id = task_of(strategy)
    logging.info("Strategy %s: %d replica(s) on %d worker(s); this is %s %d%s.", name,
                 strategy.num_replicas_in_sync, num_workers(strategy), task_type, task_id,
                 " (chief)" if is_chief(strategy) else "")
    return strategy
  if name == "tpu":
    return _tpu_strategy(tpu)
  gpus = tf.config.list_logical_devices("GPU")
  if name == "default":
    strategy = tf.distribute.get_strategy()
  elif name == "one_device":
    strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  elif name == "mirrored":
    devices = gpus or tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
  else:
    raise ValueError(f"unknown strategy {name!r}")
  logging.info("Strategy %s: %d replica(s).", name, strategy.num_replicas_in_sync)
  return strategy


def _tpu_strategy(tpu: str | None) -> tf.distribute.Strategy:
  """TPUStrategy on the TPU `tpu`; a TPU that cannot be reached is a ValueError (one line)."""
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    raise ValueError(f"--tpu={tpu}: cannot reach the TPU: {' '.join(str(e).split())}") from None
  strategy = tf.distribute.TPUStrategy(resolver)
  logging.info("Strategy tpu: %d replica(s) on %s.", strategy.num_replicas_in_sync, tpu)
  return strategy


def task_of(strategy: tf.distribute.Strategy) -> tuple[str, int]:
  """(task type, index) of this process in its cluster; ("worker", 0) without one."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return "worker", 0
  return resolver.task_type, int(resolver.task_id or 0)


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """Worker processes training together (1 unless multi-worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None:
    return 1
  spec = resolver.cluster_spec().as_dict()
  return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files (tf.distribute's own answer: the chief
  task, else worker 0; always true on one machine).

  The other workers of a multi-worker run compute the same steps but write
  only to temporary directories (the standard TF multi-worker pattern).
  """
  return bool(strategy.extended.should_checkpoint)
