"""The sweep's objective split: a stratified, seeded slice of the train split.

Why: a sweep that selects on PublicTest and then reports its gain on PublicTest
overstates the gain (the best of N noisy scores is biased upwards). Trials
train on the rest of Training and are scored on this slice instead, so
PublicTest stays unseen by the sweep and the tuned and untuned models compare
fairly on it (docs/tuning.md). PrivateTest is never read.

Stratified: each class gives round(fraction x its count) examples, chosen by a
seeded hash of the example id, so the same dataset always gives the same slice
(its ids' SHA-256 is recorded in sweep_config.json and checked on resume).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from trainers import data

SEED = 2013


@dataclasses.dataclass(frozen=True)
class Holdout:
  """The ids of the objective split (sorted) and how they were chosen."""

  ids: tuple[bytes, ...]
  per_class: tuple[int, ...]  # examples of each class in the slice
  fraction: float
  seed: int

  def record(self) -> dict[str, Any]:
    """What sweep_config.json keeps: enough to tell whether a resumed sweep scores the same."""
    return {"split": "train", "fraction": self.fraction, "seed": self.seed,
            "examples": len(self.ids), "per_class": list(self.per_class),
            "ids_sha256": hashlib.sha256(b"\n".join(self.ids)).hexdigest()}

  def predicate(self, inside: bool) -> Callable[[dict[str, tf.Tensor]], tf.Tensor]:
    """A make_dataset `example_filter`: keeps the slice (inside) or the rest of train."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(self.ids), tf.string),
                                            tf.ones(len(self.ids), tf.int32)),
        default_value=0)

    def keep(example: dict[str, tf.Tensor]) -> tf.Tensor:
      return tf.equal(table.lookup(example["id"]), 1 if inside else 0)

    return keep


def _order(seed: int, example_id: bytes) -> bytes:
  return hashlib.sha256(f"{seed}:".encode() + example_id).digest()


def carve(dataset: str, data_dir: str | None, fraction: float, num_classes: int,
          seed: int = SEED) -> Holdout:
  """round(fraction x count) examples of each class of `dataset`'s train split."""
  if not 0 < fraction < 1:
    raise ValueError(f"the holdout fraction must be in (0, 1), got {fraction}")
  ids: list[bytes] = []
  labels: list[np.ndarray] = []
  for _, batch_labels, batch_ids in data.make_dataset(
      "train", dataset=dataset, data_dir=data_dir, batch_size=4096, training=False,
      cache=False, with_ids=True):
    ids.extend(batch_ids.numpy().tolist())
    labels.append(batch_labels.numpy())
  label_array = np.concatenate(labels) if labels else np.zeros(0, np.int32)
  chosen: list[bytes] = []
  per_class = []
  for label in range(num_classes):
    members = sorted((ids[i] for i in np.flatnonzero(label_array == label)),
                     key=lambda example_id: _order(seed, example_id))
    take = round(fraction * len(members))
    if len(members) > 1:  # every class with 2 examples or more is represented, and trained on
      take = min(max(take, 1), len(members) - 1)
    chosen += members[:take]
    per_class.append(take)
  return Holdout(tuple(sorted(chosen)), tuple(per_class), fraction, seed)
