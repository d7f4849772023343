r"""Training throughput: our pipeline vs the notebook's numpy path, in one run.

The notebook trains `improved_cnn` with `model.fit(x, y, batch_size=32)` on the
whole Training split held as a float64 numpy array. Ours feeds the same model
from `trainers.data.make_dataset` (cached uint8, vectorised augmentation,
prefetch) with the flags below. Both are timed here, on the same machine, after
a warm-up, as examples/s; the achieved GFLOP/s (training ~ 3x the forward
FLOPs) shows how close the CPU is to its limit.

    python -m tools.bench.train --data_dir ~/tensorflow_datasets

Configurations ending in `:device` train with `--input=device` (the split
resident, trainers/custom_loop.py), and each is also printed as a ratio to the
same configuration with host input: on CPU, moving the augmentation into the
step must not cost.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from absl import app, flags

from trainers import cli

FLAGS = flags.FLAGS
GOAL = 2.0


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  cli.define_dataset_flags()
  flags.DEFINE_string("model", "improved_cnn", "Model of trainers.models.MODELS.")
  flags.DEFINE_integer("examples", 8192, "Training examples per measurement.", lower_bound=256)
  flags.DEFINE_integer("repeats", 3, "Measurements per configuration (median).", lower_bound=1)
  flags.DEFINE_list(
      "configs", ["32", "256", "256:device", "256:bf16", "256:bf16:device", "256:spe8",
                  "256:jit"],
      "Our configurations: BATCH[:speN][:jit][:bf16][:noaug][:device], e.g. 256:spe8:bf16 "
      "(bf16: mixed bfloat16 precision, the trainer's --mixed_precision on CPU; device: "
      "--input=device, the split on the device and the trainer's custom loop, else host "
      "input and Keras fit, as the trainer runs each).")


def compiled_model(jit: bool = False, steps_per_execution: int = 1,
                   bfloat16: bool = False) -> object:
  import keras

  from trainers.models import build_model

  keras.utils.set_random_seed(0)
  # --mixed_precision of the trainer on CPU: bfloat16 compute, float32 weights.
  keras.mixed_precision.set_global_policy("mixed_bfloat16" if bfloat16 else "float32")
  model = build_model(FLAGS.model)
  model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"],
                jit_compile=jit, steps_per_execution=steps_per_execution)
  return model


def steady_throughput(model: object, batch: int, **fit_kwargs: object) -> float:
  """Examples/s of one `model.fit` call after its first fifth (tracing, buffers).

  Timed per step with a callback, so one-off costs of each fit call (tracing,
  filling the shuffle buffer) do not count against either side.
  """
  import keras

  class StepTimes(keras.callbacks.Callback):
    def __init__(self) -> None:
      super().__init__()
      self.times: list[tuple[int, float]] = []

    def on_train_batch_end(self, step: int, logs: object = None) -> None:
      self.times.append((step, time.perf_counter()))

  recorder = StepTimes()
  model.fit(epochs=1, verbose=0, callbacks=[recorder], **fit_kwargs)
  (first_step, start), (last_step, end) = recorder.times[len(recorder.times) // 5], \
      recorder.times[-1]
  return (last_step - first_step) * batch / (end - start)


def notebook_throughput(dataset: str) -> list[float]:
  """The notebook: Training split as float64 numpy, model.fit(batch_size=32)."""
  import tensorflow_datasets as tfds

  images, labels = tfds.as_numpy(tfds.load(dataset, split="train", data_dir=FLAGS.data_dir,
                                            batch_size=-1, as_supervised=True))
  x = images.astype(np.float64) / 255.0
  y = np.eye(7)[labels]
  n = min(FLAGS.examples, len(x)) // 32 * 32
  model = compiled_model()
  return [steady_throughput(model, 32, x=x[:n], y=y[:n], batch_size=32)
          for _ in range(FLAGS.repeats)]


def pipeline_throughput(dataset: str, config: str) -> list[float]:
  """Ours: make_dataset -> model.fit with the configuration's flags."""
  import tensorflow as tf

  from trainers.data import make_dataset

  parts = config.split(":")
  batch = int(parts[0])
  spe = next((int(p[3:]) for p in parts if p.startswith("spe")), 1)
  model = compiled_model(jit="jit" in parts, steps_per_execution=spe, bfloat16="bf16" in parts)
  ds = make_dataset("train", dataset=dataset, data_dir=FLAGS.data_dir, batch_size=batch,
                    training=True, augment_strength=0.0 if "noaug" in parts else 1.0)
  ds = ds.map(lambda x, y: (x, tf.one_hot(y, 7))).repeat()
  steps = max(5 * spe, FLAGS.examples // batch // spe * spe)
  return [steady_throughput(model, batch, x=ds, steps_per_epoch=steps)
          for _ in range(FLAGS.repeats)]


def device_throughput(dataset: str, config: str) -> list[float]:
  """--input=device as the trainer runs it: the split resident, index batches, gather and
  augmentation in the step of trainers/custom_loop.py (timed after a fifth of warm-up)."""
  import tensorflow as tf

  from trainers import custom_loop, device_input, task
  from trainers.models import MODELS

  parts = config.split(":")
  batch = int(parts[0])
  spe = next((int(p[3:]) for p in parts if p.startswith("spe")), 1)
  model = compiled_model(jit="jit" in parts, steps_per_execution=spe, bfloat16="bf16" in parts)
  strategy = tf.distribute.get_strategy()
  images, labels = device_input.load_split("train", dataset=dataset, data_dir=FLAGS.data_dir)
  spec = MODELS[FLAGS.model]
  feed = device_input.Feed(device_input.resident_images(strategy, images),
                           image_size=spec.image_size, channels=spec.channels,
                           strength=0.0 if "noaug" in parts else 1.0)
  indices = device_input.index_dataset(
      labels, global_batch_size=batch, steps_per_epoch=len(labels) // batch, num_replicas=1,
      seed=0, map_fn=task.one_hot(7))
  model.optimizer.build(model.trainable_variables)
  train_steps = custom_loop.train_function(model, strategy, "jit" in parts, feed)
  iterator = iter(indices)
  steps = max(5 * spe, FLAGS.examples // batch // spe * spe)
  samples = []
  for _ in range(FLAGS.repeats):
    train_steps(iterator, tf.constant(max(1, steps // 5))).numpy()  # as steady_throughput
    start = time.perf_counter()
    for _ in range(steps // spe):
      train_steps(iterator, tf.constant(spe)).numpy()
    samples.append(steps // spe * spe * batch / (time.perf_counter() - start))
  return samples


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from trainers.data import resolve_dataset
  from trainers.models import count_macs

  dataset = resolve_dataset(FLAGS.dataset, FLAGS.data_dir)
  macs = count_macs(compiled_model())
  flops = 3 * 2 * macs  # training: forward + ~2x for the backward pass
  print(f"dataset {dataset}, model {FLAGS.model}: {macs / 1e6:.1f} M multiply-adds per "
        f"image forward, ~{flops / 1e9:.2f} GFLOP per training example")
  rows = [("notebook: float64 numpy, batch 32", notebook_throughput(dataset))]
  for config in FLAGS.configs:
    measure = device_throughput if "device" in config.split(":") else pipeline_throughput
    rows.append((f"ours: {config}", measure(dataset, config)))
  baseline = statistics.median(rows[0][1])
  print(f"\n{'configuration':<36} {'ex/s':>8} {'GFLOP/s':>8} {'ratio':>6}   samples")
  for name, samples in rows:
    median = statistics.median(samples)
    shown = ", ".join(f"{s:.0f}" for s in samples)
    print(f"{name:<36} {median:8.0f} {median * flops / 1e9:8.1f} {median / baseline:5.2f}x"
          f"   {shown}")
  by_name = {name: statistics.median(samples) for name, samples in rows}
  for name, rate in by_name.items():
    host = name.replace(":device", "")
    if name.endswith(":device") and host in by_name:
      print(f"{name}: {rate / by_name[host]:.2f}x {host} (host input)")
  best_name, best = max(((n, statistics.median(s)) for n, s in rows[1:]), key=lambda r: r[1])
  verdict = "PASS" if best / baseline >= GOAL else "FAIL"
  print(f"\nbest: {best_name} = {best / baseline:.2f}x the notebook (goal >= {GOAL:g}x) "
        f"{verdict}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
