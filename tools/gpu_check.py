r"""The GPU check: training images/s on this machine's accelerators, in at most 8 minutes.

Why: our users train on GPUs and we rarely have one, so the measurements that
need one are this single prepared command, run whenever a GPU machine is at
hand. For fer_net and improved_cnn at batch 256, 1024 and 4096 it measures
training images/s with host vs device input (`--input`), float32 vs mixed
precision, XLA on/off, and 1 GPU vs all GPUs (mirrored), plus each
configuration's input-stall share: 1 - (its rate) / (its rate fed a batch that
already sits on the device). Every configuration trains through the same loop
(trainers/custom_loop.py) on the real FER2013 when prepared, else the synthetic
set; it writes JSON and a markdown table into --out.

  python -m tools.gpu_check --out=gpu_check            # on the GPU machine
  python -m tools.gpu_check --smoke --out=/tmp/smoke   # on CPU: the tests run this

A configuration that fails (out of memory, an op without a kernel) is recorded
with its error and the check goes on; --budget_seconds stops starting new ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from trainers import cli, custom_loop, device_input, models, task  # noqa: E402
from trainers.config import TrainConfig  # noqa: E402

FLAGS = flags.FLAGS
MODELS = ("fer_net", "improved_cnn")
BATCHES = (256, 1024, 4096)


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  cli.define_dataset_flags()
  flags.DEFINE_string("out", "gpu_check", "Directory for gpu_check.json and gpu_check.md.")
  flags.DEFINE_bool("smoke", False, "A tiny grid on whatever devices there are (CPU: the "
                    "test suite's check that the script runs end to end).")
  flags.DEFINE_list("models", list(MODELS), "Models to measure.")
  flags.DEFINE_list("batch_sizes", [str(b) for b in BATCHES], "Global batch sizes.")
  flags.DEFINE_integer("steps", 30, "Timed steps per configuration (after --warmup_steps).",
                       lower_bound=1)
  flags.DEFINE_integer("warmup_steps", 5, "Untimed steps first (tracing, XLA, autotuning).",
                       lower_bound=1)
  flags.DEFINE_integer("budget_seconds", 450, "No configuration starts after this many "
                       "seconds (the check's limit is 8 minutes).", lower_bound=1)


@dataclasses.dataclass(frozen=True)
class Case:
  model: str
  batch_size: int
  placement: str  # host or device
  mixed_precision: bool
  jit_compile: bool
  devices: str  # one or all

  def label(self) -> str:
    return (f"{self.model} b{self.batch_size} {self.placement} "
            f"{'mixed' if self.mixed_precision else 'fp32'} "
            f"{'xla' if self.jit_compile else 'noxla'} {self.devices}")


def grid(models: list[str], batches: list[int], gpus: int, smoke: bool) -> list[Case]:
  """Every combination; `all` devices only when there are several GPUs."""
  device_counts = ("one", "all") if gpus > 1 else ("one",)
  cases = [Case(m, b, p, mp, xla, d) for m, b, p, mp, xla, d in itertools.product(
      models, batches, ("host", "device"), (False, True), (False, True), device_counts)]
  if smoke:  # per model, each value of the input, precision and XLA axes once
    wanted = {("host", False, False), ("device", True, False), ("device", False, True)}
    cases = [c for c in cases if (c.placement, c.mixed_precision, c.jit_compile) in wanted]
  return cases


def strategy_for(devices: str, gpus: int) -> tf.distribute.Strategy:
  if devices == "all" and gpus > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")


def rate(train_steps: Any, iterator: Any, steps: int, batch_size: int) -> float:
  start = time.perf_counter()
  train_steps(iterator, tf.constant(steps)).numpy()
  return steps * batch_size / (time.perf_counter() - start)


def run_case(case: Case, dataset: str, gpus: int) -> dict[str, Any]:
  """Images/s of `case` with its input, and fed a device-resident batch (no input cost)."""
  keras.backend.clear_session()
  config = TrainConfig(dataset=dataset, data_dir=FLAGS.data_dir, model=case.model,
                       batch_size=case.batch_size, input=case.placement,
                       mixed_precision=case.mixed_precision, jit_compile=case.jit_compile,
                       augment_warmup_epochs=0)
  strategy = strategy_for(case.devices, gpus)
  keras.mixed_precision.set_global_policy(task.precision_policy(case.mixed_precision))
  info = task.data_info(config, dataset)
  model = task.build_model(config, strategy, info.num_classes, info.steps_per_epoch)
  inputs = task.build_inputs(strategy, config, info, None)
  with strategy.scope():
    model.optimizer.build(model.trainable_variables)
  train_steps = custom_loop.train_function(model, strategy, case.jit_compile, inputs.feed)
  iterator = iter(inputs.train)
  train_steps(iterator, tf.constant(FLAGS.warmup_steps)).numpy()
  measured = [rate(train_steps, iterator, FLAGS.steps, case.batch_size) for _ in range(3)]

  ceiling = statistics.median(model_rate(model, strategy, case, info))
  images_s = statistics.median(measured)
  return {**dataclasses.asdict(case), "images_per_s": images_s,
          "device_batch_images_per_s": ceiling,
          "input_stall_share": max(0.0, 1 - images_s / ceiling),
          "replicas": strategy.num_replicas_in_sync,
          "placement_reason": inputs.placement.reason if inputs.placement else ""}


def model_rate(model: keras.Model, strategy: tf.distribute.Strategy, case: Case,
               info: task.DataInfo) -> list[float]:
  """Images/s of the same step fed one batch that already sits on each device (a
  variable, one copy per replica) and index batches: the rate with no input cost."""
  spec = models.MODELS[case.model]
  per_replica = case.batch_size // strategy.num_replicas_in_sync
  with strategy.scope():
    batch = tf.Variable(tf.random.uniform(
        (per_replica, spec.image_size, spec.image_size, spec.channels)), trainable=False)
  labels = np.zeros(info.train_examples, np.int32)
  indices = device_input.distributed_index_dataset(
      strategy, labels, global_batch_size=case.batch_size, steps_per_epoch=info.steps_per_epoch,
      seed=0, map_fn=task.one_hot(info.num_classes))
  steps = custom_loop.train_function(model, strategy, case.jit_compile,
                                     lambda x: tf.identity(batch))
  iterator = iter(indices)
  steps(iterator, tf.constant(FLAGS.warmup_steps)).numpy()
  return [rate(steps, iterator, FLAGS.steps, case.batch_size) for _ in range(3)]


def markdown(results: list[dict[str, Any]], header: str) -> str:
  lines = [header, "",
           "| model | batch | input | precision | XLA | GPUs | images/s | input stall |",
           "|---|---:|---|---|---|---|---:|---:|"]
  for r in results:
    if "error" in r:
      lines.append(f"| {r['model']} | {r['batch_size']} | {r['placement']} | "
                   f"{'mixed' if r['mixed_precision'] else 'float32'} | "
                   f"{'on' if r['jit_compile'] else 'off'} | {r['devices']} | "
                   f"error: {r['error'][:60]} | |")
      continue
    lines.append(f"| {r['model']} | {r['batch_size']} | {r['placement']} | "
                 f"{'mixed' if r['mixed_precision'] else 'float32'} | "
                 f"{'on' if r['jit_compile'] else 'off'} | {r['devices']} ({r['replicas']}) | "
                 f"{r['images_per_s']:,.0f} | {r['input_stall_share']:.0%} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
  del argv
  start = time.monotonic()
  gpus = len(tf.config.list_physical_devices("GPU"))
  if not gpus and not FLAGS.smoke:
    raise cli.UsageError("no GPU is visible to TensorFlow; on a CPU machine run --smoke")
  smoke = FLAGS.smoke
  models_ = FLAGS.models
  batches = [int(b) for b in FLAGS.batch_sizes]
  if smoke:
    models_, batches = models_[:2], [8]
    FLAGS.steps, FLAGS.warmup_steps = min(FLAGS.steps, 2), 1
  dataset = task.resolve_dataset(FLAGS.dataset, FLAGS.data_dir)
  names = [d.name for d in tf.config.list_logical_devices("GPU")] or ["CPU"]
  header = (f"GPU check on {gpus} GPU(s) ({', '.join(names)}), dataset {dataset}, TensorFlow "
            f"{tf.__version__}, Python {platform.python_version()}, {FLAGS.steps} timed steps"
            f"{' (SMOKE: tiny grid, not a measurement)' if smoke else ''}")
  print(header, flush=True)
  results: list[dict[str, Any]] = []
  for case in grid(models_, batches, gpus, smoke):
    if time.monotonic() - start > FLAGS.budget_seconds:
      results.append({**dataclasses.asdict(case), "error": "skipped: --budget_seconds"})
      continue
    try:
      result = run_case(case, dataset, gpus)
      print(f"  {case.label()}: {result['images_per_s']:,.0f} images/s, input stall "
            f"{result['input_stall_share']:.0%}", flush=True)
    except Exception as e:  # noqa: BLE001  (record it and go on: OOM at 4096, a missing kernel)
      result = {**dataclasses.asdict(case), "error": f"{type(e).__name__}: {cli.one_line(e)}"}
      print(f"  {case.label()}: {result['error'][:200]}", flush=True)
    results.append(result)
  out = Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  record = {"header": header, "gpus": gpus, "smoke": smoke, "seconds": time.monotonic() - start,
            "results": results}
  (out / "gpu_check.json").write_text(json.dumps(record, indent=1))
  (out / "gpu_check.md").write_text(markdown(results, header))
  print(f"Wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} in "
        f"{time.monotonic() - start:.0f} s.")
  sys.stdout.flush()


if __name__ == "__main__":
  define_flags()
  cli.run(main)
