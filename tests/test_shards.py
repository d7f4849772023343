"""Each split in several files (fer_tfds/sharding.py) and input pipelines that shard by them
(trainers/data.py, shard_split), on tiny fer2013 builds."""

import fer_helpers as helpers
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from fer_tfds.sharding import DEFAULT_NUM_SHARDS
from trainers import data

# 32 train rows in 16 files of 2; validation and test have fewer rows than the default count.
ROWS = (32, 12, 7)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  """A tiny fer2013 built with the builder's default shard count."""
  root = tmp_path_factory.mktemp("sharded")
  return helpers.build_fake_fer2013(root, ROWS, seed=5)


@pytest.fixture(scope="module")
def one_file(tmp_path_factory):
  """The same rows in one file per split: how fer2013 1.0.0 was built before it sharded."""
  root = tmp_path_factory.mktemp("one_file")
  return helpers.build_fake_fer2013(root, ROWS, seed=5, num_shards=1)


def _files_on_disk(builder, split):
  return sorted(p.name for p in builder.data_path.iterdir()
                if p.name.startswith(f"fer2013-{split}.tfrecord-"))


def _file_of_each_id(builder, split):
  """{example id: the name of the file that holds it}."""
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          read_config=tfds.ReadConfig(add_tfds_id=True))
  return {ex["id"]: ex["tfds_id"].decode().split("__")[0] for ex in tfds.as_numpy(ds)}


def _data_dir(builder):
  """The data_dir the builder was built into (its data is in DATA_DIR/fer2013/strict/1.0.0)."""
  return str(builder.data_path.parents[2])


def _context(pipelines, index):
  return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=index,
                                    num_replicas_in_sync=pipelines)


def _epochs(builder, split, pipelines, training, epochs=2):
  """[pipeline][epoch] -> the example ids that pipeline's make_dataset yields, in order."""
  result = []
  for index in range(pipelines):
    ds = data.make_dataset(split, dataset="fer2013", data_dir=_data_dir(builder),
                           batch_size=1, training=training, with_ids=True, seed=index,
                           input_context=_context(pipelines, index), augment_strength=0.0)
    result.append([[i for _, _, ids in ds for i in ids.numpy()] for _ in range(epochs)])
  return result


def _assert_each_epoch_is_the_split_once(epochs, all_ids):
  """Per epoch: no pipeline repeats an example, no two share one, together they are the split."""
  for epoch in range(len(epochs[0])):
    shares = [pipeline[epoch] for pipeline in epochs]
    for share in shares:
      assert len(share) == len(set(share)), "a pipeline read an example twice in one epoch"
    assert sum(len(share) for share in shares) == len(all_ids)
    assert set().union(*shares) == all_ids, "the pipelines together missed examples"


def test_each_split_is_written_in_the_default_number_of_files(sharded):
  """16 files for train; a split with fewer examples gets one file per example."""
  assert DEFAULT_NUM_SHARDS == 16
  expected = {"train": 16, "validation": 12, "test": 7}
  for split, count in expected.items():
    assert sharded.info.splits[split].num_shards == count, split
    assert len(_files_on_disk(sharded, split)) == count, split
    assert sum(sharded.info.splits[split].shard_lengths) == dict(zip(
        expected, ROWS, strict=True))[split]


def test_an_explicit_num_shards_wins_over_the_default(tmp_path):
  """DownloadConfig(num_shards=N), which `tfds build --num_shards N` sets, for every split."""
  builder = helpers.build_fake_fer2013(tmp_path, ROWS, seed=5, num_shards=4)
  for split in ("train", "validation", "test"):
    assert builder.info.splits[split].num_shards == 4, split
    assert len(_files_on_disk(builder, split)) == 4, split


def test_sharding_keeps_the_examples_and_their_stored_order(sharded, one_file):
  """The same examples as a one-file build, and reading the files in order gives the same
  sequence: sharding cuts the stored order, it does not change it."""
  for split in ("train", "validation", "test"):
    def in_file_order(builder, split=split):
      ds = builder.as_dataset(split=split, shuffle_files=False,
                              read_config=tfds.ReadConfig(interleave_cycle_length=1))
      return [(ex["id"], ex["label"], ex["image"].tobytes()) for ex in tfds.as_numpy(ds)]
    assert in_file_order(sharded) == in_file_order(one_file), split


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("pipelines", [2, 4, 8, 16])
def test_pipelines_read_distinct_files_and_together_the_split_once(sharded, pipelines,
                                                                   training):
  """16 files over 2, 4, 8 or 16 pipelines: pipeline i reads files i, i + n, ... and only
  those, all of each file, every epoch; together the whole split once per epoch."""
  file_of = _file_of_each_id(sharded, "train")
  files = sorted(set(file_of.values()))
  epochs = _epochs(sharded, "train", pipelines, training)
  _assert_each_epoch_is_the_split_once(epochs, set(file_of))
  for index, pipeline in enumerate(epochs):
    for ids in pipeline:
      assert {file_of[i] for i in ids} == set(files[index::pipelines]), index
  if training:  # each pipeline shuffles its own files and examples every epoch
    assert any(pipeline[0] != pipeline[1] for pipeline in epochs)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("pipelines", [3, 32])
def test_otherwise_pipelines_shard_by_examples(sharded, pipelines, training):
  """More pipelines than files (32 > 16), or files that do not divide over them (16 over 3,
  which by files would be 12 / 10 / 10 examples): even splits of the examples, disjoint,
  complete, and equal to within one example."""
  all_ids = set(_file_of_each_id(sharded, "train"))
  epochs = _epochs(sharded, "train", pipelines, training)
  _assert_each_epoch_is_the_split_once(epochs, all_ids)
  sizes = [len(pipeline[0]) for pipeline in epochs]
  assert max(sizes) - min(sizes) <= 1, sizes


@pytest.mark.parametrize("training", [True, False])
def test_a_one_file_split_is_sharded_by_examples(one_file, training):
  """A build with one file per split (fer2013 built before sharding) still gives 2 pipelines
  distinct halves: TFDS's file sharding would fail there."""
  assert one_file.info.splits["train"].num_shards == 1
  all_ids = set(_file_of_each_id(one_file, "train"))
  epochs = _epochs(one_file, "train", 2, training)
  _assert_each_epoch_is_the_split_once(epochs, all_ids)
  assert [len(pipeline[0]) for pipeline in epochs] == [16, 16]


def test_evaluation_reads_sharded_splits_in_stored_order(tmp_path):
  """Evaluation (no cache) yields the order `builder.as_dataset(shuffle_files=False)` gives,
  on any machine: the interleave over the files is TFDS's fixed one, not AUTOTUNE (whose
  cycle is the core count). Files of 32 examples: longer than the interleave's blocks of 16,
  so the cycle shows in the order."""
  builder = helpers.build_fake_fer2013(tmp_path, (96, 7, 7), seed=6, num_shards=3)
  stored = [ex["id"].encode() for ex in helpers.read_split(builder, "train")]
  ds = data.make_dataset("train", dataset="fer2013", data_dir=_data_dir(builder),
                         batch_size=5, training=False, cache=False, with_ids=True)
  assert [i for _, _, ids in ds for i in ids.numpy()] == stored
  assert data._read_config(0, True).interleave_cycle_length != tf.data.AUTOTUNE  # noqa: SLF001
