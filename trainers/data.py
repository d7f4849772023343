"""tf.data input pipelines for FER2013 (or its synthetic stand-in).

Why one module: training, evaluation, tuning and prediction must see exactly
the same preprocessing (`preprocess_images`), and the training pipeline must
keep a multi-core CPU ahead of the model (measured: `python -m
tools.bench.input`, docs/benchmarks.md). The pipeline is: TFDS read + decode ->
cache (uint8, in memory) -> shuffle -> batch -> float + augment + resize/RGB
(vectorised over the batch) -> prefetch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

import fer_tfds  # noqa: F401  (registers fer2013 and fer2013_synthetic with TFDS)
from trainers import console

REAL_DATASET = "fer2013"
SYNTHETIC_DATASET = "fer2013_synthetic"
NATIVE_SIZE = 48
NUM_CLASSES = 7
AUTO_NAMES = (None, "auto")

# Augmentation ranges at strength 1: rotation (degrees), shift and zoom (fraction of the
# image size), brightness (added, on [0, 1] pixels) and contrast (factor around 1).
MAX_ROTATION_DEG = 10.0
MAX_SHIFT = 0.1
MAX_ZOOM = 0.1
MAX_BRIGHTNESS = 0.1
MAX_CONTRAST = 0.2
_SHUFFLE_BUFFER_CAP = 50_000  # more than FER2013's largest split: a full shuffle
_PIPELINE_SEED_STRIDE = 7919  # a prime: distinct augmentation seeds per input pipeline


def build_command(data_dir: str | None) -> str:
  """The exact command that prepares the real FER2013 where `resolve_dataset` looks."""
  command = f"tfds build {REAL_DATASET} --imports fer_tfds --manual_dir DIR"
  return command + (f" --data_dir {data_dir}" if data_dir else "")


def resolve_dataset(name: str | None, data_dir: str | None) -> str:
  """The TFDS name to train on: `name`, or for None/"auto" the real data when prepared.

  Falling back to the synthetic faces keeps a fresh machine working, so the log
  says loudly that the data is synthetic and how to get the real one. The
  synthetic set is built here on first use (a few seconds), once, before any
  per-replica pipeline asks for it.
  """
  if name not in AUTO_NAMES:
    return name
  if tfds.builder(REAL_DATASET, data_dir=data_dir).is_prepared():
    console.say(f"Data: the real FER2013 ({REAL_DATASET}) from "
                f"{data_dir or 'the default TFDS data dir (~/tensorflow_datasets)'}.")
    return REAL_DATASET
  console.say(
      f"FER2013 is not prepared in {data_dir or 'the default TFDS data dir'}, so the data is "
      f"SYNTHETIC: {SYNTHETIC_DATASET}, procedurally drawn cartoon faces, not FER2013; its "
      "accuracy says nothing about real faces. To use the real data, download FER2013 into a "
      f"directory DIR and run:\n  {build_command(data_dir)}", warning=True)
  builder = tfds.builder(SYNTHETIC_DATASET, data_dir=data_dir)
  if not builder.is_prepared():
    builder.download_and_prepare()
  return SYNTHETIC_DATASET


def prepared_dataset(name: str | None, data_dir: str | None) -> str:
  """The prepared TFDS dataset `name` stands for; ValueError when it cannot be had.

  auto: as `resolve_dataset`. A dataset we generate (the synthetic faces) is
  built on first use; an unprepared fer2013 is an error that prints the
  `tfds build` command. One rule for the trainer and the tools, which turn the
  ValueError into their one-line usage error.
  """
  if name in AUTO_NAMES or name == "":
    return resolve_dataset(None, data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # noqa: BLE001  (tfds raises several types for a bad name)
    raise ValueError(f"unknown --dataset={name}: {' '.join(str(e).split())}") from None
  if builder.is_prepared():
    return name
  if builder.name == REAL_DATASET:
    where = data_dir or "the default TFDS data dir (~/tensorflow_datasets)"
    raise ValueError(
        f"--dataset={name} is not prepared in {where}; put a FER2013 download in DIR and run: "
        f"{build_command(data_dir)}")
  logging.info("Building %s (first use).", name)
  builder.download_and_prepare()
  return name


def preprocess_images(images: tf.Tensor, image_size: int = NATIVE_SIZE,
                      channels: int = 1) -> tf.Tensor:
  """uint8 (..., H, W, 1) faces -> float32 in [0, 1], image_size square, 1 or 3 channels.

  The single definition of model input: training, evaluation and prediction on
  photos all call it. Float input is taken as already in [0, 1] (the training
  pipeline augments at 48x48 first, where it is 4x cheaper, then calls this
  again to resize). Resizing and RGB are skipped when not needed (free for the
  48x48 grayscale CNN). RGB before resizing measured 16% faster than after
  (tf.image.resize handles 3 channels at once; tiling 96x96 costs more than 48x48).
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  images = tf.image.convert_image_dtype(images, tf.float32)  # uint8 / 255; float unchanged
  if channels == 3:
    images = tf.image.grayscale_to_rgb(images)
  if images.shape[-3:-1] != (image_size, image_size):
    images = tf.image.resize(images, (image_size, image_size), method="bilinear")
  return images


