"""Compares encodings of the 48x48x1 uint8 FER2013 image feature in TFDS.

Why: the builder stores images as `Tensor(..., encoding=Encoding.BYTES)`, not
as PNG `Image`s (the TFDS habit) nor as the default int64 list. This measures,
on real faces (first rows of the CSV; drawn ones when it is absent), what each
choice costs to encode and serialize, on disk, and to read back through
tf.data, and prints each as a ratio to the chosen encoding.

  python -m tools.bench.encoding [--csv PATH] [--num_examples 20000] [--repeats 5]
"""

from __future__ import annotations

import csv
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import app, flags

from fer_tfds.fer2013.fake_data import fake_images
from fer_tfds.fer2013.pixels import IMAGE_SHAPE, parse_pixel_string

DEFAULT_CSV = Path(tempfile.gettempdir()) / "fer2013" / "fer2013.csv"
CHOSEN = "Tensor BYTES (chosen)"
CANDIDATES: dict[str, Callable[[], tfds.features.FeatureConnector]] = {
    "Tensor default (int64 list)": lambda: tfds.features.Tensor(
        shape=IMAGE_SHAPE, dtype=np.uint8),
    CHOSEN: lambda: tfds.features.Tensor(
        shape=IMAGE_SHAPE, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES),
    "Tensor ZLIB": lambda: tfds.features.Tensor(
        shape=IMAGE_SHAPE, dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB),
    "Image PNG": lambda: tfds.features.Image(shape=IMAGE_SHAPE, encoding_format="png"),
}

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string(
      "csv", str(DEFAULT_CSV),
      "FER2013 CSV whose first rows are used; drawn images are used if it does not exist.",
  )
  flags.DEFINE_integer("num_examples", 20000, "Images per encoding.", lower_bound=256)
  flags.DEFINE_integer(
      "repeats", 5,
      "Repetitions of each timing; the median is reported. Reads take turns across encodings.",
      lower_bound=1,
  )
  flags.DEFINE_integer("batch_size", 256, "Batch size of the read pipeline.")


@dataclass
class Result:
  """One encoding's figures."""

  serialize_us: float  # encode + serialize, microseconds per example
  bytes_per_example: float  # TFRecord file size / examples
  read_per_s: float  # tf.data read + decode + batch, examples per second


def load_images(csv_path: Path, n: int) -> tuple[np.ndarray, str]:
  """The first `n` faces of the CSV, else `n` drawn ones; and where they came from."""
  if not csv_path.is_file():
    return fake_images(n)[..., None], f"{n} drawn images (fake_data; {csv_path} absent)"
  with open(csv_path, newline="") as f:
    rows = list(itertools.islice(csv.DictReader(f), n))
  images = np.stack([parse_pixel_string(row["pixels"]) for row in rows])
  return images, f"the first {len(images)} rows of {csv_path}"


def seconds(function: Callable[[], object]) -> float:
  start = time.perf_counter()
  function()
  return time.perf_counter() - start


def serialize_all(features: tfds.features.FeaturesDict, images: np.ndarray) -> list[bytes]:
  return [features.serialize_example({"image": image}) for image in images]


def read_pipeline(features: tfds.features.FeaturesDict, path: Path,
                  batch_size: int) -> tf.data.Dataset:
  return (tf.data.TFRecordDataset(str(path))
          .map(features.deserialize_example, num_parallel_calls=tf.data.AUTOTUNE)
          .batch(batch_size))


def check_round_trip(dataset: tf.data.Dataset, images: np.ndarray) -> None:
  first = next(iter(dataset))["image"].numpy()
  if not np.array_equal(first, images[: len(first)]):
    raise AssertionError("decoded images differ from the encoded ones")


def iterate(dataset: tf.data.Dataset) -> None:
  for _ in dataset:
    pass


def write(name: str, images: np.ndarray, path: Path, repeats: int,
          batch_size: int) -> tuple[float, tf.data.Dataset]:
  """Times serializing `images` with one encoding, writes them to `path`.

  Returns the median seconds to serialize them all, and the read pipeline.
  """
  features = tfds.features.FeaturesDict({"image": CANDIDATES[name]()})
  serialize = statistics.median(
      seconds(lambda: serialize_all(features, images)) for _ in range(repeats))
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in serialize_all(features, images):
      writer.write(record)
  dataset = read_pipeline(features, path, batch_size)
  check_round_trip(dataset, images)
  return serialize, dataset


def read_rounds(datasets: dict[str, tf.data.Dataset], repeats: int) -> dict[str, float]:
  """Median seconds of a full pass over each dataset.

  The encodings take turns in every round, so a slow spell of the shared
  machine hits all of them rather than one.
  """
  samples: dict[str, list[float]] = {name: [] for name in datasets}
  for _ in range(repeats):
    for name, dataset in datasets.items():
      samples[name].append(seconds(lambda dataset=dataset: iterate(dataset)))
  return {name: statistics.median(times) for name, times in samples.items()}


def measure(images: np.ndarray, work: Path, repeats: int, batch_size: int) -> dict[str, Result]:
  """Every encoding's figures."""
  n = len(images)
  serialize, datasets, sizes = {}, {}, {}
  for index, name in enumerate(CANDIDATES):
    path = work / f"candidate{index}.tfrecord"
    serialize[name], datasets[name] = write(name, images, path, repeats, batch_size)
    sizes[name] = path.stat().st_size
    print(f"  {name}: {serialize[name] * 1e6 / n:.1f} us/ex to serialize, "
          f"{sizes[name] / n:.0f} B/ex", flush=True)
  read = read_rounds(datasets, repeats)
  return {name: Result(serialize[name] * 1e6 / n, sizes[name] / n, n / read[name])
          for name in CANDIDATES}


def print_table(results: dict[str, Result]) -> None:
  """The figures, and each as a ratio to the chosen encoding."""
  chosen = results[CHOSEN]
  print("\n| encoding | encode+serialize (us/ex) | on disk (B/ex) | read+decode (ex/s) "
        "| vs chosen: serialize cost | size | read throughput |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  for name, r in results.items():
    print(f"| {name} | {r.serialize_us:.1f} | {r.bytes_per_example:.0f} | {r.read_per_s:,.0f} "
          f"| {r.serialize_us / chosen.serialize_us:.2f}x "
          f"| {r.bytes_per_example / chosen.bytes_per_example:.2f}x "
          f"| {r.read_per_s / chosen.read_per_s:.2f}x |")
  print("\nRatios are candidate / chosen: above 1 costs more time or space for serialize and "
        "size, and is faster for read throughput.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  images, origin = load_images(Path(FLAGS.csv), FLAGS.num_examples)
  print(f"Images: {origin}; {len(os.sched_getaffinity(0))} cores; tf {tf.__version__}, "
        f"tfds {tfds.__version__}; median of {FLAGS.repeats}", flush=True)
  work = Path(tempfile.mkdtemp(prefix="bench_encoding_"))
  try:
    results = measure(images, work, FLAGS.repeats, FLAGS.batch_size)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  print_table(results)


if __name__ == "__main__":
  define_flags()
  app.run(main)
