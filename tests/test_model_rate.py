"""tools/bench/model_rate.py: the models' step rate under any Keras backend (JAX on the GPU)."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from absl import app

from tools.bench import model_rate
from trainers.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def test_measure_reports_the_model_it_trained_and_restores_the_policy():
  row = model_rate.measure("fer_net:8", 4, "mixed_bfloat16", steps=2, windows=3, warmup_steps=1)
  assert row["params"] == build_model("fer_net", base_filters=8).count_params()
  assert row["params"] != build_model("fer_net").count_params()
  assert len(row["window_rates"]) == 3
  assert row["images_per_second"] == sorted(row["window_rates"])[1]
  assert row["step_ms"] == pytest.approx(1000 * 4 / row["images_per_second"])
  # The trainer's later models must not inherit the measured precision.
  assert keras.mixed_precision.global_policy().name == "float32"


def test_a_model_entry_that_is_not_name_or_name_colon_width_is_a_usage_error():
  assert model_rate.parse_model("fer_net:32") == ("fer_net", {"base_filters": 32})
  assert model_rate.parse_model("improved_cnn") == ("improved_cnn", {})
  with pytest.raises(app.UsageError, match="fer_net:32"):
    model_rate.parse_model("fer_net:wide")


GUARD = """
import builtins
real_import = builtins.__import__

def guarded(name, globals=None, *args, **kwargs):
  importer = (globals or {}).get("__name__", "")
  if name.split(".")[0] in ("tensorflow", "tensorflow_datasets") and \\
      importer.split(".")[0] in ("trainers", "tools"):
    raise ImportError(f"{importer} imports {name}")
  return real_import(name, globals, *args, **kwargs)

builtins.__import__ = guarded
"""


def test_measures_without_our_code_importing_tensorflow():
  """The GPU machines have JAX and no TensorFlow: nothing of ours on this path may import it
  (Keras itself imports it here, as the backend: the guard stops our modules only)."""
  code = GUARD + (
      "from tools.bench import model_rate\n"
      "row = model_rate.measure('fer_net:8', 4, 'float32', steps=1, windows=1, warmup_steps=1)\n"
      "print(row['params'])\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.split()[-1] == str(build_model("fer_net", base_filters=8).count_params())


def test_smoke_writes_json_and_markdown(tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "tools.bench.model_rate", "--smoke", f"--out={tmp_path}",
       "--models=fer_net:8,improved_cnn", "--precisions=float32"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  record = json.loads((tmp_path / "model_rate.json").read_text())
  assert record["system"]["backend"] == "tensorflow"
  rows = record["rows"]
  assert [(r["model"], r["batch"], r["precision"]) for r in rows] == [
      ("fer_net:8", 8, "float32"), ("improved_cnn", 8, "float32")]
  assert all("error" not in r and r["images_per_second"] > 0 for r in rows)
  table = (tmp_path / "model_rate.md").read_text()
  assert "| improved_cnn | 647,111 | 8 | float32 |" in table
