"""The tf.distribute strategy factory, in its own module so new strategies
(multi_worker_mirrored next) are added in one place without touching training.
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging


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


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The strategy called `name`: default, one_device or mirrored.

  mirrored uses every GPU, or else every logical CPU device: MirroredStrategy's
  own default would take only the first CPU, i.e. one replica.
  """
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
