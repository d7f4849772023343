"""Benchmarks `tfds build fer2013` against the notebook's CSV loading loop.

Why: the builder exists to replace the per-pixel `int()` loop that FER2013
notebooks run on every start (reported at ~38 s). This measures, in one run on one
machine, that loop, the full `tfds build` command (split into start-up,
parsing and writing), and what a user then pays to load the prepared dataset
(to the first batch, and for one epoch of the train split), against the goals:
build >= 2x faster than the loop, load >= 20x.

  python -m tools.bench.build [--csv PATH] [--repeats 3] [--baseline_repeats 1]
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
LOAD_GOAL = 20.0  # baseline / load to the first batch

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string(
      "csv", None,
      f"FER2013 CSV (emotion,pixels,Usage). Default: {DEFAULT_CSV}, made there from "
      f"the image archive next to {MAKE_CSV} (~35 s) when absent.",
  )
  flags.DEFINE_integer(
      "repeats", 3, "Repetitions of each measurement of ours; the median is reported.",
      lower_bound=1,
  )
  flags.DEFINE_integer(
      "baseline_repeats", 1,
      "Repetitions of the notebook loop (10-40 s each); 0 skips it (no ratios then).",
      lower_bound=0,
  )
  flags.DEFINE_integer("batch_size", 256, "Batch size of the load measurements.")
  flags.DEFINE_float(
      "reference_baseline_s", 37.7,
      "A previously reported notebook-loop time; ratios to it are printed for comparison only, "
      "the goals are judged on the baseline measured in this run.",
  )
  flags.DEFINE_string(
      "work_dir", None, "Where the manual dir and the built data dirs go (default: a new temp "
      "dir, deleted at the end)."
  )


# Timed in a fresh interpreter: imports, tfds.load, first batch, then one epoch.
_LOAD_SCRIPT = """
import sys, time
import fer_tfds, tensorflow, tensorflow_datasets as tfds  # TF: tfds imports it lazily
start = time.perf_counter()
data_dir, batch_size = sys.argv[1], int(sys.argv[2])
ds = tfds.load("fer2013", split="train", data_dir=data_dir).batch(batch_size)
next(iter(tfds.as_numpy(ds)))
print("FIRST_BATCH", time.perf_counter() - start, flush=True)
start, n = time.perf_counter(), 0
for batch in tfds.as_numpy(ds):
  n += len(batch["label"])
