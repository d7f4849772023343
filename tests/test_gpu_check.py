"""tools/gpu_check.py --smoke: the GPU check runs end to end on CPU and writes its table."""

import json
import subprocess
import sys
from pathlib import Path

import fer_helpers as helpers
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("fer2013")
  helpers.build_fake_fer2013(root, (56, 14, 14), seed=3)
  return str(root / "tfds")


@pytest.mark.slow
def test_smoke_measures_every_axis_and_writes_json_and_markdown(data_dir, tmp_path):
  out = tmp_path / "check"
  done = subprocess.run(
      [sys.executable, "-m", "tools.gpu_check", "--smoke", f"--out={out}",
       "--dataset=fer2013", f"--data_dir={data_dir}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  record = json.loads((out / "gpu_check.json").read_text())
  assert record["smoke"] and record["gpus"] == 0
  results = record["results"]
  assert [r.get("error") for r in results] == [None] * 6
  assert {r["model"] for r in results} == {"fer_net", "improved_cnn"}
  assert {r["placement"] for r in results} == {"host", "device"}
  assert {r["mixed_precision"] for r in results} == {True, False}
  assert {r["jit_compile"] for r in results} == {True, False}
  for r in results:
    assert r["images_per_s"] > 0 and r["device_batch_images_per_s"] > 0
    assert 0 <= r["input_stall_share"] < 1
  table = (out / "gpu_check.md").read_text()
  assert "SMOKE" in table
  assert table.count("| fer_net | 8 |") == 3 and table.count("| improved_cnn | 8 |") == 3


def test_without_a_gpu_the_full_check_refuses(tmp_path):
  done = subprocess.run([sys.executable, "-m", "tools.gpu_check", f"--out={tmp_path}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2
  assert "no GPU is visible" in done.stderr and "--smoke" in done.stderr
