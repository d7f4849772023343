"""Benchmarks `tfds build fer2013` against the seed notebook's CSV loop, in the same run.

Why: the builder exists to replace the per-pixel `int()` loop that FER2013
notebooks run on every start. This times, in one run on one machine, that loop
(verbatim, below) and the full `tfds build` command in alternating pairs (the
ratio of each pair, and their median), the build's split into start-up,
parsing and writing, and what a user then pays to get the whole train split
into arrays from the prepared dataset (fresh process, imports included, and
after the imports), as ratios to the loop. The goal: build >= 2x faster than
the loop (median of the pairs).

  python -m tools.bench.build [--csv PATH] [--repeats 3]
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from absl import app, flags

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CSV = Path(tempfile.gettempdir()) / "fer2013" / "fer2013.csv"
MAKE_CSV = REPO_ROOT.parent / "shared" / "data" / "fer2013" / "make_csv.py"
BUILD_GOAL = 2.0  # baseline / build

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string(
      "csv", None,
      f"FER2013 CSV (emotion,pixels,Usage). Default: {DEFAULT_CSV}, made there from "
      f"the image archive next to {MAKE_CSV} (~35 s) when absent.",
  )
  flags.DEFINE_integer(
      "repeats", 3, "Pairs of (notebook loop, tfds build), alternating, and repetitions of the "
      "other measurements; medians are reported.", lower_bound=1)
  flags.DEFINE_string(
      "work_dir", None, "Where the manual dir and the built data dirs go (default: a new temp "
      "dir, deleted at the end)."
  )


# Timed in a fresh interpreter: the whole train split into numpy arrays, as the notebook
# loop makes them (images and labels), from the prepared dataset.
_LOAD_SCRIPT = """
import sys, time
import fer_tfds, tensorflow, tensorflow_datasets as tfds  # TF: tfds imports it lazily
start = time.perf_counter()
arrays = tfds.as_numpy(tfds.load("fer2013", split="train", data_dir=sys.argv[1],
                                 batch_size=-1, as_supervised=True))
print("ARRAYS", time.perf_counter() - start, len(arrays[1]), arrays[0].shape, flush=True)
"""
_STARTUP_SCRIPT = "import tensorflow_datasets.scripts.cli.main, fer_tfds"
HOW_MEASURED = f"""
How each figure is measured:
  loop:     in this process, wall time of notebook_loop() (the seed notebook's code verbatim:
            pandas read_csv, one int() per pixel into a float64 row); excludes interpreter
            start-up and the pandas/numpy imports
  build:    wall time of the subprocess `tfds build fer2013 --imports fer_tfds --manual_dir M
            --data_dir D`, D a fresh empty dir each time, M holding only a fer2013.csv symlink;
            run right after a loop, pair by pair
  start-up: wall time of the subprocess `python -c '{_STARTUP_SCRIPT}'`
  parsing:  in this process, read_source(choose_source(M)) (imports done beforehand)
  writing:  build minus start-up minus parsing (medians): split generation, serialization,
            shuffling, TFRecord writing, metadata, interpreter exit
  load:     wall time from starting a subprocess until it holds the whole train split as
            numpy arrays (tfds.load(batch_size=-1), images uint8 and labels), incl.
            interpreter start-up and imports; "after imports" is the same, timed inside the
            child once fer_tfds, TF and TFDS are imported"""


def notebook_loop(csv: Path) -> list[object]:
  """The seed notebook's loader, verbatim (only the file name is a parameter)."""
  import numpy as np
  import pandas as pd

  data = pd.read_csv(csv).values
  pixels = data[:, 1]
  X = []  # noqa: N806 (the notebook's name)
  for ix in range(pixels.shape[0]):
    temp = np.zeros(48 * 48)
    p = pixels[ix].split(" ")
    if len(p) >= 2304:
      for iy in range(2304):
        temp[iy] = int(p[iy])
      X.append(temp)
  return X


def ensure_csv(path: str | None) -> Path:
  """The CSV to use; the default one is made from the image archive if absent."""
  if path is not None:
    if not Path(path).is_file():
      raise app.UsageError(f"--csv {path} does not exist")
    return Path(path)
  if not DEFAULT_CSV.is_file():
    print(f"Making {DEFAULT_CSV} with {MAKE_CSV} (~35 s)...", flush=True)
    DEFAULT_CSV.parent.mkdir(parents=True, exist_ok=True)
    archive = MAKE_CSV.parent / "fer2013_images.tar.gz"
    partial = DEFAULT_CSV.with_suffix(".partial")
    subprocess.run([sys.executable, str(MAKE_CSV), str(archive), str(partial)], check=True)
    partial.rename(DEFAULT_CSV)
  return DEFAULT_CSV


def timed(function: Callable[[], object]) -> float:
  start = time.perf_counter()
  function()
  return time.perf_counter() - start


def run_checked(command: Sequence[str]) -> None:
  """Runs `command`; on failure shows the end of its output and exits."""
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
  if result.returncode != 0:
    sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")


def tfds_executable() -> str:
  return str(Path(sys.executable).with_name("tfds"))


def build_once(manual_dir: Path, data_dir: Path) -> float:
  command = [tfds_executable(), "build", "fer2013", "--imports", "fer_tfds",
             "--manual_dir", str(manual_dir), "--data_dir", str(data_dir)]
  return timed(lambda: run_checked(command))


def parse_once(manual_dir: Path) -> float:
  from fer_tfds.fer2013.readers import read_source
  from fer_tfds.fer2013.sources import choose_source

  return timed(lambda: read_source(choose_source(manual_dir)))


