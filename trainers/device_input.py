"""Training input resident on the accelerator (`--input=device`): the host sends indices.

Why: with `--input=host` every training image crosses the host's tf.data
pipeline (read, shuffle, batch, augment, copy), which a multi-core host cannot
do as fast as one GPU trains (issue 13; `python -m tools.bench.input
--placements`). FER2013's train split is 66 MB as uint8 (28,709 x 48 x 48), so
here it is copied once into a variable on every replica's device (created
under the strategy: a MirroredVariable holds one copy per device); each step,
the host sends only the replica's example indices, their one-hot labels (and
class weights) and an augmentation seed, and the replica gathers its images
and augments them inside its own step with the same ops as the host pipeline
(`data.augment_for_training`). The anchor is the CIFAR-10 speedrun (airbench).

The order: each epoch is one seeded permutation of the split (by epoch number,
so a resumed run sees the same batches as an uninterrupted one), cut into
global batches; every replica takes its slice of each global batch, so the
replicas of one step see exactly the examples a single device would.
Multi-worker: every worker holds the whole split (it is small, and the
strategy broadcasts variables' initial values from the chief, which must
therefore be the same everywhere; float16 there, see `resident_images`) and
its pipeline emits only its replicas' slices.

Evaluation keeps the host pipeline: it is a few thousand images per epoch, in
order.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from trainers import data

# --input=auto chooses device when the split's copies on one device take at most this share
# of its memory, so the model, activations and the optimizer keep the rest.
MEMORY_SHARE = 0.1
_EPOCHS_UNBOUNDED = 2**62


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where the training input lives, and why (logged)."""

  where: str  # host or device
  reason: str


def split_bytes(num_examples: int) -> int:
  """Bytes of a split stored as uint8 48x48 grayscale, whatever the model's input size
  (resizing and RGB happen in the step)."""
  return num_examples * data.NATIVE_SIZE * data.NATIVE_SIZE


def device_memory_bytes(strategy: tf.distribute.Strategy) -> tuple[int, str]:
  """(memory of one of the strategy's devices, its kind): GPU memory as TensorFlow sees it,
  or the host's RAM when the replicas are CPU devices."""
  try:
    device = strategy.extended.worker_devices[0]
  except RuntimeError:  # the default strategy: TensorFlow's default device
    device = "/device:GPU:0" if tf.config.list_logical_devices("GPU") else "/device:CPU:0"
  spec = tf.DeviceSpec.from_string(device)
  if spec.device_type == "GPU":
    # No public API gives a GPU's total memory; device_lib reports what TensorFlow may use.
    from tensorflow.python.client import device_lib  # noqa: PLC0415

    for attributes in device_lib.list_local_devices():
      if attributes.device_type == "GPU" and attributes.name.endswith(f"GPU:{spec.device_index}"):
        return int(attributes.memory_limit), "GPU"
    return 0, "GPU"
  if spec.device_type in ("CPU", None, ""):
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "CPU (host RAM)"
  return 0, spec.device_type


def choose(requested: str, strategy: tf.distribute.Strategy, num_examples: int,
           data_service: str | None = None) -> Placement:
  """--input: host or device, with the reason. `requested` is auto, host or device.

  auto: device unless the tf.data service feeds the run (its workers are host
  pipelines), the strategy is a TPU's (uint8 variables are not supported there),
  or the split's copies on one device would take more than MEMORY_SHARE of its
  memory. An explicit `device` that cannot work is a ValueError.
  """
  needed = split_bytes(num_examples)  # one copy per device (a replica per device)
  if requested == "host":
    return Placement("host", "--input=host")
  blocker = None
  if data_service:
    blocker = "--data_service feeds training from the service's host pipelines"
  elif isinstance(strategy, tf.distribute.TPUStrategy):
    blocker = "TPUs are fed from the host here (no uint8 variables on TPU)"
  if blocker and requested == "device":
    raise ValueError(f"--input=device cannot be used: {blocker}; use --input=host")
  if blocker:
    return Placement("host", blocker)
  memory, kind = device_memory_bytes(strategy)
  share = needed / memory if memory else float("inf")
  sizes = (f"the split is {needed / 2**20:.1f} MiB as uint8, {share:.1%} of one device's "
           f"memory ({kind}: {memory / 2**30:.1f} GiB)" if memory else
           f"the split is {needed / 2**20:.1f} MiB as uint8, the device's memory is unknown")
  if requested == "device":
    return Placement("device", f"--input=device ({sizes})")
  if share <= MEMORY_SHARE:
    return Placement("device", f"--input=auto: {sizes}, at most {MEMORY_SHARE:.0%}")
  return Placement("host", f"--input=auto: {sizes}, more than {MEMORY_SHARE:.0%}")


