"""Benchmarks the training input pipeline of trainers/data.py alone (no model).

Why: the input pipeline must never be what a training run waits for. This
measures images/s of read + decode + cache + shuffle + batch + augment (and the
RGB + 96x96 resize the pretrained backbones need) on all CPU cores, with and
without augmentation and per augmentation op, and compares it with the
models' own training speed measured in the same run (`--model` on the 48x48x1
variants, `--backbone_model` on the RGB ones, each fed one in-memory batch, so
no input cost); the goal is >= 10x.
It reads the real fer2013 when prepared in `--data_dir`, else the synthetic set:

  tfds build fer2013 --imports fer_tfds --manual_dir /tmp/fer2013 --data_dir DIR
  python -m tools.bench.input --data_dir DIR [--batch_size 128] [--repeats 5]

`--data_service_workers=1,2` measures instead the augmented 48x48 training
input through a tf.data service (`--data_service`, tools/data_service.py) with
1, then 2 workers, each a local process with a local dispatcher, against the
same pipeline in this process, in the same run.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import app, flags  # noqa: E402

from tools import launch_local_cluster  # noqa: E402
from trainers import cli, data  # noqa: E402

GOAL = 10.0  # pipeline images/s over model training examples/s

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  cli.define_dataset_flags()
  flags.DEFINE_string("split", "train", "Split to read.")
  flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
  flags.DEFINE_integer("repeats", 5, "Timed passes per variant (median).", lower_bound=1)
  flags.DEFINE_integer(
      "min_images", 60_000, "Images per timed pass (the cached split is repeated to reach it).",
      lower_bound=1)
  flags.DEFINE_integer("backbone_size", 96, "Image size of the RGB variant.")
  flags.DEFINE_string("model", "improved_cnn",
                      "Model whose training speed the 48x48x1 pipelines are compared with.")
  flags.DEFINE_string("backbone_model", "mobilenet_v2",
                      "Model whose training speed the RGB (--backbone_size) pipelines are "
                      "compared with.")
  flags.DEFINE_integer("model_steps", 20, "Train steps per timed model measurement.",
                       lower_bound=1)
  flags.DEFINE_bool("per_op", True, "Also time each augmentation op on its own.")
  flags.DEFINE_list(
      "data_service_workers", [],
      "Worker counts, e.g. 1,2: time only the augmented 48x48 training input through a local "
      "tf.data service with that many worker processes, against the local pipeline.")


def timed_pass(ds: tf.data.Dataset, batches: int) -> float:
  """Images/s of iterating `batches` batches of `ds` (repeated as needed)."""
  images, start = 0, time.perf_counter()
  for batch in ds.repeat().take(batches):
    images += int(batch[0].shape[0])
  return images / (time.perf_counter() - start)


def cold_epoch(ds: tf.data.Dataset) -> float:
  """Images/s of the first epoch: reading and decoding the TFRecords, filling the cache."""
  images, start = 0, time.perf_counter()
  for batch in ds:
    images += int(batch[0].shape[0])
  return images / (time.perf_counter() - start)


def measure(name: str, ds: tf.data.Dataset, batches: int, repeats: int) -> list[float]:
  cold_epoch(ds)  # fills the cache; the timed passes read it, as every epoch after the first
  samples = [timed_pass(ds, batches) for _ in range(repeats)]
  print(f"  {name}: {statistics.median(samples):,.0f} images/s "
        f"(samples: {', '.join(f'{s:,.0f}' for s in samples)})", flush=True)
  return samples


def keras_chain() -> keras.Sequential:
  """The same augmentation as Keras preprocessing layers: one resampling per geometric op."""
  layers = keras.layers
  return keras.Sequential([
      layers.RandomFlip("horizontal"),
      layers.RandomRotation(data.MAX_ROTATION_DEG / 360, fill_mode="reflect"),
      layers.RandomTranslation(data.MAX_SHIFT, data.MAX_SHIFT, fill_mode="reflect"),
      layers.RandomZoom(data.MAX_ZOOM, fill_mode="reflect"),
      layers.RandomBrightness(data.MAX_BRIGHTNESS, value_range=(0, 1)),
      layers.RandomContrast(data.MAX_CONTRAST, value_range=(0, 1)),
  ])


def pad_crop(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Random 4-pixel pad-and-crop (for comparison; the projective shift covers it)."""
  padded = tf.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT")
  return tf.image.stateless_random_crop(padded, tf.shape(images), seed=seed)


