"""fer2013 dataset: FER2013 faces (48x48 grayscale, 7 emotions) from a manual download."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from fer_tfds.features import HOMEPAGE, OptInConfigs, face_features
from fer_tfds.sharding import ShardedSplits

from .errors import Fer2013InputError, install_excepthook, problems_error
from .readers import read_source
from .sources import choose_source
from .splits import assign_splits

install_excepthook()

_BACKUP_PREFIX = "previous."


@dataclasses.dataclass
class Fer2013Config(tfds.core.BuilderConfig):
  """`skip_bad_rows`: skip (and record) unusable rows instead of failing."""

  skip_bad_rows: bool = False


class Builder(OptInConfigs, ShardedSplits, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for FER2013: each split in 16 files (fer_tfds/sharding.py)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  # `tfds build fer2013` builds every config in BUILDER_CONFIGS, so the opt-in
  # lenient variant is kept out of it and only built when asked for by name
  # (`--config=skip_bad_rows`, `fer2013/skip_bad_rows`).
  BUILDER_CONFIGS = [
      Fer2013Config(
          name="strict",
          description="Any unusable row or image fails the build (default).",
      ),
  ]
  OPT_IN_CONFIGS = [
      Fer2013Config(
          name="skip_bad_rows",
          description=(
              "Unusable rows and images are skipped; each is logged and listed, "
              "with its reason, in the dataset metadata (`skipped_rows`)."
          ),
          skip_bad_rows=True,
      ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  FER2013 cannot be downloaded automatically (Kaggle needs a login). Download
  ONE of these and put it, as downloaded, into the manual directory
  (`--manual_dir DIR`, default ~/tensorflow_datasets/downloads/manual/):

  * fer2013.csv (columns emotion,pixels,Usage), from
    https://www.kaggle.com/datasets/deadskull7/fer2013
    or the `fer2013.tar.gz` of the challenge download below.
  * icml_face_data.csv (columns emotion, Usage, pixels) or train.csv (columns
    emotion,pixels; no usage, so validation and test are carved out of it), from
    https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge/data
    Its test.csv has no labels and is ignored.
  * the image-folder release train/<emotion>/*.jpg and test/<emotion>/*.jpg,
    from https://www.kaggle.com/datasets/msambare/fer2013

  Files may stay compressed (.csv.gz, .zip, .tar, .tar.gz) or be extracted.
  If several inputs are present, the first of fer2013.csv > icml_face_data.csv
  > image folders > train.csv is used, and the choice is logged.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    # ids: `<csv file>:<line>` or `<train|test>/<emotion>/<file name>`.
    return self.dataset_info_from_configs(
        features=face_features(),
        supervised_keys=("image", "label"),
        homepage=HOMEPAGE,
        metadata=tfds.core.MetadataDict(),
    )

  def download_and_prepare(self, **kwargs):  # noqa: ANN003, ANN201
    """Keeps an earlier complete build until the new one has succeeded.

    In an overwriting download mode (`REUSE_CACHE_IF_EXISTS`,
    `FORCE_REDOWNLOAD`) TFDS deletes the existing data before generating, so a
    bad input would leave nothing. The existing data is moved aside instead
    and restored if the new build fails. (The `tfds build --overwrite` flag
    deletes it before the builder is called; README, "Rebuilding".)
    """
    data_path = epath.Path(self.data_dir)
    backup = data_path.parent / f"{_BACKUP_PREFIX}{data_path.name}"
    if backup.exists() and not data_path.exists():  # an interrupted rebuild
      logging.warning("Restoring the earlier build from %s.", backup)
      backup.rename(data_path)
    download_config = kwargs.get("download_config")
    overwrite = bool(download_config and download_config.download_mode.overwrite_dataset)
    if not (overwrite and data_path.exists()):
      return super().download_and_prepare(**kwargs)
    if backup.exists():
      backup.rmtree()
    data_path.rename(backup)
    try:
      result = super().download_and_prepare(**kwargs)
    except BaseException:
      if data_path.exists():
        data_path.rmtree()
      backup.rename(data_path)
      logging.warning("The rebuild failed; the earlier build in %s is unchanged.", data_path)
      raise
    backup.rmtree()
    return result

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):  # noqa: ANN202
    instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
    source = choose_source(_manual_dir(dl_manager, instructions), instructions)
    table, problems = read_source(source)
    if problems:
      if not self.builder_config.skip_bad_rows:
        raise problems_error(
            problems,
            "Fix or remove these rows, or build with `--config=skip_bad_rows` "
            "(Python: `fer2013/skip_bad_rows`) to skip and record them.",
        )
      for problem in problems:
        logging.warning("Skipping %s", problem)
      logging.warning("Skipped %d unusable rows of %s.", len(problems), source.name)
      if not len(table):
        raise problems_error(problems, f"Every row of {source.name} is unusable: fix the input.")
    splits, carved = assign_splits(table)
    if carved:
      logging.warning(
          "%s has no usage information: carved %s out of the training examples "
          "(stratified, fixed seed).", source.name, " and ".join(carved),
      )
    self.info.metadata.update({
        "source": source.name,
        "source_kind": source.kind.value,
        "carved_splits": carved,
        "skipped_rows": [{"id": p.location, "reason": p.reason} for p in problems],
    })
    return {
        split: self._generate_examples(table.ids, table.images, table.labels, index)
        for split, index in splits.items()
    }

  def _generate_examples(
      self, ids: list[str], images: np.ndarray, labels: np.ndarray, index: np.ndarray
  ) -> Iterator[tuple[str, dict[str, Any]]]:
    for i in index:
      yield ids[i], {"image": images[i], "label": labels[i], "id": ids[i]}


def _manual_dir(dl_manager: tfds.download.DownloadManager, instructions: str) -> Path:
  """The manual dir, or an error that names it and carries the instructions."""
  try:
    manual_dir: Path | None = Path(os.fspath(dl_manager.manual_dir))
  except AssertionError:  # TFDS asserts that it exists; name it in our message.
    configured = getattr(dl_manager, "_manual_dir", None)
    manual_dir = Path(os.fspath(configured)) if configured else None
  if manual_dir is None or not manual_dir.is_dir() or not any(manual_dir.iterdir()):
    raise Fer2013InputError(
        f"the manual directory {manual_dir or '(not set)'} does not exist or is "
        f"empty.\n{instructions}"
    )
  return manual_dir