print("EPOCH", time.perf_counter() - start, n, flush=True)
"""
_STARTUP_SCRIPT = "import tensorflow_datasets.scripts.cli.main, fer_tfds"
HOW_MEASURED = f"""
How each figure is measured:
  baseline: in this process, wall time of notebook_loader() (pandas.read_csv, per-pixel int()
            loop, float32 array, one-hot labels); excludes interpreter start-up and imports
  build:    wall time of the subprocess `tfds build fer2013 --imports fer_tfds --manual_dir M
            --data_dir D`, D a fresh empty dir each time, M holding only a fer2013.csv symlink
  start-up: wall time of the subprocess `python -c '{_STARTUP_SCRIPT}'`
  parsing:  in this process, read_source(choose_source(M)) (imports done beforehand)
  writing:  build minus start-up minus parsing (medians): split generation, serialization,
            shuffling, TFRecord writing, metadata, interpreter exit
  load:     wall time from starting a subprocess to its first batch of
            tfds.load("fer2013", split="train").batch({{batch_size}}), incl. interpreter start-up
            and imports; "after importing TF" is the same, timed inside the child after its
            imports (tfds imports TF lazily, so TF is imported explicitly first)
  epoch:    inside that child, a second, full pass over the train split as numpy batches"""


def notebook_loader(csv_path: Path) -> tuple[object, object]:
  """The classic FER2013 notebook code, as users write it."""
  import numpy as np
  import pandas as pd

  data = pd.read_csv(csv_path)
  faces = []
  for pixel_sequence in data["pixels"].tolist():
    face = [int(pixel) for pixel in pixel_sequence.split(" ")]
    face = np.asarray(face).reshape(48, 48)
    faces.append(face.astype("float32"))
  faces = np.expand_dims(np.asarray(faces), -1)
  emotions = pd.get_dummies(data["emotion"]).to_numpy()
  return faces, emotions


def notebook_loader_per_pixel(csv_path: Path) -> tuple[object, object]:
  """The other common notebook form: one `int()` and one array store per pixel."""
  import numpy as np
  import pandas as pd

  data = pd.read_csv(csv_path)
  faces = np.zeros((len(data), 48, 48, 1))
  for i in range(len(data)):
    pixels = data["pixels"][i].split(" ")
    for j in range(48 * 48):
      faces[i, j // 48, j % 48, 0] = int(pixels[j])
  emotions = pd.get_dummies(data["emotion"]).to_numpy()
  return faces, emotions


BASELINES = {
    "baseline": ("notebook loop, list per row", notebook_loader),
    "baseline_per_pixel": ("notebook loop, store per pixel", notebook_loader_per_pixel),
}


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


def load_once(data_dir: Path, batch_size: int) -> tuple[float, float, float, int]:
  """Seconds to the first batch (incl. start-up; after imports), for one epoch; examples."""
  command = [sys.executable, "-c", _LOAD_SCRIPT, str(data_dir), str(batch_size)]
  with tempfile.TemporaryFile("w+") as stderr:
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                             cwd=REPO_ROOT)
    assert child.stdout is not None
    first_batch, after_imports, epoch = None, 0.0, None
    for line in child.stdout:
      if line.startswith("FIRST_BATCH"):
        first_batch = time.perf_counter() - start
        after_imports = float(line.split()[1])
      elif line.startswith("EPOCH"):
        epoch = line.split()[1:]
    if child.wait() != 0 or first_batch is None or epoch is None:
      stderr.seek(0)
      sys.exit(f"loading failed ({child.returncode}):\n{stderr.read()[-3000:]}")
  return first_batch, after_imports, float(epoch[0]), int(epoch[1])


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


def ratio_line(name: str, baseline: float | None, ours: float, goal: float) -> str:
  if baseline is None:
    return f"{name}: n/a (baseline skipped)"
  ratio = baseline / ours
  verdict = "PASS" if ratio >= goal else "FAIL"
  return f"{name}: {baseline:.2f} / {ours:.2f} = {ratio:.1f}x (goal >= {goal:g}x) {verdict}"


def describe(name: str, samples: list[float]) -> str:
  shown = ", ".join(f"{s:.2f}" for s in samples)
  return f"{name:<34} {statistics.median(samples):8.2f} s   (samples: {shown})"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  csv_path = ensure_csv(FLAGS.csv)
  repeats, batch_size = FLAGS.repeats, FLAGS.batch_size
  work = Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_build_"))
  manual_dir = work / "manual"
  manual_dir.mkdir(parents=True, exist_ok=True)
  (manual_dir / "fer2013.csv").unlink(missing_ok=True)
  (manual_dir / "fer2013.csv").symlink_to(csv_path.resolve())
  print(f"Machine: {machine()}\nCSV: {csv_path} ({csv_path.stat().st_size / 2**20:.0f} MiB)")
  try:
    results = measure(csv_path, manual_dir, work, repeats, batch_size)
  finally:
    if FLAGS.work_dir is None:
      shutil.rmtree(work, ignore_errors=True)
  report(results)


def measure(csv_path: Path, manual_dir: Path, work: Path, repeats: int,
            batch_size: int) -> dict[str, list[float]]:
  """Every measurement, as lists of seconds."""
  baselines = {}
  for key, (label, loader) in BASELINES.items():
    print(f"Baseline: {label} (pandas + per-pixel int())", flush=True)
    baselines[key] = repeat(FLAGS.baseline_repeats,
                            lambda loader=loader: timed(lambda: loader(csv_path)), label)
  print("Ours: tfds build (fresh data_dir each time)", flush=True)
  data_dirs = [Path(tempfile.mkdtemp(prefix="data_", dir=work)) for _ in range(repeats)]
  fresh = iter(data_dirs)
  build = repeat(repeats, lambda: build_once(manual_dir, next(fresh)), "tfds build")
  startup_command = [sys.executable, "-c", _STARTUP_SCRIPT]
  startup = repeat(repeats, lambda: timed(lambda: run_checked(startup_command)), "start-up")
  parse_once(manual_dir)  # untimed: imports fer_tfds (and TF) into this process
  parse = repeat(repeats, lambda: parse_once(manual_dir), "parsing")
  loads = []
  for index in range(repeats):
    loads.append(load_once(data_dirs[-1], batch_size))
    first, after_imports, epoch, count = loads[-1]
    print(f"  load {index + 1}/{repeats}: first batch {first:.2f} s ({after_imports:.2f} s "
          f"after imports), epoch {epoch:.2f} s ({count} examples)", flush=True)
  return {
      **baselines, "build": build, "startup": startup, "parse": parse,
      "first_batch": [load[0] for load in loads],
      "first_batch_after_imports": [load[1] for load in loads],
      "epoch": [load[2] for load in loads], "epoch_examples": [float(load[3]) for load in loads],
  }


def report(results: dict[str, list[float]]) -> None:
  """Prints the medians, the phase split, how it was measured, the ratios and the goals."""
  med = {name: statistics.median(s) for name, s in results.items() if s}
  med["writing"] = med["build"] - med["startup"] - med["parse"]
  print_medians(results, med)
  print(HOW_MEASURED.format(batch_size=FLAGS.batch_size))
  print_goals(med)
  print(json.dumps({"medians_s": med}))


def print_medians(results: dict[str, list[float]], med: dict[str, float]) -> None:
  print("\n=== Results (median) ===")
  for key, (label, _) in BASELINES.items():
    if results[key]:
      print(describe(label, results[key]))
  print(describe("tfds build fer2013 (total)", results["build"]))
  print(describe("  start-up", results["startup"]))
  print(describe("  parsing", results["parse"]))
  print(f"{'  writing (total - the two)':<34} {med['writing']:8.2f} s")
  print(describe("load to first batch", results["first_batch"]))
  print(describe("  of which after importing TF", results["first_batch_after_imports"]))
  examples = int(med["epoch_examples"])
  print(describe(f"one train epoch ({examples} ex.)", results["epoch"])
        + f"   = {examples / med['epoch']:,.0f} examples/s")


def print_goals(med: dict[str, float]) -> None:
  print("\n=== Goals (ratios to the baselines measured in this run) ===")
  for key, (label, _) in BASELINES.items():
    baseline = med.get(key)
    print(f"[{label}]")
    print(ratio_line("  baseline / build", baseline, med["build"], BUILD_GOAL))
    print(ratio_line("  baseline / load to first batch", baseline, med["first_batch"], LOAD_GOAL))
    if baseline is not None:
      print(f"  load to first batch once TF is imported (a running notebook or trainer, which "
            f"import TF anyway): {baseline:.2f} / {med['first_batch_after_imports']:.2f} = "
            f"{baseline / med['first_batch_after_imports']:.1f}x")
  reference = FLAGS.reference_baseline_s
  print(f"For comparison only, against the reference figure {reference:g} s (not measured in "
        f"this run): build {reference / med['build']:.1f}x, load to first batch "
        f"{reference / med['first_batch']:.1f}x")

if __name__ == "__main__":
  define_flags()
  app.run(main)
