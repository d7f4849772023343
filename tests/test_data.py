"""trainers/data.py: the tf.data pipelines, on tiny fer2013 and fer2013_synthetic builds."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import fer_helpers as helpers
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from fer_tfds.fer2013 import fake_data
from fer_tfds.fer2013_synthetic import fer2013_synthetic_dataset_builder as synthetic_builder
from trainers import data

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_SYNTHETIC = "fer2013_synthetic/tiny"
# 30 train, 11 validation, 7 test rows: 30 and 11 are not multiples of the batch sizes below.
N_PER_USAGE = (30, 11, 7)


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
  """A data dir with a tiny `fer2013` built from drawn rows."""
  root = tmp_path_factory.mktemp("data")
  manual = fake_data.write_csv(root / "manual" / "fer2013.csv",
                               fake_data.fake_rows(N_PER_USAGE, seed=1)).parent
  helpers.build(manual, root / "tfds")
  return str(root / "tfds")


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  """A data dir with the tiny synthetic config built (70/14/14 faces)."""
  data_dir = str(tmp_path_factory.mktemp("synthetic"))
  tfds.builder(TINY_SYNTHETIC, data_dir=data_dir).download_and_prepare()
  return data_dir


def batches(ds):
  return [tuple(np.asarray(t) for t in batch) for batch in ds]


def make(data_dir, split="train", **kwargs):
  kwargs = {"dataset": "fer2013", "batch_size": 8, "training": True, **kwargs}
  return data.make_dataset(split, data_dir=data_dir, **kwargs)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("image_size,channels", [(48, 1), (48, 3), (96, 3), (96, 1)])
def test_shapes_dtypes_and_ranges(real_dir, training, image_size, channels):
  ds = make(real_dir, training=training, image_size=image_size, channels=channels)
  images, labels = next(iter(ds))
  assert images.dtype == tf.float32 and labels.dtype == tf.int32
  assert images.shape == (8, image_size, image_size, channels)
  assert labels.shape == (8,)
  assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
  assert set(labels.numpy()) <= set(range(7))
  if channels == 3:  # gray replicated, not colour
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def bilinear_numpy(image, size):
  """Half-pixel-centre bilinear resize of (H, W) with edge clamping, as tf.image.resize does."""
  def axis_weights(n_in, n_out):
    coords = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, coords - low
  y0, y1, wy = axis_weights(image.shape[0], size)
  x0, x1, wx = axis_weights(image.shape[1], size)
  rows = image[y0] * (1 - wy)[:, None] + image[y1] * wy[:, None]
  return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def test_preprocess_images_matches_manual_computation():
  images = fake_data.fake_images(3, seed=2)[..., None]  # (3, 48, 48, 1) uint8
  scaled = images.astype(np.float64) / 255
  np.testing.assert_allclose(data.preprocess_images(images), scaled, atol=1e-6)
  rgb = data.preprocess_images(images[0], 96, 3).numpy()  # a single image
  assert rgb.shape == (96, 96, 3) and rgb.dtype == np.float32
  expected = bilinear_numpy(scaled[0, ..., 0], 96)
  for channel in range(3):
    np.testing.assert_allclose(rgb[..., channel], expected, atol=1e-5)
  # Float input counts as already scaled: preprocessing twice changes nothing.
  once = data.preprocess_images(images)
  np.testing.assert_allclose(data.preprocess_images(once), once)


def test_preprocess_images_rejects_other_channel_counts():
  with pytest.raises(ValueError, match="channels"):
    data.preprocess_images(np.zeros((48, 48, 1), np.uint8), channels=2)


@pytest.fixture(scope="module")
def float_batch():
  return data.preprocess_images(fake_data.fake_images(16, seed=3)[..., None])


def test_augmentation_changes_images_but_keeps_shape_and_range(float_batch):
  out = data.augment_batch(float_batch, tf.constant([1, 2]))
  assert out.shape == float_batch.shape and out.dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0
  changed = np.abs(out - float_batch).mean(axis=(1, 2, 3))
  assert (changed > 0.01).all()


def test_augmentation_strength_zero_is_identity(float_batch):
  out = data.augment_batch(float_batch, tf.constant([1, 2]), strength=0.0)
  np.testing.assert_array_equal(out, float_batch)


def test_augmentation_is_deterministic_per_seed(float_batch):
  first = data.augment_batch(float_batch, tf.constant([5, 6]))
  np.testing.assert_array_equal(first, data.augment_batch(float_batch, tf.constant([5, 6])))
  assert np.abs(first - data.augment_batch(float_batch, tf.constant([5, 7]))).max() > 0.1


def test_tiny_strength_only_flips(float_batch):
  """With ranges near 0 the one transform must reduce to identity or a mirror image."""
  out = data.augment_batch(float_batch, tf.constant([3, 4]), strength=1e-6).numpy()
  images = float_batch.numpy()
  mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, images, strict=True)]
  same = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, images, strict=True)]
  assert all(m or s for m, s in zip(mirrored, same, strict=True))
  assert any(mirrored) and any(same)


def test_variable_strength_reads_its_value_per_batch(real_dir):
  """--augment_warmup_epochs: the pipeline reads a variable strength when each batch is made.
  At 0 it gives the unaugmented batches, at 0.5 exactly what a fixed 0.5 gives."""
  strength = tf.Variable(0.0, trainable=False)

  def run(value):
    return batches(make(real_dir, seed=7, deterministic=True, augment_strength=value))

  plain = run(0.0)
  for got, want in zip(run(strength), plain, strict=True):
    np.testing.assert_array_equal(got[0], want[0])
  strength.assign(0.5)
  ramped, fixed = run(strength), run(0.5)
  for got, want in zip(ramped, fixed, strict=True):
    np.testing.assert_array_equal(got[0], want[0])
  assert not np.array_equal(ramped[0][0], plain[0][0])


def test_warmup_ramps_the_strength_by_epoch():
  from trainers import task

  variable = tf.Variable(-1.0)
  warmup = task.AugmentWarmup(variable, strength=0.8, warmup_epochs=2)
  seen = []
  for epoch in (0, 1, 2, 5, 1):  # the last: a resumed run's epoch 1
    warmup.on_epoch_begin(epoch)
    seen.append(round(float(variable.numpy()), 6))
  assert seen == [0.0, 0.4, 0.8, 0.8, 0.4]
  assert task.warmup_strength(0.8, 0, 0) == 0.8  # no warmup: full strength at once


def test_deterministic_make_dataset_repeats_exactly(real_dir):
  def run(seed):
    return batches(make(real_dir, seed=seed, deterministic=True, with_ids=True))
  first = run(seed=7)
  for a, b in zip(first, run(seed=7), strict=True):
    for x, y in zip(a, b, strict=True):
      np.testing.assert_array_equal(x, y)
  other = run(seed=8)
  assert [list(b[2]) for b in first] != [list(b[2]) for b in other]


def test_epochs_differ_in_order_and_augmentation(real_dir):
  ds = make(real_dir, seed=7, deterministic=True)
  first, second = batches(ds), batches(ds)
  assert not np.array_equal(first[0][0], second[0][0])


def test_training_drops_the_remainder_evaluation_keeps_every_example(real_dir):
  train = batches(make(real_dir, batch_size=8, training=True))
  assert [len(b[1]) for b in train] == [8, 8, 8]  # 30 examples
  val = batches(make(real_dir, "validation", batch_size=4, training=False, with_ids=True))
  assert [len(b[1]) for b in val] == [4, 4, 3]  # 11 examples
  assert len({i for b in val for i in b[2]}) == 11


def test_evaluation_without_cache_reads_in_stored_order(real_dir):
  builder = tfds.builder("fer2013", data_dir=real_dir)
  stored = [ex["id"] for ex in helpers.read_split(builder, "test")]
  ds = make(real_dir, "test", batch_size=3, training=False, cache=False, with_ids=True)
  assert [i.decode() for b in batches(ds) for i in b[2]] == stored


class _FakeStrategy:
  num_replicas_in_sync = 3


def test_indivisible_global_batch_raises():
  with pytest.raises(ValueError, match="--batch_size 8 is not divisible by the 3 replicas"):
    data.distributed_dataset(_FakeStrategy(), "train", global_batch_size=8, dataset="fer2013",
                             data_dir=None, training=True)


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainers import data
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}
    for training in (True, False):
      ds = data.distributed_dataset(strategy, "train", global_batch_size=8, dataset="fer2013",
                                    data_dir=sys.argv[1], training=training, with_ids=True)
      shapes, ids = [], []
      for images, labels, batch_ids in ds:
        shapes.append([list(t.shape) for t in strategy.experimental_local_results(images)])
        for t in strategy.experimental_local_results(batch_ids):
          ids.extend(i.decode() for i in t.numpy())
      result[str(training)] = {"shapes": shapes, "ids": ids}
    try:
      data.distributed_dataset(strategy, "train", global_batch_size=7, dataset="fer2013",
                               data_dir=sys.argv[1], training=True)
    except ValueError as error:
      result["error"] = str(error)
    print("RESULT", json.dumps(result))
""")


