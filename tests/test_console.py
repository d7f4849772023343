"""The main job's console: quiet by default (data, per-epoch lines, a summary), all with -v.

`bash scripts/run.sh` as a user runs it, without FER2013 (FER2013_DIR=none, an
empty --data_dir: the synthetic faces are built on first use), shortened to 2
epochs of 3 steps.
"""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCH_LINE = re.compile(r"^(Epoch \d+/\d+|\d+/\d+ .*(step|ETA).*)$")
MAX_OTHER_LINES = 15


def run_sh(tmp_path, *extra):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["FER2013_DIR"] = "none"
  command = ["bash", str(ROOT / "scripts" / "run.sh"), f"--data_dir={tmp_path / 'tfds'}",
             f"--model_dir={tmp_path / 'run'}", "--epochs=2", "--max_steps_per_epoch=3", *extra]
  return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_run_sh_without_data_is_quiet_and_ends_with_the_summary(tmp_path):
  result = run_sh(tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
  other = [line for line in lines if not EPOCH_LINE.match(line)]
  assert len(other) <= MAX_OTHER_LINES, "\n".join(other)
  assert sum(bool(re.match(r"^Epoch \d+/2$", line)) for line in lines) == 2

  out = result.stdout.strip().splitlines()
  assert any("SYNTHETIC" in line and str(tmp_path / "tfds") in line for line in out)
  done = next(i for i, line in enumerate(out) if line.startswith("Done in "))
  summary = out[done:]
  assert len(summary) == 6, summary  # the summary ends the output
  assert re.match(r"Done in \d+ min \d\d s: validation accuracy \d+\.\d% \(macro F1 "
                  r"\d+\.\d%\), best epoch [12] of 2\.$", summary[0]), summary[0]
  model = tmp_path / "run" / "model.keras"
  assert model.is_file() and f"model:  {model}" in summary[1]
  report = tmp_path / "run" / "report_validation.json"
  assert report.is_file() and str(report) in summary[2]
  assert f"python -m tools.predict PHOTO.jpg --model={model}" in summary[3]
  assert f"python -m tools.export --model={model}" in summary[4]
  assert f"tensorboard --logdir={tmp_path / 'run' / 'logs'}" in summary[5]


def test_verbosity_brings_back_the_logs(tmp_path):
  result = run_sh(tmp_path, "--verbosity=0")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "oneDNN custom operations" in result.stderr or "cuda" in result.stderr
  assert re.search(r"^I\d{4} .*Training fer_net", result.stderr, re.MULTILINE)