def _uniform(seed: tf.Tensor, batch: tf.Tensor, limit: float | tf.Tensor) -> tf.Tensor:
  """Per-image values uniform in [-limit, limit], stateless (same seed, same values)."""
  return tf.random.stateless_uniform([batch], seed=seed, minval=-limit, maxval=limit)


def affine_transforms(seed: tf.Tensor, batch: tf.Tensor, height: int, width: int,
                      strength: float | tf.Tensor) -> tf.Tensor:
  """(batch, 8) projective transforms: flip, rotation, zoom and shift composed in one.

  One resampling per image instead of one per op (as separate Keras layers do),
  which is cheaper and blurs less. Each row maps an output pixel to the input
  pixel it samples: in = centre + scale * R(angle) * F * (out - centre) + shift.
  """
  seeds = tf.random.experimental.stateless_split(seed, num=5)
  flip = tf.where(
      tf.random.stateless_uniform([batch], seed=seeds[0]) < 0.5, -1.0, 1.0
  )
  angle = _uniform(seeds[1], batch, math.radians(MAX_ROTATION_DEG) * strength)
  scale = 1.0 + _uniform(seeds[2], batch, MAX_ZOOM * strength)
  shift_x = _uniform(seeds[3], batch, MAX_SHIFT * strength) * width
  shift_y = _uniform(seeds[4], batch, MAX_SHIFT * strength) * height
  cx, cy = (width - 1) / 2, (height - 1) / 2
  cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
  a0, a1, b0, b1 = cos * flip, -sin, sin * flip, cos
  a2 = cx + shift_x - a0 * cx - a1 * cy
  b2 = cy + shift_y - b0 * cx - b1 * cy
  zeros = tf.zeros_like(a0)
  return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def jitter_intensity(images: tf.Tensor, seed: tf.Tensor, strength: float | tf.Tensor) -> tf.Tensor:
  """Per-image brightness shift and contrast scaling about the image mean, clipped to [0, 1]."""
  batch = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(seed, num=2)
  brightness = _uniform(seeds[0], batch, MAX_BRIGHTNESS * strength)[:, None, None, None]
  contrast = 1.0 + _uniform(seeds[1], batch, MAX_CONTRAST * strength)[:, None, None, None]
  mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
  return tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 1.0)


def augment_batch(images: tf.Tensor, seed: tf.Tensor | None = None,
                  strength: float | tf.Tensor | tf.Variable = 1.0) -> tf.Tensor:
  """Random flip, rotation, shift, zoom, brightness and contrast of a float batch (B, H, W, C).

  Vectorised over the batch (one projective transform op, one intensity op),
  so it runs once per batch instead of once per image. `strength` scales every
  range (0 returns the images unchanged; flips happen for any strength > 0).
  A `seed` (shape [2] integers) makes it deterministic via stateless ops; without
  one a fresh seed is drawn. A random pad-and-crop is not added: it is an
  integer shift, which the transform's +-10% shift already covers. `strength`
  may be a tensor or variable (read per batch: --augment_warmup_epochs ramps it).
  """
  if isinstance(strength, int | float):
    if strength <= 0:
      return images
    return _augment(images, seed, float(strength))
  strength = tf.cast(tf.convert_to_tensor(strength), tf.float32)
  return tf.cond(strength > 0, lambda: _augment(images, seed, strength), lambda: images)


def _augment(images: tf.Tensor, seed: tf.Tensor | None, strength: float | tf.Tensor) -> tf.Tensor:
  if seed is None:
    seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
  geometry_seed, intensity_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  shape = tf.shape(images)
  transforms = affine_transforms(geometry_seed, shape[0], images.shape[1], images.shape[2],
                                 strength)
  images = tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
      interpolation="BILINEAR", fill_mode="REFLECT",
  )
  return jitter_intensity(images, intensity_seed, strength)


def augment_for_training(images: tf.Tensor, seed: tf.Tensor,
                         strength: float | tf.Tensor | tf.Variable,
                         image_size: int = NATIVE_SIZE, channels: int = 1) -> tf.Tensor:
  """A uint8 (B, 48, 48, 1) training batch -> augmented model input: the one definition for
  both placements (the host pipeline here, the replica's step with trainers/device_input).

  Augments at 48x48 grayscale in [0, 1] (cheapest), then resizes / makes RGB.
  """
  images = preprocess_images(images)
  images = augment_batch(images, seed, strength)
  return preprocess_images(images, image_size, channels)


