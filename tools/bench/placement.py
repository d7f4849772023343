r"""Host CPU time per training image on ONE core: host input vs device input (issue 13).

Why: an accelerator must never wait for the host. With `--input=host` every
training image is read, shuffled, batched, augmented and copied by the host;
with `--input=device` the host only cuts a seeded permutation into index
batches with their one-hot labels (trainers/device_input.py) and the replica
gathers and augments in its step. This measures, in one run, each
placement's host pipeline alone (no model) pinned to one core (the process's
CPU affinity is set to one core before TensorFlow starts, and TensorFlow's and
tf.data's thread pools to one thread), as CPU microseconds per image and
images/s, and what that means: how many GPUs training fer_net at 1.46 M
images/s (issue 13's estimate: 50% of an H100's dense bf16 peak, 0.34 GFLOP per
training image) that many host cores could feed. It also measures, on this CPU,
what device input moves into the step: gather + augmentation per image as a
share of a whole training step (feed + forward + backward + update) of --model.

  python -m tools.bench.placement [--data_dir DIR] [--batch_size 256] [--repeats 5]

It reads the real fer2013 when prepared in --data_dir, else the synthetic set.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

CORE = min(os.sched_getaffinity(0))
if __name__ == "__main__":
  os.sched_setaffinity(0, {CORE})  # before TensorFlow creates its threads
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tools.bench.input import machine  # noqa: E402
from trainers import cli, custom_loop, data, device_input, models, task  # noqa: E402

GPU_RATE = 1.46e6  # fer_net training images/s on one H100 at 50% of dense bf16 peak (issue 13)
GOAL_US = 1.0  # host CPU microseconds per training image with device input

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  cli.define_dataset_flags()
  flags.DEFINE_integer("batch_size", 256, "Global batch size.", lower_bound=1)
  flags.DEFINE_integer("repeats", 5, "Timed passes per placement (median).", lower_bound=1)
  flags.DEFINE_integer("host_images", 30_000, "Images per timed pass of the host pipeline.",
                       lower_bound=1)
  flags.DEFINE_integer("index_images", 3_000_000,
                       "Images per timed pass of device input's index pipeline.", lower_bound=1)
  flags.DEFINE_string("model", "fer_net", "Model of the train-step share measurement.")
  flags.DEFINE_integer("model_steps", 10, "Train steps per timed step measurement.",
                       lower_bound=1)
  flags.DEFINE_list("host_cores", ["16", "64"],
                    "Host core counts to translate the per-core rate into GPUs fed.")


def one_thread(ds: tf.data.Dataset) -> tf.data.Dataset:
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  return ds.with_options(options)


def cpu_pass(ds: tf.data.Dataset, batches: int) -> tuple[float, float]:
  """(CPU microseconds per image, wall images/s) of iterating `batches` batches of `ds`."""
  images = 0
  wall, cpu = time.perf_counter(), time.process_time()
  for element in ds.take(batches):
    x = element[0]
    images += int((x["index"] if isinstance(x, dict) else x).shape[0])
  cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
  return 1e6 * cpu / images, images / wall


def measure(name: str, ds: tf.data.Dataset, batches: int, repeats: int
            ) -> tuple[float, float]:
  """Median (us/image, images/s) over `repeats` passes after one untimed pass."""
  cpu_pass(ds, min(batches, 50))  # tracing, caches, buffers
  samples = [cpu_pass(ds, batches) for _ in range(repeats)]
  us = statistics.median(s[0] for s in samples)
  rate = statistics.median(s[1] for s in samples)
  print(f"  {name}: {us:.3f} CPU us/image, {rate:,.0f} images/s (passes: "
        f"{', '.join(f'{s[0]:.3f}' for s in samples)} us)", flush=True)
  return us, rate


def step_share(images: np.ndarray, labels: np.ndarray, batch_size: int, steps: int,
               repeats: int) -> tuple[float, float]:
  """(feed seconds per batch, whole train step seconds per batch) of FLAGS.model here."""
  strategy = tf.distribute.get_strategy()
  spec = models.MODELS[FLAGS.model]
  resident = device_input.resident_images(strategy, images)
  feed = device_input.Feed(resident, image_size=spec.image_size, channels=spec.channels,
                           strength=1.0)
  keras.utils.set_random_seed(0)
  model = models.build_model(FLAGS.model)
  model.compile(optimizer="adam", loss="categorical_crossentropy")
  indices = device_input.index_dataset(
      labels, global_batch_size=batch_size, steps_per_epoch=len(labels) // batch_size,
      num_replicas=1, seed=0, map_fn=task.one_hot(data.NUM_CLASSES))
  train_steps = custom_loop.train_function(model, strategy, False, feed)
  feed_only = tf.function(lambda x: tf.reduce_sum(feed(x)))
  iterator = iter(indices)
  x = next(iter(indices))[0]
  train_steps(iterator, tf.constant(2))  # tracing
  feed_only(x)
  step_s, feed_s = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    train_steps(iterator, tf.constant(steps)).numpy()
    step_s.append((time.perf_counter() - start) / steps)
    start = time.perf_counter()
    for _ in range(steps):
      feed_only(x).numpy()
    feed_s.append((time.perf_counter() - start) / steps)
  return statistics.median(feed_s), statistics.median(step_s)


def main(argv: list[str]) -> None:
  del argv
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  dataset = data.resolve_dataset(FLAGS.dataset, FLAGS.data_dir)
  batch = FLAGS.batch_size
  print(f"Machine: {machine()}")
  print(f"Pinned to core {sorted(os.sched_getaffinity(0))} (of {len(os.sched_getaffinity(0))} "
        f"usable now), TensorFlow and tf.data on 1 thread; dataset {dataset}, batch {batch}.")

  host = one_thread(data.make_dataset(
      "train", dataset=dataset, data_dir=FLAGS.data_dir, batch_size=batch, training=True,
      seed=0).map(task.one_hot(data.NUM_CLASSES)).repeat())
  images, labels = device_input.load_split("train", dataset=dataset, data_dir=FLAGS.data_dir)
  steps = len(labels) // batch
  index = one_thread(device_input.index_dataset(
      labels, global_batch_size=batch, steps_per_epoch=steps, num_replicas=1, seed=0,
      map_fn=task.one_hot(data.NUM_CLASSES)))

  print("Host pipelines alone (no model), one core:")
  host_us, host_rate = measure("host input (read cache, shuffle, batch, augment, one-hot)",
                               host, max(1, FLAGS.host_images // batch), FLAGS.repeats)
  index_us, index_rate = measure("device input, host side (permutation, index batches, "
                                 "one-hot)", index, max(1, FLAGS.index_images // batch),
                                 FLAGS.repeats)
  feed_s, step_s = step_share(images, labels, batch, FLAGS.model_steps, FLAGS.repeats)

  print(f"\n=== Medians, batch {batch}, one core ===")
  print(f"{'placement':<8} {'host us/image':>14} {'images/s/core':>14}  GPUs fed at "
        f"{GPU_RATE / 1e6:.2f} M images/s by " + ", ".join(f"{c} cores" for c in
                                                          FLAGS.host_cores))
  for name, us, rate in (("host", host_us, host_rate), ("device", index_us, index_rate)):
    fed = ", ".join(f"{int(c) * rate / GPU_RATE:,.2f}" for c in FLAGS.host_cores)
    print(f"{name:<8} {us:>14.3f} {rate:>14,.0f}  {fed}")
  print(f"device input's host cost: {host_us / index_us:,.0f}x less per image than host input; "
        f"goal <= {GOAL_US:g} us/image: {'PASS' if index_us <= GOAL_US else 'FAIL'}")
  print(f"Moved into the step on this CPU ({FLAGS.model}, one core): gather + augmentation "
        f"{1e6 * feed_s / batch:.1f} us/image = {feed_s / step_s:.1%} of a train step "
        f"({1e3 * step_s:.1f} ms per batch of {batch}).")
  print(f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f} (other processes skew "
        "the figures).")
  sys.stdout.flush()


if __name__ == "__main__":
  define_flags()
  app.run(main)