def test_distributed_dataset_under_mirrored_strategy(real_dir):
  """Two logical CPUs must be set before TF starts, hence a fresh interpreter."""
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])), "TF_CPP_MIN_LOG_LEVEL": "2"}
  proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT, real_dir], capture_output=True,
                        text=True, cwd=REPO_ROOT, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
  result = json.loads(line.split(" ", 1)[1])
  assert result["replicas"] == 2
  train = result["True"]
  # 30 examples, 15 per pipeline, batches of 4 per replica, remainder dropped.
  assert train["shapes"] == [[[4, 48, 48, 1], [4, 48, 48, 1]]] * 3
  assert len(set(train["ids"])) == 24
  evaluation = result["False"]
  assert len(evaluation["ids"]) == len(set(evaluation["ids"])) == 30
  assert "--batch_size 7 is not divisible by the 2 replicas" in result["error"]


def test_resolve_dataset_prefers_prepared_real_data(real_dir, absl_info):
  assert data.resolve_dataset(None, real_dir) == "fer2013"
  assert data.resolve_dataset("auto", real_dir) == "fer2013"
  assert "SYNTHETIC" not in absl_info.text


def test_resolve_dataset_falls_back_to_synthetic_and_says_so(tmp_path, absl_info, monkeypatch):
  monkeypatch.setattr(data, "SYNTHETIC_DATASET", TINY_SYNTHETIC)  # 98 faces, not 9,800
  assert data.resolve_dataset(None, str(tmp_path)) == TINY_SYNTHETIC
  assert tfds.builder(TINY_SYNTHETIC, data_dir=str(tmp_path)).is_prepared()  # built on first use
  warnings = [r.getMessage() for r in absl_info.records if r.levelno == logging.WARNING]
  message = next(m for m in warnings if "SYNTHETIC" in m)
  assert (f"tfds build fer2013 --imports fer_tfds --manual_dir DIR --data_dir {tmp_path}"
          in message)