def load_split(split: str, *, dataset: str, data_dir: str | None,
               example_filter: Callable[[dict[str, tf.Tensor]], tf.Tensor] | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images (N, 48, 48, 1), int32 labels (N,)) of `split`, in stored order."""
  ds = tfds.load(dataset, split=split, data_dir=data_dir, shuffle_files=False,
                 read_config=tfds.ReadConfig(try_autocache=False))
  if example_filter is not None:
    ds = ds.filter(example_filter)
  ds = ds.map(lambda e: (e["image"], tf.cast(e["label"], tf.int32)),
              num_parallel_calls=tf.data.AUTOTUNE).batch(8192)
  images, labels = [], []
  for image_batch, label_batch in tfds.as_numpy(ds):
    images.append(image_batch)
    labels.append(label_batch)
  if not images:
    raise ValueError(f"the {split} split of {dataset} has no examples to train on")
  return np.concatenate(images), np.concatenate(labels)


class Feed:
  """The replica's half of device input: indices in, training images out (in the step).

  `images` is the split held on every replica's device (a variable created
  under the strategy); calling the feed inside a replica's step gathers from
  that replica's own copy.
  """

  def __init__(self, images: tf.Variable, *, image_size: int, channels: int,
               strength: float | tf.Variable) -> None:
    self.images, self.image_size, self.channels = images, image_size, channels
    self.strength = strength

  def __call__(self, x: dict[str, tf.Tensor]) -> tf.Tensor:
    batch = tf.gather(self.images, x["index"])
    if batch.dtype != tf.uint8:  # float16 pixel values 0-255 (multi-worker)
      batch = tf.cast(batch, tf.float32) / 255.0
    return data.augment_for_training(batch, x["seed"], self.strength, self.image_size,
                                     self.channels)


def resident_images(strategy: tf.distribute.Strategy, images: np.ndarray) -> tf.Variable:
  """`images` as a non-trainable variable, one copy on each of the strategy's devices.

  uint8, except under MultiWorkerMirroredStrategy: it broadcasts every
  variable's initial value from the chief with a collective that has no uint8
  kernel (bool, half, float, double, int32, int64 only), so there the pixels are
  float16, which holds 0-255 exactly at twice the bytes. (A variable, not a
  tensor: on GPUs the variable gather has uint8 kernels, the tensor gather not.)
  """
  if _multi_worker(strategy):
    images = images.astype(np.float16)
  with strategy.scope():
    return tf.Variable(images, trainable=False, name="resident_train_images")


def _multi_worker(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
      strategy.extended._in_multi_worker_mode())  # noqa: SLF001  (no public accessor)


def index_dataset(
    labels: np.ndarray,
    *,
    global_batch_size: int,
    steps_per_epoch: int,
    num_replicas: int,
    seed: int,
    first_epoch: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    map_fn: Callable[..., Any] | None = None,
) -> tf.data.Dataset:
  """This input pipeline's endless per-replica batches: ({"index", "seed"}, labels[, ...]).

  Epoch e is the permutation of the examples seeded by (seed, e), cut into
  `steps_per_epoch` global batches; the pipeline emits, step by step, the
  slices of its replicas (replica-major within a step, the order in which
  `distribute_datasets_from_function` hands them to the local replicas).
  `map_fn` (one-hot labels, class weights) is applied to a whole epoch at
  once: per element the host only slices. Starts at `first_epoch` (a resume).
  """
  num_examples = len(labels)
  pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline = input_context.input_pipeline_id if input_context else 0
  if num_replicas % pipelines or global_batch_size % num_replicas:
    raise ValueError(f"{global_batch_size} examples per step do not split over "
                     f"{num_replicas} replicas in {pipelines} input pipelines")
  if steps_per_epoch * global_batch_size > num_examples:
    raise ValueError(f"{steps_per_epoch} steps of {global_batch_size} examples need more than "
                     f"the {num_examples} examples of the split")
  local = num_replicas // pipelines  # replicas fed by this pipeline
  per_replica = global_batch_size // num_replicas
  label_table = tf.constant(labels, tf.int32)
  first_replica = pipeline * local
  replica = tf.tile(tf.range(first_replica, first_replica + local, dtype=tf.int64),
                    [steps_per_epoch])
  step = tf.repeat(tf.range(steps_per_epoch, dtype=tf.int64), local)

  def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int32), seed=tf.stack([tf.constant(seed, tf.int64),
                                                               epoch]))
    index = tf.reshape(order[:steps_per_epoch * global_batch_size],
                       [steps_per_epoch, num_replicas, per_replica])
    index = tf.reshape(index[:, first_replica:first_replica + local],
                       [steps_per_epoch * local, per_replica])
    # One augmentation seed per replica and step, from (seed, epoch, step, replica).
    counter = (epoch * steps_per_epoch + step) * num_replicas + replica
    seeds = tf.stack([tf.fill(tf.shape(counter), tf.constant(seed, tf.int64)), counter], axis=1)
    batch = ({"index": index, "seed": seeds}, tf.gather(label_table, index))
    if map_fn is not None:
      batch = map_fn(*batch)
    return tf.data.Dataset.from_tensor_slices(batch)

  ds = tf.data.Dataset.range(first_epoch, _EPOCHS_UNBOUNDED).flat_map(epoch_batches)
  return ds.prefetch(tf.data.AUTOTUNE)


def distributed_index_dataset(strategy: tf.distribute.Strategy, labels: np.ndarray, *,
                              global_batch_size: int, **kwargs: Any,
                              ) -> tf.distribute.DistributedDataset:
  """`index_dataset` per input pipeline of `strategy` (kwargs: those of index_dataset)."""
  data.check_global_batch(global_batch_size, strategy.num_replicas_in_sync)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    return index_dataset(labels, global_batch_size=global_batch_size,
                         num_replicas=strategy.num_replicas_in_sync, input_context=context,
                         **kwargs)

  return strategy.distribute_datasets_from_function(dataset_fn)