def shard_split(split: str, input_context: tf.distribute.InputContext | None, *,
                dataset: str, data_dir: str | None,
                ) -> tuple[Any, tf.distribute.InputContext | None]:
  """This input pipeline's share of `split`: (the split to read, the context for TFDS's reader).

  By files when the split's files divide evenly over the input pipelines (fer2013 is written
  in 16 files per split, fer_tfds/sharding.py): TFDS's `ReadConfig(input_context=...)` (the
  second element) gives pipeline i the files i, i + n, i + 2n, ... of n pipelines, so each
  opens only its own files and shuffles them every epoch, as tf.data's file auto-sharding
  would. By examples otherwise: `tfds.even_splits` (the first element) gives pipeline i the
  i-th of n equal, contiguous ranges of the examples, whatever the files. That covers

  * fewer files than pipelines (a one-file build from before the builder sharded, or a tiny
    split), where TFDS's file sharding fails (some pipelines would get nothing);
  * a file count that does not divide by the pipelines: shares would differ by up to a
    file (16 files over 3 pipelines: 6, 5 and 5 files, 6/16 of the split against 5/16),
    and the trainer, which counts an epoch in steps of equal per-worker batches, would
    then read some examples more often than others every epoch (even splits differ by
    one example).

  An unprepared dataset is prepared first, as `tfds.load` would: every pipeline must see
  the same files to choose the same way.
  """
  if input_context is None or input_context.num_input_pipelines == 1:
    return split, None
  pipelines = input_context.num_input_pipelines
  builder = tfds.builder(dataset, data_dir=data_dir)
  if not builder.is_prepared():
    builder.download_and_prepare()
  files = len(builder.info.splits[split].file_instructions)
  if files >= pipelines and files % pipelines == 0:
    return split, input_context
  return tfds.even_splits(split, n=pipelines)[input_context.input_pipeline_id], None


def _read_config(seed: int | None, deterministic: bool,
                 input_context: tf.distribute.InputContext | None = None) -> tfds.ReadConfig:
  """TFDS's reader settings; `input_context` shards by files (`shard_split`)."""
  options = tf.data.Options()
  options.deterministic = deterministic
  return tfds.ReadConfig(
      options=options,
      shuffle_seed=seed,
      input_context=input_context,
      # interleave_cycle_length stays TFDS's default (16 files at a time, 16 examples from
      # each in turn, the files read in parallel), not AUTOTUNE: with several files AUTOTUNE's
      # cycle is the machine's core count, so the stored order and a seeded run's order would
      # differ by machine. Evaluation reads in `builder.as_dataset(shuffle_files=False)`'s order.
      # The decoded uint8 images are cached below; TFDS's own cache of the
      # serialized records would be a second copy.
      try_autocache=False,
  )


