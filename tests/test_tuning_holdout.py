"""The sweep's objective split (tuning/holdout.py): a stratified, seeded slice of train.

Trials train on the rest of train and are scored on the slice, so PublicTest
(validation) stays unseen by the sweep and PrivateTest (test) is never read.
"""

import json
from collections import Counter
from pathlib import Path

import fer_helpers as helpers
import numpy as np
import pytest
import tensorflow as tf

from trainers import config as trainer_config
from trainers import data
from tuning import holdout, results
from tuning import main as tuning_main
from tuning.hypermodel import Pipelines

ROWS = (70, 14, 14)  # train (10 per class), validation, test


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("fer2013")
  helpers.build_fake_fer2013(root, ROWS, seed=4)
  return str(root / "tfds")


def ids_and_labels(data_dir, split, example_filter=None):
  ds = data.make_dataset(split, dataset="fer2013", data_dir=data_dir, batch_size=64,
                         training=False, with_ids=True, example_filter=example_filter)
  pairs = [(i, int(label)) for _, labels, ids in ds
           for i, label in zip(ids.numpy().tolist(), labels.numpy(), strict=True)]
  return dict(pairs)


def test_holdout_is_a_stratified_seeded_slice_of_train_only(data_dir):
  carved = holdout.carve("fer2013", data_dir, fraction=0.2, num_classes=7)
  train = ids_and_labels(data_dir, "train")
  assert carved.per_class == (2,) * 7  # 20% of 10 per class
  assert set(carved.ids) <= set(train)
  assert Counter(train[i] for i in carved.ids) == Counter({c: 2 for c in range(7)})
  for split in ("validation", "test"):  # never PublicTest or PrivateTest
    assert not set(carved.ids) & set(ids_and_labels(data_dir, split))
  again = holdout.carve("fer2013", data_dir, fraction=0.2, num_classes=7)
  assert again == carved and again.record() == carved.record()
  other = holdout.carve("fer2013", data_dir, fraction=0.2, num_classes=7, seed=1)
  assert other.ids != carved.ids


def test_filters_split_train_into_holdout_and_rest(data_dir):
  carved = holdout.carve("fer2013", data_dir, fraction=0.1, num_classes=7)
  assert carved.per_class == (1,) * 7
  inside = ids_and_labels(data_dir, "train", carved.predicate(inside=True))
  rest = ids_and_labels(data_dir, "train", carved.predicate(inside=False))
  assert set(inside) == set(carved.ids)
  assert not set(inside) & set(rest)
  assert set(inside) | set(rest) == set(ids_and_labels(data_dir, "train"))


def test_pipelines_train_on_the_rest_and_score_on_the_holdout(data_dir):
  config = trainer_config.TrainConfig(dataset="fer2013", data_dir=data_dir, batch_size=7,
                                      augment_strength=0.0)
  carved = holdout.carve("fer2013", data_dir, fraction=0.2, num_classes=7)
  pipelines = Pipelines(config, tf.distribute.get_strategy(), "fer2013", carved)
  assert pipelines.info.train_examples == 56 and pipelines.steps_per_epoch == 8
  labels = np.concatenate([np.argmax(y, -1) for _, y in pipelines.validation()])
  assert sorted(Counter(labels.tolist()).values()) == [2] * 7
  assert pipelines.builds == ["holdout"]


def test_a_sweep_records_its_holdout_and_scores_on_it(data_dir, tmp_path):
  base = ["tuning.main", f"--data_dir={data_dir}", f"--directory={tmp_path}",
          "--dataset=fer2013", "--batch_size=8", "--max_steps_per_epoch=2", "--epochs=1",
          "--space_filters=4/8", "--space_dense_units=8", "--max_trials=1"]
  assert tuning_main.run([*base, "--project_name=holdout"]) == 0
  record = json.loads((Path(tmp_path) / "holdout" / results.SWEEP_CONFIG).read_text())
  carved = holdout.carve("fer2013", data_dir, fraction=0.1, num_classes=7)
  assert record["holdout"] == carved.record()
  assert record["objective_split"] == "holdout"

  assert tuning_main.run([*base, "--project_name=public", "--objective_split=validation"]) == 0
  record = json.loads((Path(tmp_path) / "public" / results.SWEEP_CONFIG).read_text())
  assert record["holdout"] is None and record["objective_split"] == "validation"
