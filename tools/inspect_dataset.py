r"""What is in the built dataset: split sizes, per-class counts and a grid of sample faces.

  python -m tools.inspect_dataset --dataset=fer2013 --out=/tmp/fer2013_samples.png

Reads the TFDS dataset as prepared (`tfds build fer2013 ...`, or the synthetic
faces, built on first use), so it shows what training will see, not the CSV.
Counting skips image decoding (labels only); the PNG grid has one row per class
(the notebook's `showImage`, for every class at once): the first `--per_class`
faces of that class in `--split`, in stored order, titled with the class and
its count in that split.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # before anything loads TensorFlow (trainers/console.py)
  from trainers import console

  console.start(sys.argv)

import os
from typing import Any

import numpy as np
from absl import flags

from trainers import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  cli.define_dataset_flags()
  flags.DEFINE_string("out", None, "The PNG grid of sample faces (default: "
                      "DATASET_samples.png in the current directory).")
  flags.DEFINE_string("split", "train", "The split the samples come from.")
  flags.DEFINE_integer("per_class", 8, "Sample faces per class.", lower_bound=1,
                       upper_bound=64)


def label_counts(builder: Any, split: str) -> np.ndarray:
  """Examples per class in `split`, from the labels alone (images are not decoded)."""
  import tensorflow_datasets as tfds

  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  counts = np.zeros(builder.info.features["label"].num_classes, np.int64)
  for batch in tfds.as_numpy(ds.map(lambda ex: ex["label"]).batch(4096)):
    counts += np.bincount(batch, minlength=len(counts))
  return counts


def samples(builder: Any, split: str, per_class: int) -> list[list[np.ndarray]]:
  """The first `per_class` images of each class in `split` (fewer if the class has fewer)."""
  import tensorflow_datasets as tfds

  classes = builder.info.features["label"].num_classes
  found: list[list[np.ndarray]] = [[] for _ in range(classes)]
  for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
    row = found[int(example["label"])]
    if len(row) < per_class:
      row.append(example["image"][..., 0])
      if all(len(r) >= per_class for r in found):
        break
  return found


def plot_grid(images: list[list[np.ndarray]], names: list[str], counts: np.ndarray,
              path: str, title: str) -> None:
  """Rows = classes, columns = samples, grayscale at native resolution."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  columns = max(1, max(len(row) for row in images))
  figure = Figure(figsize=(1.1 * columns + 1.6, 1.15 * len(names) + 0.6), dpi=100)
  FigureCanvasAgg(figure)
  grid = figure.subplots(len(names), columns, squeeze=False)
  for r, (row, name) in enumerate(zip(images, names, strict=True)):
    for c in range(columns):
      axes = grid[r][c]
      axes.set_xticks([])
      axes.set_yticks([])
      for spine in axes.spines.values():
        spine.set_visible(False)
      if c < len(row):
        axes.imshow(row[c], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    grid[r][0].set_ylabel(f"{name}\n{counts[r]:,}", rotation=0, ha="right", va="center",
                          fontsize=9)
  figure.suptitle(title, fontsize=10)
  figure.tight_layout()
  figure.savefig(path)


def table(names: list[str], counts: dict[str, np.ndarray]) -> str:
  """Per-class counts per split as aligned text, with totals."""
  width = max(8, *(len(n) + 1 for n in names))
  lines = ["split".ljust(12) + "".join(n.rjust(width) for n in names) + "total".rjust(9)]
  for split, row in counts.items():
    lines.append(split.ljust(12) + "".join(f"{v:>{width},}" for v in row) + f"{row.sum():>9,}")
  total = sum(counts.values())
  lines.append("all".ljust(12) + "".join(f"{v:>{width},}" for v in total) + f"{total.sum():>9,}")
  shares = total / max(total.sum(), 1)
  lines.append("share".ljust(12) + "".join(f"{v:>{width}.1%}" for v in shares))
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  del argv
  import tensorflow_datasets as tfds  # TensorFlow starts here

  from trainers import data

  try:
    dataset = data.prepared_dataset(FLAGS.dataset, FLAGS.data_dir)
  except ValueError as e:
    raise cli.UsageError(str(e)) from None
  builder = tfds.builder(dataset, data_dir=FLAGS.data_dir)
  splits = list(builder.info.splits)
  if FLAGS.split not in splits:
    raise cli.UsageError(f"--split={FLAGS.split}: {dataset} has the splits {', '.join(splits)}")
  names = list(builder.info.features["label"].names)
  counts = {split: label_counts(builder, split) for split in splits}
  for split in splits:
    stored = builder.info.splits[split].num_examples
    if counts[split].sum() != stored:  # a dataset changed after it was built
      raise cli.UsageError(f"{dataset} {split}: {counts[split].sum()} examples read, "
                           f"{stored} recorded; rebuild it")
  print(f"{builder.info.full_name} in {builder.data_dir}")
  print(table(names, counts))

  out = FLAGS.out or f"{dataset}_samples.png"
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  plot_grid(samples(builder, FLAGS.split, FLAGS.per_class), names, counts[FLAGS.split], out,
            f"{builder.info.full_name}, {FLAGS.split} split: the first {FLAGS.per_class} "
            "faces of each class (count in the split)")
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
