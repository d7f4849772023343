"""Unit tests of fer_tfds/fer2013/splits.py: usage mapping and stratified, seeded carving."""

import numpy as np
import pytest

from fer_tfds.fer2013.readers import UNKNOWN_USAGE, ExampleTable
from fer_tfds.fer2013.splits import CARVE_FRACTION, assign_splits


def _table(labels, usages):
  n = len(labels)
  return ExampleTable(
      ids=[f"x.csv:{i + 2}" for i in range(n)],
      images=np.zeros((n, 48, 48, 1), np.uint8),
      labels=np.asarray(labels, dtype=np.int64),
      usages=list(usages),
  )


def _unassigned(per_class, seed=0):
  """A shuffled table without usage: `per_class[c]` examples of class c."""
  labels = np.repeat(np.arange(len(per_class)), per_class)
  labels = labels[np.random.default_rng(seed).permutation(labels.size)]
  return _table(labels, [UNKNOWN_USAGE] * labels.size)


def _check_partition(splits, n):
  every = np.concatenate(list(splits.values()))
  assert sorted(every.tolist()) == list(range(n)), "each example in exactly one split"


def test_usage_maps_to_splits():
  """Training -> train, PublicTest -> validation, PrivateTest -> test; nothing is carved."""
  usages = ["Training", "PublicTest", "Training", "PrivateTest", "PublicTest"]
  splits, carved = assign_splits(_table([0, 1, 2, 3, 4], usages))
  assert carved == []
  assert {s: i.tolist() for s, i in splits.items()} == {
      "train": [0, 2], "validation": [1, 4], "test": [3],
  }


def test_empty_splits_are_left_out():
  """A split without examples is absent, not an empty array."""
  splits, carved = assign_splits(_table([0, 1], ["Training", "Training"]))
  assert set(splits) == {"train"} and carved == []


def test_carves_validation_and_test_stratified():
  """Without usage, validation and test are each ~10% of every class (at least one)."""
  per_class = [50, 5, 40, 90, 61, 30, 44]
  table = _unassigned(per_class)
  splits, carved = assign_splits(table)
  assert carved == ["validation", "test"]
  _check_partition(splits, len(table))
  for label, count in enumerate(per_class):
    expected = max(1, round(count * CARVE_FRACTION))
    for split in ("validation", "test"):
      got = int(np.sum(table.labels[splits[split]] == label))
      assert got == expected, (split, label)
    assert int(np.sum(table.labels[splits["train"]] == label)) == count - 2 * expected


def test_carving_is_deterministic():
  """The same table gives the same split, every time (fixed seed)."""
  table = _unassigned([20, 3, 17, 33, 25, 11, 19], seed=3)
  first, _ = assign_splits(table)
  for _ in range(3):
    again, _ = assign_splits(table)
    assert {s: i.tolist() for s, i in again.items()} == {s: i.tolist() for s, i in first.items()}


def test_carving_is_not_just_the_first_rows():
  """Carved examples are drawn at random within a class, not the first ones of the input."""
  table = _unassigned([200] * 7, seed=1)
  splits, _ = assign_splits(table)
  for label in range(7):
    members = np.flatnonzero(table.labels == label)
    carved = np.intersect1d(members, splits["validation"])
    assert not np.array_equal(carved, members[: carved.size])


def test_tiny_classes_stay_in_train():
  """A class too small to give every carved split one example stays whole in train."""
  table = _unassigned([10, 2, 1, 3, 10, 10, 10])
  splits, _ = assign_splits(table)
  labels = {s: table.labels[i].tolist() for s, i in splits.items()}
  assert labels["train"].count(1) == 2 and labels["train"].count(2) == 1
  for split in ("validation", "test"):
    assert 1 not in labels[split] and 2 not in labels[split]
    assert labels[split].count(3) == 1


def test_only_missing_splits_are_carved():
  """Image folders without prefixes: test/ is the test split, only validation is carved."""
  labels = [i % 7 for i in range(70)] + [i % 7 for i in range(14)]
  usages = [UNKNOWN_USAGE] * 70 + ["PrivateTest"] * 14
  table = _table(labels, usages)
  splits, carved = assign_splits(table)
  assert carved == ["validation"]
  _check_partition(splits, len(table))
  assert splits["test"].tolist() == list(range(70, 84))
  assert len(splits["validation"]) == 7
  assert sorted(table.labels[splits["validation"]].tolist()) == list(range(7))
  assert set(splits["validation"].tolist()) <= set(range(70))


@pytest.mark.parametrize("n", [0, 1])
def test_degenerate_sizes(n):
  """Empty or single-example inputs do not crash; a single example stays in train."""
  splits, _ = assign_splits(_unassigned([n]))
  assert sum(len(i) for i in splits.values()) == n
  if n:
    assert splits["train"].tolist() == [0]