def make_dataset(
    split: str,
    *,
    dataset: str,
    data_dir: str | None,
    batch_size: int,
    training: bool,
    image_size: int = NATIVE_SIZE,
    channels: int = 1,
    seed: int = 0,
    deterministic: bool = False,
    augment_strength: float | tf.Variable = 1.0,
    cache: bool = True,
    input_context: tf.distribute.InputContext | None = None,
    with_ids: bool = False,
    data_service: str | None = None,
    example_filter: Callable[[dict[str, tf.Tensor]], tf.Tensor] | None = None,
) -> tf.data.Dataset:
  """Batches of (images float32 (B, image_size, image_size, channels), labels int32 (B,)).

  `training` shuffles, drops the last partial batch (static batch shapes for
  distribution) and augments; evaluation keeps every example in order. With
  `input_context` (from `distribute_datasets_from_function`), `batch_size` is
  the per-replica batch and this pipeline reads only its shard of the examples.
  `seed` fixes file order, shuffling and augmentation; `deterministic` also
  fixes tf.data's element order under parallelism in training (a little
  slower). Evaluation always keeps the stored order, so predictions line up
  with examples run after run.
  `with_ids` adds the example ids as a third element (tests, error analysis).
  `example_filter` keeps the stored examples (image, label, id) it is true for,
  before the cache: a sweep's objective slice of train, or the rest of it.
  `data_service` (grpc://HOST:PORT of a tf.data service dispatcher, training
  only) runs everything up to the augmentation on the service's workers, as an
  endless, unseeded stream: see `_distribute`.
  """
  if dataset in AUTO_NAMES:
    dataset = resolve_dataset(dataset, data_dir)
  if data_service and not training:
    raise ValueError("data_service is for the training input only")
  if data_service and isinstance(augment_strength, tf.Variable):
    raise ValueError("the tf.data service cannot read a variable augment_strength")
  if data_service:
    # Every service worker runs this same pipeline: with a fixed seed they would all
    # send the same batches in the same order.
    seed, deterministic = None, False
  deterministic = deterministic or not training
  share, files_context = shard_split(split, input_context, dataset=dataset, data_dir=data_dir)
  ds = tfds.load(
      dataset,
      split=share,
      data_dir=data_dir,
      shuffle_files=training,
      read_config=_read_config(seed, deterministic, files_context),
  )

  def select(example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, ...]:
    label = tf.cast(example["label"], tf.int32)
    return (example["image"], label, example["id"]) if with_ids else (example["image"], label)

  if example_filter is not None:
    ds = ds.filter(example_filter)
  ds = ds.map(select, num_parallel_calls=tf.data.AUTOTUNE)
  if cache:
    ds = ds.cache()
  if training:
    examples = int(ds.cardinality())
    buffer = examples if 0 < examples <= _SHUFFLE_BUFFER_CAP else _SHUFFLE_BUFFER_CAP
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE)

  def prepare(images: tf.Tensor, *rest: tf.Tensor) -> tuple[tf.Tensor, ...]:
    return (preprocess_images(images, image_size, channels), *rest)

  # A variable (--augment_warmup_epochs) is read per batch; it may be 0 for now.
  augments = isinstance(augment_strength, tf.Variable) or augment_strength > 0
  if training and augments:
    # One seed per batch, from a seeded stream that differs per epoch (runs
    # repeat exactly, epochs do not) and per input pipeline (replicas do not
    # share augmentations).
    pipeline = input_context.input_pipeline_id if input_context else 0
    stream_seed = None if seed is None else seed + _PIPELINE_SEED_STRIDE * pipeline
    seeds = tf.data.Dataset.random(seed=stream_seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)

    def augment(batch: tuple[tf.Tensor, ...], batch_seed: tf.Tensor) -> tuple[tf.Tensor, ...]:
      images = augment_for_training(batch[0], batch_seed, augment_strength, image_size,
                                    channels)
      return (images, *batch[1:])

    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
  else:
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  if data_service:
    ds = _distribute(ds, data_service)
  options = tf.data.Options()
  options.deterministic = deterministic
  return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def _distribute(ds: tf.data.Dataset, service: str) -> tf.data.Dataset:
  """`ds`, repeated without end, produced by the tf.data service at `service`.

  parallel_epochs: each service worker runs the whole pipeline on its own
  (unseeded) shuffle of the examples, and this client takes batches from
  whichever workers are alive, so a worker that dies or joins does not stop
  training. distributed_epoch (each example once per epoch, over all workers)
  needs a source that the dispatcher can split, and the cache after reading
  fails under dynamic sharding (measured; docs/distributed.md). The
  trainer counts epochs in steps over an endless stream, so each worker
  repeats its pipeline itself: a client-side repeat would start a new job each
  pass. Anonymous jobs: each input pipeline (replica shard) gets its own.
  Uncompressed: the service's default (snappy) cost a third of the throughput
  over 127.0.0.1 (15,700 vs 23,700 images/s from one worker, measured).
  """
  return ds.repeat().apply(tf.data.experimental.service.distribute(
      processing_mode=tf.data.experimental.service.ShardingPolicy.OFF, service=service,
      compression=None))


def check_global_batch(global_batch_size: int, replicas: int) -> None:
  """Raises ValueError unless the global batch splits evenly over the replicas."""
  if global_batch_size % replicas:
    raise ValueError(
        f"--batch_size {global_batch_size} is not divisible by the {replicas} replicas; use a "
        f"multiple of {replicas} (e.g. {max(replicas, global_batch_size // replicas * replicas)})."
    )


def distributed_dataset(
    strategy: tf.distribute.Strategy,
    split: str,
    *,
    global_batch_size: int,
    map_fn: Callable[..., Any] | None = None,
    repeat: bool = False,
    **kwargs: Any,
) -> tf.distribute.DistributedDataset:
  """`make_dataset` per input pipeline of `strategy`, each with its per-replica batch.

  `kwargs` are those of `make_dataset` (dataset, data_dir, training, ...).
  `map_fn` is applied to each batch before distribution (a distributed dataset
  cannot be mapped afterwards), e.g. one-hot labels and sample weights;
  `repeat` makes the input endless, for step-counted epochs.
  """
  check_global_batch(global_batch_size, strategy.num_replicas_in_sync)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    ds = make_dataset(split, batch_size=context.get_per_replica_batch_size(global_batch_size),
                      input_context=context, **kwargs)
    if map_fn is not None:
      ds = ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.repeat() if repeat else ds

  return strategy.distribute_datasets_from_function(dataset_fn)
