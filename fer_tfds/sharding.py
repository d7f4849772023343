"""How many TFRecord files (shards) each split of a fer-tf dataset is written in.

Why not TFDS's own rule: it makes no shard smaller than 64 MiB, so FER2013
(train is 68 MB, the largest split) is one file per split, and a split of one
file cannot be sharded by files over several input pipelines (tf.distribute
workers, tf.data service workers); see `trainers/data.py`, `shard_split`.

The default, 16 files per split (fewer when a split has fewer examples), was
chosen by

* workers: the files must divide evenly over the input pipelines (one per
  worker) for file sharding to give each an equal share (`shard_split`), so a
  power of two: 16 files shard over 1, 2, 4, 8 or 16 workers; more hosts than
  16 training on FER2013 is not a use we expect, and a larger split can pass
  `--num_shards`;
* read throughput: it does not decide. Full passes over train through the
  trainer's reader settings, on 2 cores shared with a training run (load
  average 6.7), read at medians of 22.3k, 21.5k, 20.9k, 22.1k, 21.7k and 18.8k
  images/s with 1, 4, 8, 16, 32 and 64 files (bests 22.4k, 25.9k, 26.0k,
  22.3k, 26.7k, 23.9k; single passes from 10.8k to 26.7k as the other run
  took the cores or not): flat within the noise. The command that prints
  them (and train's 68 MB), with the table in docs/benchmarks.md ("Shards"):

      python -m tools.bench.shards --manual_dir /tmp/fer2013

`tfds build --num_shards N` (or `DownloadConfig(num_shards=N)`) overrides the
default for every split, exactly as TFDS does (a split with fewer than N
examples then fails the build, as in TFDS). Where TFDS's size rule asks for
more files than the default (splits of 2 GiB and more), it wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import shard_utils

DEFAULT_NUM_SHARDS = 16


@dataclasses.dataclass(frozen=True)
class SplitShardConfig(shard_utils.ShardConfig):
  """TFDS's ShardConfig, with `default_num_shards` files per split unless told otherwise."""

  default_num_shards: int = DEFAULT_NUM_SHARDS

  def get_number_shards(self, total_size: int, num_examples: int,
                        uses_precise_sharding: bool = True) -> int:
    """Files for a split of `num_examples` examples (`total_size` bytes), asked once per split."""
    by_size = super().get_number_shards(total_size, num_examples, uses_precise_sharding)
    if self.num_shards:  # tfds build --num_shards: TFDS's own answer, unchanged
      return by_size
    return max(by_size, min(self.default_num_shards, num_examples))


@dataclasses.dataclass(eq=False)
class _ShardedDownloadConfig(tfds.download.DownloadConfig):
  """A DownloadConfig whose shard configuration is a SplitShardConfig."""

  default_num_shards: int = DEFAULT_NUM_SHARDS

  def get_shard_config(self) -> shard_utils.ShardConfig:  # noqa: D102
    return SplitShardConfig(num_shards=self.num_shards, min_shard_size=self.min_shard_size,
                            max_shard_size=self.max_shard_size,
                            default_num_shards=self.default_num_shards)


class ShardedSplits:
  """Mixin for a GeneratorBasedBuilder: each split in NUM_SHARDS files (module docstring).

  TFDS takes the shard configuration from the DownloadConfig in
  `_generate_splits`, its one caller of `get_shard_config`; this passes it a
  copy of the caller's DownloadConfig that answers with a SplitShardConfig.
  """

  NUM_SHARDS = DEFAULT_NUM_SHARDS

  def _generate_splits(self, dl_manager: tfds.download.DownloadManager,
                       download_config: tfds.download.DownloadConfig,
                       ) -> Sequence[tfds.core.SplitInfo]:
    fields = {f.name: getattr(download_config, f.name)
              for f in dataclasses.fields(tfds.download.DownloadConfig)}
    sharded = _ShardedDownloadConfig(**fields, default_num_shards=self.NUM_SHARDS)
    return super()._generate_splits(dl_manager, sharded)  # type: ignore[misc]