def load_once(data_dir: Path) -> tuple[float, float, int]:
  """Seconds until the train split is in arrays (incl. start-up; after imports); examples."""
  command = [sys.executable, "-c", _LOAD_SCRIPT, str(data_dir)]
  start = time.perf_counter()
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
  total = time.perf_counter() - start
  line = next((x for x in result.stdout.splitlines() if x.startswith("ARRAYS")), None)
  if result.returncode != 0 or line is None:
    sys.exit(f"loading failed ({result.returncode}):\n{result.stderr[-3000:]}")
  _, after_imports, examples, *_ = line.split()
  return total, float(after_imports), int(examples)


def repeat(times: int, function: Callable[[], float], label: str) -> list[float]:
  samples = []
  for index in range(times):
    samples.append(function())
    print(f"  {label} {index + 1}/{times}: {samples[-1]:.2f} s", flush=True)
  return samples


def machine() -> str:
  model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
  versions = ", ".join(f"{p} {metadata.version(p)}"
                       for p in ("tensorflow", "tensorflow-datasets", "numpy", "pandas"))
  return (f"{len(os.sched_getaffinity(0))} usable cores (nproc), {os.cpu_count()} online, "
          f"{model}; Python {platform.python_version()}, {versions}")


def describe(name: str, samples: list[float]) -> str:
  shown = ", ".join(f"{s:.2f}" for s in samples)
  return f"{name:<36} {statistics.median(samples):8.2f} s   (samples: {shown})"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  csv_path = ensure_csv(FLAGS.csv)
  work = Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_build_"))
  manual_dir = work / "manual"
  manual_dir.mkdir(parents=True, exist_ok=True)
  (manual_dir / "fer2013.csv").unlink(missing_ok=True)
  (manual_dir / "fer2013.csv").symlink_to(csv_path.resolve())
  print(f"Machine: {machine()}\nCSV: {csv_path} ({csv_path.stat().st_size / 2**20:.0f} MiB)")
  try:
    results = measure(csv_path, manual_dir, work, FLAGS.repeats)
  finally:
    if FLAGS.work_dir is None:
      shutil.rmtree(work, ignore_errors=True)
  report(results)


def measure(csv_path: Path, manual_dir: Path, work: Path,
            repeats: int) -> dict[str, list[float]]:
  """Every measurement, as lists of seconds; loop and build alternate, pair by pair."""
  loops, builds, data_dirs = [], [], []
  for index in range(repeats):
    loops.append(timed(lambda: notebook_loop(csv_path)))
    data_dirs.append(Path(tempfile.mkdtemp(prefix="data_", dir=work)))
    builds.append(build_once(manual_dir, data_dirs[-1]))
    print(f"  pair {index + 1}/{repeats}: notebook loop {loops[-1]:.2f} s, tfds build "
          f"{builds[-1]:.2f} s: {loops[-1] / builds[-1]:.2f}x", flush=True)
  startup_command = [sys.executable, "-c", _STARTUP_SCRIPT]
  startup = repeat(repeats, lambda: timed(lambda: run_checked(startup_command)), "start-up")
  parse_once(manual_dir)  # untimed: imports fer_tfds (and TF) into this process
  parse = repeat(repeats, lambda: parse_once(manual_dir), "parsing")
  loads = []
  for index in range(repeats):
    loads.append(load_once(data_dirs[-1]))
    total, after_imports, count = loads[-1]
    print(f"  load {index + 1}/{repeats}: train split in arrays after {total:.2f} s "
          f"({after_imports:.2f} s after imports; {count} examples)", flush=True)
  ratios = [loop / build for loop, build in zip(loops, builds, strict=True)]
  return {
      "loop": loops, "build": builds, "pair_ratio": ratios,
      "startup": startup, "parse": parse, "load": [load[0] for load in loads],
      "load_after_imports": [load[1] for load in loads],
  }


def report(results: dict[str, list[float]]) -> None:
  """Prints the medians, the phase split, how it was measured, the ratios and the goals."""
  med = {name: statistics.median(s) for name, s in results.items() if s}
  med["writing"] = med["build"] - med["startup"] - med["parse"]
  print("\n=== Results (median) ===")
  print(describe("seed notebook loop (baseline)", results["loop"]))
  print(describe("tfds build fer2013 (total)", results["build"]))
  print(describe("  start-up", results["startup"]))
  print(describe("  parsing", results["parse"]))
  print(f"{'  writing (total - the two)':<36} {med['writing']:8.2f} s")
  print(describe("train split in arrays, fresh process", results["load"]))
  print(describe("  of which after imports", results["load_after_imports"]))
  print(HOW_MEASURED)
  print("\n=== Goals (against the loop measured in this run) ===")
  ratios = ", ".join(f"{r:.2f}x" for r in results["pair_ratio"])
  verdict = "PASS" if med["pair_ratio"] >= BUILD_GOAL else "FAIL"
  print(f"loop / build, median of the pairs: {med['pair_ratio']:.2f}x (pairs: {ratios}; goal "
        f">= {BUILD_GOAL:g}x) {verdict}")
  for name, key in (("fresh process", "load"), ("after imports", "load_after_imports")):
    print(f"loop / train split in arrays from the prepared dataset, {name}: "
          f"{med['loop']:.2f} / {med[key]:.2f} = {med['loop'] / med[key]:.1f}x")
  print(json.dumps({"medians_s": med}))


if __name__ == "__main__":
  define_flags()
  app.run(main)