def test_resolve_dataset_keeps_an_explicit_name(tmp_path):
  assert data.resolve_dataset("fer2013/skip_bad_rows", str(tmp_path)) == "fer2013/skip_bad_rows"


def test_synthetic_dataset_matches_fer2013_features(real_dir, synthetic_dir):
  real = tfds.builder("fer2013", data_dir=real_dir).info.features
  synthetic = tfds.builder(TINY_SYNTHETIC, data_dir=synthetic_dir).info.features
  assert synthetic.get_serialized_info() == real.get_serialized_info()
  assert synthetic["label"].names == real["label"].names
  # Only the tiny test config is opt-in; users get the full sizes by default.
  default = tfds.builder("fer2013_synthetic", data_dir=synthetic_dir)
  assert default.builder_config.name == "default"
  assert {s: n for s, n in default.builder_config.sizes.items()} == {
      "train": 7000, "validation": 1400, "test": 1400}


def test_synthetic_splits_are_balanced_with_synthetic_ids(synthetic_dir):
  builder = tfds.builder(TINY_SYNTHETIC, data_dir=synthetic_dir)
  assert helpers.split_sizes(builder) == {"train": 70, "validation": 14, "test": 14}
  examples = helpers.read_split(builder, "train")
  assert Counter(ex["label"] for ex in examples) == {label: 10 for label in range(7)}
  assert {ex["id"] for ex in examples} == {f"synthetic/train/{i:06d}" for i in range(70)}
  ds = data.make_dataset("validation", dataset=TINY_SYNTHETIC, data_dir=synthetic_dir,
                         batch_size=14, training=False)
  images, labels = next(iter(ds))
  assert images.shape == (14, 48, 48, 1) and sorted(labels.numpy()) == sorted(list(range(7)) * 2)


def test_synthetic_labels_are_balanced_and_seeded():
  labels = synthetic_builder.balanced_labels(1400, seed=1)
  assert Counter(labels.tolist()) == {label: 200 for label in range(7)}
  np.testing.assert_array_equal(labels, synthetic_builder.balanced_labels(1400, seed=1))
