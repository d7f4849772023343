r"""The models' training rate with the batch already on the accelerator, under any Keras backend.

Why: the figure that sizes the input pipeline is how many images/s the
accelerator can train on when it never waits. tools/gpu_check measures it with
TensorFlow, but the GPU machines lent to this project (one H200) carry JAX and
no TensorFlow, and TensorFlow's wheel (573 MB for 2.21.0, CUDA 12 libraries
besides) is far over what a call may take there. Our models are plain Keras 3
(trainers/models), so the same models train under `KERAS_BACKEND=jax`: this
command times `train_on_batch` steps (Adam, the trainer's loss and accuracy
metric, the compiled step of the backend) on a batch that sits on the device,
for every model, global batch and precision asked, and writes model_rate.json
and model_rate.md into --out.

  KERAS_BACKEND=jax python -m tools.bench.model_rate --out=model_rate   # GPU, JAX
  python -m tools.bench.model_rate --smoke --out=/tmp/model_rate         # CPU (tests)

Each step returns its loss to the host (train_on_batch does), so a step's time
includes one device-to-host sync: the rates are a floor of what a fused loop
(the trainer's --steps_per_execution) reaches. It runs without TensorFlow: only
Keras, absl and numpy are imported (not trainers.cli, whose quiet console
imports TensorFlow).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from absl import app, flags

FLAGS = flags.FLAGS
MODELS = ("fer_net", "improved_cnn")
BATCHES = (256, 1024, 4096)
PRECISIONS = ("float32", "mixed_bfloat16")


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string("out", "model_rate", "Directory for model_rate.json and model_rate.md.")
  flags.DEFINE_list("models", list(MODELS), "Models of trainers.models.MODELS; NAME:B sets "
                    "fer_net's base_filters (fer_net:32 is the one-hour recipe's width).")
  flags.DEFINE_list("batch_sizes", [str(b) for b in BATCHES], "Global batch sizes.")
  flags.DEFINE_list("precisions", list(PRECISIONS), "Keras dtype policies (the trainer's "
                    "--mixed_precision is mixed_bfloat16 on CPUs, mixed_float16 on GPUs).")
  flags.DEFINE_integer("steps", 50, "Timed steps per window.", lower_bound=1)
  flags.DEFINE_integer("windows", 3, "Timed windows per configuration (the median is "
                       "reported).", lower_bound=1)
  flags.DEFINE_integer("warmup_steps", 5, "Untimed steps first (compilation, autotuning).",
                       lower_bound=1)
  flags.DEFINE_integer("budget_seconds", 420, "No configuration starts after this many "
                       "seconds; the ones left are listed as skipped.", lower_bound=1)
  flags.DEFINE_bool("smoke", False, "One tiny configuration per model (the tests' CPU run).")


def describe_devices() -> dict[str, Any]:
  """The backend, its version and the devices it trains on (and the CPU)."""
  import keras

  backend = keras.backend.backend()
  devices: list[str] = []
  version = ""
  if backend == "jax":
    import jax

    version = jax.__version__
    devices = [f"{d.platform}: {getattr(d, 'device_kind', d)}" for d in jax.devices()]
  elif backend == "tensorflow":
    import tensorflow as tf

    version = tf.__version__
    devices = [d.name for d in tf.config.list_logical_devices()]
  return {"backend": backend, "backend_version": version, "keras": keras.__version__,
          "devices": devices, "cpu": platform.processor() or platform.machine(),
          "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}


def parse_model(entry: str) -> tuple[str, dict[str, Any]]:
  """`fer_net` or `fer_net:32` (base_filters) into the model's name and hparams."""
  name, _, width = entry.partition(":")
  if width and not width.isdigit():
    raise app.UsageError(f"--models: {entry!r}: write NAME or NAME:BASE_FILTERS, e.g. fer_net:32")
  return name, ({"base_filters": int(width)} if width else {})