def op_variants() -> dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
  """Each augmentation op alone, applied to float 48x48x1 batches with a per-batch seed."""
  chain = keras_chain()

  def geometry(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(images)
    transforms = data.affine_transforms(seed, shape[0], 48, 48, 1.0)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")

  return {
      "flip+rotate+shift+zoom, one ImageProjectiveTransformV3": geometry,
      "brightness+contrast": lambda images, seed: data.jitter_intensity(images, seed, 1.0),
      "all of augment_batch": lambda images, seed: data.augment_batch(images, seed, 1.0),
      "keras Random* layers, same ops (6 layers)": lambda images, seed: chain(images,
                                                                              training=True),
      "pad 4 + random crop (not used)": pad_crop,
      f"resize to {FLAGS.backbone_size} + RGB": lambda images, seed: data.preprocess_images(
          images, FLAGS.backbone_size, 3),
  }


def with_op(base: tf.data.Dataset, op: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
            ) -> tf.data.Dataset:
  seeds = tf.data.Dataset.random(seed=0).batch(2)
  return tf.data.Dataset.zip(base, seeds).map(
      lambda batch, seed: (op(batch[0], seed), batch[1]), num_parallel_calls=tf.data.AUTOTUNE
  ).prefetch(tf.data.AUTOTUNE)


def machine() -> str:
  model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
  versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("tensorflow", "keras",
                                                                "tensorflow-datasets"))
  return (f"{len(os.sched_getaffinity(0))} usable cores, {model}; "
          f"Python {platform.python_version()}, {versions}; load average (1 min) at the start "
          f"{os.getloadavg()[0]:.2f}")


