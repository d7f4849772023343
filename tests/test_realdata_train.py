"""One short training epoch on the real FER2013 release in ../shared/data (skipped when absent)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import fer_helpers as helpers
import numpy as np
import pytest

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO.parent / "shared" / "data" / "fer2013" / "fer2013_images.tar.gz"


def test_short_epoch_on_real_data(tmp_path):
  """Build the real data, train improved_cnn for a short epoch, and get a validation report."""
  if not ARCHIVE.exists():
    pytest.skip(f"{ARCHIVE} not found: the real-data training check needs ../shared/data")
  data_dir = tmp_path / "data"
  helpers.build(ARCHIVE.parent, data_dir)
  model_dir = tmp_path / "run"
  command = [sys.executable, "-m", "trainers.main", "--dataset=fer2013",
             f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--model=improved_cnn",
             "--epochs=1", "--max_steps_per_epoch=40", "--batch_size=64", "--seed=1"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads((model_dir / "report_validation.json").read_text())
  matrix = report["confusion_matrix"]
  assert sum(map(sum, matrix)) == 3589  # every PublicTest example evaluated
  assert np.trace(np.array(matrix)) / 3589 == pytest.approx(report["accuracy"])
  assert not (model_dir / "report_test.json").exists()  # PrivateTest untouched
