"""`python -m tools.inspect_dataset` end to end on a tiny built fer2013."""

import subprocess
import sys
from pathlib import Path

import cv2
import fer_helpers as helpers
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
ROWS = (21, 7, 14)  # train, validation, test; labels cycle through the 7 classes


def run_tool(*args):
  return subprocess.run([sys.executable, "-m", "tools.inspect_dataset", *map(str, args)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("inspect")
  helpers.build_fake_fer2013(root, ROWS, seed=7)
  return root / "tfds"


def test_counts_and_sample_grid(data_dir, tmp_path):
  out = tmp_path / "grid" / "samples.png"
  result = run_tool("--dataset=fer2013", f"--data_dir={data_dir}", f"--out={out}",
                    "--per_class=2")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()
          if line.split() and line.split()[0] in ("split", "train", "validation", "test", "all")}
  assert rows["split"] == [*CLASSES, "total"]
  # fake_rows cycles labels 0..6 over the rows in order, so each class has a share of each split.
  assert rows["train"] == ["3"] * 7 + ["21"]
  assert rows["validation"] == ["1"] * 7 + ["7"]
  assert rows["test"] == ["2"] * 7 + ["14"]
  assert rows["all"] == ["6"] * 7 + ["42"]
  assert f"wrote {out}" in result.stdout
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  grid = cv2.imread(str(out))
  assert grid.shape[0] > 400 and grid.shape[1] > 200  # 7 rows of faces


def test_unprepared_dataset_says_how_to_build_it(tmp_path):
  result = run_tool("--dataset=fer2013", f"--data_dir={tmp_path}")
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "tfds build fer2013" in errors[0]
  assert "Traceback" not in result.stderr