@contextlib.contextmanager
def local_service(workers: int) -> Iterator[str]:
  """A dispatcher and `workers` worker processes (tools.data_service) on 127.0.0.1; yields
  the dispatcher's grpc:// address and stops every process afterwards."""
  processes: list[subprocess.Popen] = []

  def start(*args: str) -> str:
    process = subprocess.Popen([sys.executable, "-m", "tools.data_service", *args],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    processes.append(process)
    line = process.stdout.readline() if process.stdout else ""
    if not line:
      raise RuntimeError(f"tools.data_service {' '.join(args)} did not start")
    return line.split()[1]

  try:
    address = start("--role=dispatcher")
    for _ in range(workers):
      start("--role=worker", f"--dispatcher_address={address}")
    yield address
  finally:
    launch_local_cluster.stop(processes)


def steady_rate(ds: tf.data.Dataset, warmup: int, batches: int, repeats: int) -> list[float]:
  """Images/s of `repeats` runs of `batches` batches of one iterator over the endless `ds`,
  after `warmup` batches (caches filled): one iterator, as in a training run, because a
  new one would be a new service job whose workers start over."""
  iterator = iter(ds)
  for _ in range(warmup):
    next(iterator)
  samples = []
  for _ in range(repeats):
    images, start = 0, time.perf_counter()
    for _ in range(batches):
      images += int(next(iterator)[0].shape[0])
    samples.append(images / (time.perf_counter() - start))
  return samples


def service_mode(dataset: str, counts: list[int], batches: int, repeats: int) -> None:
  """The augmented 48x48 training input in this process, then through the tf.data service."""
  batch_size = FLAGS.batch_size
  examples = tfds_examples(dataset)
  epoch = max(1, examples // batch_size)

  def train_ds(service: str | None = None) -> tf.data.Dataset:
    ds = data.make_dataset(FLAGS.split, dataset=dataset, data_dir=FLAGS.data_dir,
                           batch_size=batch_size, training=True, data_service=service)
    return ds if service else ds.repeat()

  print(f"\nThe augmented 48x48x1 training input ({epoch} batches an epoch), one iterator, "
        f"after a warm-up of one epoch per pipeline (fills each cache):", flush=True)
  results: dict[str, list[float]] = {}

  def record(name: str, samples: list[float]) -> None:
    results[name] = samples
    print(f"  {name}: {statistics.median(samples):,.0f} images/s "
          f"(samples: {', '.join(f'{s:,.0f}' for s in samples)})", flush=True)

  record("local pipeline, in this process", steady_rate(train_ds(), epoch, batches, repeats))
  for count in counts:
    with local_service(count) as address:
      samples = steady_rate(train_ds(address), epoch * count + 2, batches, repeats)
    record(f"tf.data service, {count} local worker(s)", samples)
  base = statistics.median(results["local pipeline, in this process"])
  print(f"\n=== Medians; ratio = images/s over the local pipeline's, same run ===\n"
        f"{'variant':<44} {'images/s':>10} {'ratio':>7}")
  for name, samples in results.items():
    median = statistics.median(samples)
    print(f"{name:<44} {median:>10,.0f} {median / base:>6.2f}x")
  print(f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f} on "
        f"{len(os.sched_getaffinity(0))} cores (the workers share this machine's cores).")


def tfds_examples(dataset: str) -> int:
  return tfds.builder(dataset, data_dir=FLAGS.data_dir).info.splits[FLAGS.split].num_examples


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    counts = [int(c) for c in FLAGS.data_service_workers]
  except ValueError:
    raise app.UsageError("--data_service_workers takes worker counts, e.g. 1,2") from None
  if any(c < 1 for c in counts):
    raise app.UsageError("--data_service_workers: each count must be >= 1")
  dataset = data.resolve_dataset(FLAGS.dataset, FLAGS.data_dir)
  batch_size, repeats = FLAGS.batch_size, FLAGS.repeats
  batches = -(-FLAGS.min_images // batch_size)
  print(f"Machine: {machine()}\nDataset: {dataset}, split {FLAGS.split}, batch {batch_size}, "
        f"{repeats} passes of {batches * batch_size:,} images per variant (cache warm: every "
        f"epoch after the first)", flush=True)
  if counts:
    service_mode(dataset, counts, batches, repeats)
    return

  def train_ds(**kwargs: object) -> tf.data.Dataset:
    return data.make_dataset(FLAGS.split, dataset=dataset, data_dir=FLAGS.data_dir,
                             batch_size=batch_size, training=True, **kwargs)

  size = FLAGS.backbone_size
  pipelines = {
      "train 48x48x1, augmented (the CNN)": train_ds(),
      "train 48x48x1, no augmentation": train_ds(augment_strength=0.0),
      f"train {size}x{size}x3, augmented (backbones)": train_ds(image_size=size, channels=3),
      f"train {size}x{size}x3, no augmentation": train_ds(image_size=size, channels=3,
                                                         augment_strength=0.0),
  }
  print("\nWhole training pipeline (read, decode, cache, shuffle, batch, augment, prefetch):")
  results = {name: measure(name, ds, batches, repeats) for name, ds in pipelines.items()}
  cold = cold_epoch(train_ds(cache=False))
  print(f"  first epoch, 48x48x1 augmented, reading + decoding the TFRecords: {cold:,.0f} "
        f"images/s")
  if FLAGS.per_op:
    base = train_ds(augment_strength=0.0)
    print("\nEach op alone, on cached float 48x48x1 batches (base = no augmentation above):")
    for name, op in op_variants().items():
      results[f"op: {name}"] = measure(f"op: {name}", with_op(base, op), batches, repeats)
  print("\nThe models' training speed (same run, batch "
        f"{batch_size}, {FLAGS.model_steps} steps, median of {repeats}):", flush=True)
  rates = {"cnn": statistics.median(model_rate(FLAGS.model, batch_size, FLAGS.model_steps,
                                               repeats)),
           "backbone": statistics.median(model_rate(FLAGS.backbone_model, batch_size,
                                                    FLAGS.model_steps, repeats))}
  report(results, rates)
  print(f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f} on "
        f"{len(os.sched_getaffinity(0))} cores (other processes skew the figures).")


def model_rate(name: str, batch_size: int, steps: int, repeats: int) -> list[float]:
  """Training examples/s of `name` in this run, fed one in-memory batch (no input cost)."""
  from trainers import models

  spec = models.MODELS[name]
  keras.utils.set_random_seed(0)
  model = models.build_model(name)
  model.compile(optimizer="adam", loss="categorical_crossentropy")
  images = tf.random.uniform((batch_size, spec.image_size, spec.image_size, spec.channels))
  labels = tf.one_hot(tf.zeros(batch_size, tf.int32), data.NUM_CLASSES)
  ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
  model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # tracing, buffers
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    samples.append(steps * batch_size / (time.perf_counter() - start))
  print(f"  {name} training: {statistics.median(samples):,.1f} examples/s (samples: "
        f"{', '.join(f'{s:,.1f}' for s in samples)})", flush=True)
  return samples


def report(results: dict[str, list[float]], rates: dict[str, float]) -> None:
  """Medians against the models' training rates measured in this run."""
  base = statistics.median(results["train 48x48x1, no augmentation"])
  print(f"\n=== Medians; ratio = pipeline / model training (same run: {FLAGS.model} "
        f"{rates['cnn']:,.1f}, {FLAGS.backbone_model} {rates['backbone']:,.1f} examples/s), "
        f"goal >= {GOAL:g}x ===")
  print(f"{'variant':<62} {'images/s':>10} {'us/image':>9} {'ratio':>8}")
  for name, samples in results.items():
    median = statistics.median(samples)
    rate = rates["backbone"] if "x3," in name else rates["cnn"]
    extra = "" if not name.startswith("op: ") else f"  (+{1e6 / median - 1e6 / base:.1f} us)"
    verdict = "PASS" if median / rate >= GOAL else "FAIL"
    print(f"{name:<62} {median:>10,.0f} {1e6 / median:>9.1f} {median / rate:>7.0f}x {verdict}"
          f"{extra}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
