"""Read throughput of fer2013's train split written in 1, 4, 8, ... files (shards).

Why: the builder writes every split in several files (fer_tfds/sharding.py) so
that input pipelines can shard by file; this checks what the file count costs
or buys when reading. For each count it builds fer2013 from the manual dir
with `DownloadConfig(num_shards=N)` (what `tfds build --num_shards N` sets),
then times full passes over train through the trainer's reader settings
(`trainers.data._read_config`: file shuffling, TFDS's interleave of 16 files,
read + parse + decode, no cache), batched by 256, taking turns across the
counts; it prints the median, the best (the pass least disturbed by other load on
the machine) and the samples of each.

  python -m tools.bench.shards [--manual_dir /tmp/fer2013] [--shards 1,4,8,16,32,64] \\
      [--repeats 5] [--work_dir DIR]

The manual dir holds a FER2013 download (README; /tmp/fer2013/fer2013.csv is
what ../shared/data/fer2013/make_csv.py writes).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import app, flags  # noqa: E402

import fer_tfds  # noqa: E402, F401  (registers fer2013)
from trainers import data  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_MANUAL_DIR = Path(tempfile.gettempdir()) / "fer2013"


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string("manual_dir", str(DEFAULT_MANUAL_DIR),
                      "A FER2013 download, as `tfds build --manual_dir` takes it.")
  flags.DEFINE_list("shards", ["1", "4", "8", "16", "32", "64"], "File counts to compare.")
  flags.DEFINE_integer("repeats", 5, "Timed passes per count.", lower_bound=1)
  flags.DEFINE_integer("batch_size", 256, "Batch size of the read.", lower_bound=1)
  flags.DEFINE_string("work_dir", None, "Where the builds go and are kept (reused when already "
                      "built); default: a new temp dir, deleted at the end.")


def build(manual_dir: str, data_dir: Path, num_shards: int) -> tuple[tfds.core.DatasetBuilder,
                                                                       float | None]:
  """fer2013 in `num_shards` files per split under `data_dir`; (builder, seconds or None)."""
  builder = tfds.builder("fer2013", data_dir=str(data_dir))
  if builder.is_prepared():
    return builder, None
  start = time.perf_counter()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, num_shards=num_shards))
  return builder, time.perf_counter() - start


def read_pass(builder: tfds.core.DatasetBuilder, batch_size: int, seed: int) -> float:
  """Images/s of one full pass over train, read as the trainer reads it (before its cache)."""
  ds = builder.as_dataset(split="train", shuffle_files=True,
                          read_config=data._read_config(seed, deterministic=False))  # noqa: SLF001
  ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
  images = 0
  start = time.perf_counter()
  for batch in ds:
    images += int(batch["label"].shape[0])
  return images / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  counts = [int(n) for n in FLAGS.shards]
  work = Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_shards_"))
  cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
              if line.startswith("model name")), platform.processor())
  print(f"{len(os.sched_getaffinity(0))} usable cores, {cpu}; tf {tf.__version__}, tfds "
        f"{tfds.__version__}; load average (1 min) at the start {os.getloadavg()[0]:.2f}; "
        f"{FLAGS.repeats} passes over train per count, batch {FLAGS.batch_size}", flush=True)
  try:
    builders = {}
    for n in counts:
      builders[n], seconds = build(FLAGS.manual_dir, work / f"shards_{n}", n)
      built = f"built in {seconds:.1f} s" if seconds is not None else "already built"
      print(f"  {n} files per split: {built}", flush=True)
    samples: dict[int, list[float]] = {n: [] for n in counts}
    for repeat in range(FLAGS.repeats):  # the counts take turns: drifting load hits all alike
      for n in counts:
        samples[n].append(read_pass(builders[n], FLAGS.batch_size, seed=repeat))
    print(f"{'files':>5}  {'train file MB':>13}  {'median/s':>9}  {'best/s':>9}  samples")
    for n in counts:
      split = builders[n].info.splits["train"]
      assert split.num_shards == n, (n, split.num_shards)
      runs = ", ".join(f"{s:,.0f}" for s in samples[n])
      print(f"{n:>5}  {split.num_bytes / n / 1e6:>13.2f}  {statistics.median(samples[n]):>9,.0f}"
            f"  {max(samples[n]):>9,.0f}  {runs}")
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  define_flags()
  app.run(main)