def measure(entry: str, batch: int, precision: str, *, steps: int, windows: int,
            warmup_steps: int) -> dict[str, Any]:
  """Images/s of `train_on_batch` on one device-resident batch: the median of `windows`."""
  import keras
  import numpy as np

  from trainers.models import MODELS as REGISTRY
  from trainers.models import NUM_CLASSES, build_model

  name, hparams = parse_model(entry)
  spec = REGISTRY[name]
  keras.utils.set_random_seed(0)
  keras.mixed_precision.set_global_policy(precision)
  try:
    model = build_model(name, **hparams)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    images = keras.ops.convert_to_tensor(rng.integers(
        0, 256, (batch, spec.image_size, spec.image_size, spec.channels)).astype("float32"))
    labels = keras.ops.convert_to_tensor(
        np.eye(NUM_CLASSES, dtype="float32")[rng.integers(0, NUM_CLASSES, batch)])
    first = time.perf_counter()
    for _ in range(warmup_steps):
      loss = model.train_on_batch(images, labels, return_dict=True)["loss"]
    compile_seconds = time.perf_counter() - first
    rates = []
    for _ in range(windows):
      start = time.perf_counter()
      for _ in range(steps):
        loss = model.train_on_batch(images, labels, return_dict=True)["loss"]
      rates.append(steps * batch / (time.perf_counter() - start))
  finally:
    keras.backend.clear_session()  # also resets the dtype policy to float32
  if not np.isfinite(loss):
    raise FloatingPointError(f"{entry} batch {batch} {precision}: loss {loss}")
  return {"model": entry, "params": model.count_params(), "batch": batch,
          "precision": precision, "images_per_second": statistics.median(rates),
          "window_rates": rates, "step_ms": 1000 * batch / statistics.median(rates),
          "warmup_seconds": compile_seconds, "final_loss": float(loss)}


def markdown(system: dict[str, Any], rows: list[dict[str, Any]]) -> str:
  """The results as a markdown table, headed by the machine."""
  lines = [f"Keras {system['keras']} on {system['backend']} {system['backend_version']}; "
           f"devices: {', '.join(system['devices'])}; host {system['cpu_count']} cores",
           "", "| model | params | batch | precision | images/s | ms/step |",
           "|---|---:|---:|---|---:|---:|"]
  for row in rows:
    if "error" in row:
      lines.append(f"| {row['model']} | | {row['batch']} | {row['precision']} | "
                   f"{row['error']} | |")
    else:
      lines.append(f"| {row['model']} | {row['params']:,} | {row['batch']} | "
                   f"{row['precision']} | {row['images_per_second']:,.0f} | "
                   f"{row['step_ms']:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from trainers.models import MODELS as REGISTRY

  for entry in FLAGS.models:
    name, _ = parse_model(entry)
    if name not in REGISTRY:
      raise app.UsageError(f"--models: unknown model {name!r}; valid: {', '.join(REGISTRY)}")
  try:
    batches = [int(b) for b in FLAGS.batch_sizes]
  except ValueError as e:
    raise app.UsageError(f"--batch_sizes: {e}; write integers, e.g. 256,1024") from None
  steps, windows, warmup = FLAGS.steps, FLAGS.windows, FLAGS.warmup_steps
  if FLAGS.smoke:
    batches, steps, windows, warmup = [8], 2, 2, 1
  system = describe_devices()
  print(f"{system['backend']} {system['backend_version']}: {', '.join(system['devices'])}",
        flush=True)
  deadline = time.perf_counter() + FLAGS.budget_seconds
  rows: list[dict[str, Any]] = []
  for entry in FLAGS.models:
    for batch in batches:
      for precision in FLAGS.precisions:
        if time.perf_counter() > deadline:
          rows.append({"model": entry, "batch": batch, "precision": precision,
                       "error": "skipped: --budget_seconds spent"})
          continue
        try:
          row = measure(entry, batch, precision, steps=steps, windows=windows,
                        warmup_steps=warmup)
          print(f"{entry} batch {batch} {precision}: {row['images_per_second']:,.0f} "
                f"images/s ({row['step_ms']:.2f} ms/step)", flush=True)
        except Exception as e:  # noqa: BLE001 - recorded (out of memory, missing kernel)
          message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
          row = {"model": entry, "batch": batch, "precision": precision,
                 "error": f"{type(e).__name__}: {message[:200]}"}
          print(f"{entry} batch {batch} {precision}: {row['error']}", flush=True)
        rows.append(row)
  out = Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "model_rate.json").write_text(json.dumps({"system": system, "rows": rows}, indent=1))
  table = markdown(system, rows)
  (out / "model_rate.md").write_text(table)
  print(table)
  return 0 if any("error" not in row for row in rows) else 1


if __name__ == "__main__":
  define_flags()
  app.run(main)
