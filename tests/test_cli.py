"""The `tfds build` command line, in subprocesses (run concurrently: each costs seconds)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import fer_helpers as helpers
import pytest
import tensorflow_datasets as tfds

from fer_tfds.fer2013 import fake_data

REPO = Path(__file__).resolve().parents[1]
TFDS = Path(sys.executable).parent / "tfds"
KAGGLE_URL = "https://www.kaggle.com/datasets/deadskull7/fer2013"


@pytest.fixture(scope="module")
def cli(rows, tmp_path_factory):
  """Runs the `tfds build` commands at once; returns {name: (rc, stdout, stderr, data_dir)}."""
  if not TFDS.exists():
    pytest.fail(f"{TFDS} not found: the tfds command line is not installed next to python")
  root = tmp_path_factory.mktemp("cli")
  good = root / "good"
  fake_data.write_csv(good / "fer2013.csv", rows)
  bad = root / "bad"
  lines = [helpers.good_line(i % 7, seed=i) for i in range(3)]
  lines += [f"{code},1 2 3,Training" for code in range(7)]  # 7 bad rows: lines 5..11
  helpers.write_bad_csv(bad / "fer2013.csv", lines)
  # An earlier complete build, for a rebuild with the bad input to leave alone.
  helpers.build(good, root / "data_overwrite")
  runs = {
      "imports": (["--imports", "fer_tfds", "--manual_dir", good], root),
      "cwd": (["--manual_dir", good], REPO / "fer_tfds"),
      # The design's literal command, typed in the repository root (./fer2013.py).
      "root": (["--manual_dir", good], REPO),
      # TFDS's flag for the files per split: wins over the builder's default (16).
      "num_shards": (["--manual_dir", good, "--num_shards", "2"], REPO),
      "bad": (["--imports", "fer_tfds", "--manual_dir", bad], root),
      "missing": (["--imports", "fer_tfds", "--manual_dir", root / "no_such_dir"], root),
      # The documented safe rebuild: TFDS's own `--overwrite` deletes the data
      # before the builder runs (README, "Rebuilding").
      "overwrite": (["--imports", "fer_tfds", "--manual_dir", bad, "--download_config",
                     '{"download_mode": "reuse_cache_if_exists"}'], root),
  }
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  procs = {}
  for name, (args, cwd) in runs.items():
    data_dir = root / f"data_{name}"
    command = [str(TFDS), "build", "fer2013", *map(str, args), "--data_dir", str(data_dir)]
    procs[name] = (subprocess.Popen(
        command, cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ), data_dir)
  results = {}
  for name, (proc, data_dir) in procs.items():
    try:
      stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      proc.kill()
      stdout, stderr = proc.communicate()
    results[name] = (proc.returncode, stdout, stderr, data_dir)
  return results


def _assert_built(result, rows, files_per_split=None):
  """Built, loadable, the expected examples; `files_per_split` (default: the builder's
  default of 16, capped at each split's examples: 14, 7, 7) files on disk per split."""
  rc, stdout, stderr, data_dir = result
  assert rc == 0, stderr[-3000:]
  builder = tfds.builder("fer2013", data_dir=str(data_dir))
  helpers.assert_matches(helpers.read_all(builder), helpers.csv_expected(rows))
  expected = files_per_split or {"train": 14, "validation": 7, "test": 7}
  on_disk = {split: len(list(builder.data_path.glob(f"fer2013-{split}.tfrecord-*")))
             for split in expected}
  assert on_disk == expected
  assert {split: builder.info.splits[split].num_shards for split in expected} == expected
  ds = tfds.load("fer2013", data_dir=str(data_dir), split="train", download=False)
  assert len(list(ds)) == 14
  # `tfds build fer2013` builds the default configs only: skip_bad_rows is opt-in.
  assert sorted(p.name for p in (data_dir / "fer2013").iterdir() if p.is_dir()
                and not p.name.startswith(".")) == ["strict"]


def test_build_with_imports(cli, rows):
  """`tfds build fer2013 --imports fer_tfds --manual_dir DIR --data_dir D`; tfds.load reads it."""
  _assert_built(cli["imports"], rows)


def test_build_from_package_dir(cli, rows):
  """`cd fer_tfds && tfds build fer2013 --manual_dir DIR` finds the builder folder and builds."""
  _assert_built(cli["cwd"], rows)


def test_build_from_repository_root(cli, rows):
  """`tfds build fer2013 --manual_dir DIR` in the repository root builds the same dataset, with
  the dataset card (fer_tfds/fer2013/README.md) as its description, not the project README."""
  _assert_built(cli["root"], rows)
  # As written on disk (a loaded builder would show its own code's description instead).
  info = json.loads((cli["root"][3] / "fer2013" / "strict" / "1.0.0" / "dataset_info.json")
                    .read_text())
  description = info["description"]
  card = (REPO / "fer_tfds" / "fer2013" / "README.md").read_text()
  assert description.strip() and description.strip() in card


def test_build_with_num_shards(cli, rows):
  """`tfds build fer2013 --num_shards 2` writes every split in 2 files."""
  _assert_built(cli["num_shards"], rows, {"train": 2, "validation": 2, "test": 2})


def _assert_clean_error(result):
  rc, stdout, stderr, data_dir = result
  assert rc != 0
  assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
  match = re.search(r"^ERROR \(fer2013\): .*$", stderr, re.MULTILINE)
  assert match, stderr[-3000:]
  assert not (data_dir / "fer2013" / "strict" / "1.0.0").exists()
  return stderr[match.start():]


def test_bad_input_clean_error(cli):
  """Bad rows: non-zero exit, one `ERROR (fer2013):` message naming file and lines, no traceback."""
  message = _assert_clean_error(cli["bad"])
  assert re.search(r"^ERROR \(fer2013\): 7 bad row", message)
  assert re.search(r"fer2013\.csv:5\b[^\n]*emotion|fer2013\.csv:5\b[^\n]*pixel", message)
  assert "and 2 more rows have problems" in message
  assert "skip_bad_rows" in message


def test_missing_manual_dir_clean_error(cli):
  """A missing manual dir: non-zero exit, the download instructions, no traceback."""
  message = _assert_clean_error(cli["missing"])
  assert "no_such_dir" in message.splitlines()[0]
  assert KAGGLE_URL in message
  assert "--manual_dir" in message


def test_failed_overwrite_keeps_earlier_build(cli, rows):
  """A rebuild (download_mode reuse_cache_if_exists) with bad input fails cleanly and the
  earlier build still loads."""
  rc, stdout, stderr, data_dir = cli["overwrite"]
  assert rc != 0 and "ERROR (fer2013):" in stderr and "Traceback" not in stderr
  assert (data_dir / "fer2013" / "strict" / "1.0.0").is_dir(), "the earlier build was deleted"
  builder = tfds.builder("fer2013", data_dir=str(data_dir))
  helpers.assert_matches(helpers.read_all(builder), helpers.csv_expected(rows))
