"""Shared helpers for the fer2013 builder tests: build into a tmp data_dir and read back."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from fer_tfds.fer2013 import fake_data
from fer_tfds.fer2013.readers import EMOTIONS, USAGES

SPLIT_OF_USAGE = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
SPLITS = ("train", "validation", "test")
# The default drawn input: 14 Training, 7 PublicTest, 7 PrivateTest rows; labels cycle 0..6.
N_PER_USAGE = (14, 7, 7)


def build(manual_dir, data_dir, config="strict", download_mode=None, num_shards=None):
  """Builds `fer2013/<config>` from `manual_dir` into `data_dir`; returns the builder.
  `num_shards`: files per split, as `tfds build --num_shards` (default: the builder's)."""
  builder = tfds.builder(f"fer2013/{config}", data_dir=str(data_dir))
  kwargs = {"manual_dir": str(manual_dir)}
  if download_mode is not None:
    kwargs["download_mode"] = download_mode
  if num_shards is not None:
    kwargs["num_shards"] = num_shards
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(**kwargs))
  return builder


def build_fake_fer2013(root, rows, seed, num_shards=None):
  """Draws `rows` (train, validation, test counts) into root/manual/fer2013.csv and builds
  fer2013 from it into root/tfds: the tiny real-format dataset the trainer's tests use."""
  fake_data.write_csv(root / "manual" / "fer2013.csv", fake_data.fake_rows(rows, seed=seed))
  return build(root / "manual", root / "tfds", num_shards=num_shards)


def read_split(builder, split):
  """The examples of `split` in stored order (no file shuffling), as numpy."""
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return [
      {"id": ex["id"].decode(), "image": ex["image"], "label": int(ex["label"])}
      for ex in tfds.as_numpy(ds)
  ]


def read_all(builder):
  """`{split: [example, ...]}` for every split the builder has."""
  return {split: read_split(builder, split) for split in builder.info.splits}


def split_sizes(builder):
  return {name: info.num_examples for name, info in builder.info.splits.items()}


def csv_expected(rows, file_name="fer2013.csv"):
  """`{split: {id: (label, image)}}` of a CSV written by `fake_data.write_csv`."""
  expected = {split: {} for split in SPLITS}
  for index, (label, usage, image) in enumerate(rows):
    # Line 1 is the header, so row `index` is on line `index + 2`.
    expected[SPLIT_OF_USAGE[usage]][f"{file_name}:{index + 2}"] = (label, image)
  return expected


def image_expected(rows):
  """`{split: {id: (label, image)}}` of `fake_data.image_files(rows)` (prefixed names)."""
  expected = {split: {} for split in SPLITS}
  for index, (label, usage, image) in enumerate(rows):
    folder = "train" if usage == "Training" else "test"
    item = f"{folder}/{EMOTIONS[label]}/{usage}_{index}.png"
    expected[SPLIT_OF_USAGE[usage]][item] = (label, image)
  return expected


def assert_matches(actual, expected):
  """Every split holds exactly the expected ids, labels and pixels."""
  assert {s: len(e) for s, e in actual.items()} == {
      s: len(e) for s, e in expected.items() if e
  }
  for split, examples in actual.items():
    assert sorted(ex["id"] for ex in examples) == sorted(expected[split]), split
    for ex in examples:
      label, image = expected[split][ex["id"]]
      assert ex["label"] == label, ex["id"]
      assert ex["image"].dtype == np.uint8
      assert ex["image"].shape == (48, 48, 1)
      np.testing.assert_array_equal(ex["image"][..., 0], image, err_msg=ex["id"])


def default_rows(seed=0):
  return fake_data.fake_rows(N_PER_USAGE, seed=seed)


def write_bad_csv(path, lines, header="emotion,pixels,Usage"):
  """Writes a CSV of literal `lines` (after `header`); for malformed input."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join([header, *lines]) + "\n")
  return path


def good_line(label=0, usage="Training", seed=0):
  """One valid fer2013.csv line with a drawn image."""
  image = fake_data.fake_images(1, seed)[0]
  return f"{label},{fake_data.pixel_string(image)},{usage}"


assert USAGES == tuple(SPLIT_OF_USAGE)


# Class -> row of its bar (far enough apart that the +-10% shift of the augmentation
# cannot move one onto another). 3 happy, 4 sad, 6 neutral: happy is the majority, as in
# FER2013.
BAR_ROWS = {3: 10, 4: 24, 6: 38}
BAR_SHARES = {3: 0.4, 4: 0.3, 6: 0.3}


def bar_images(labels: np.ndarray, seed: int) -> np.ndarray:
  """48x48 uint8 images: noise 0..39, an oval "face" +90, a per-image brightness 0..60
  (class-independent, as lighting in real faces) and the class's bar +60 (4 x 32 px)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:48, :48]
  face = ((yy - 24) / 20) ** 2 + ((xx - 24) / 15) ** 2 < 1
  images = rng.integers(0, 40, size=(len(labels), 48, 48)).astype(np.float64)
  images[:, face] += 90
  images += rng.uniform(0, 60, size=(len(labels), 1, 1))
  for image, label in zip(images, labels, strict=True):
    row = BAR_ROWS[int(label)]
    image[row - 2:row + 2, 8:40] += 60
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def bar_rows(counts: dict[str, int], seed: int = 0) -> list[tuple[int, str, np.ndarray]]:
  """(label, usage, image) rows, `counts` per usage: learnable drawn faces (a bar at a
  class-dependent height; classes 3, 4, 6 at 40/30/30%), in shuffled order."""
  rng = np.random.default_rng(seed)
  rows = []
  for usage, count in counts.items():
    labels = np.concatenate([np.full(round(count * share), label)
                             for label, share in BAR_SHARES.items()])
    rng.shuffle(labels)
    images = bar_images(labels, seed=int(rng.integers(1 << 31)))
    rows += [(int(label), usage, image) for label, image in zip(labels, images, strict=True)]
  return rows
