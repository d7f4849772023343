"""Issue 13's learning check: device input learns as host input does (8 epochs, 3 seeds each).

Command: each placement in its own work dir (tools.bench.recipe runs the
seeds one after the other and prints mean and spread):

    python -m tools.bench.recipe --config=placement_check --seeds=0,1,2 \
        --work_dir=runs/placement_host --extra=--input=host
    python -m tools.bench.recipe --config=placement_check --seeds=0,1,2 \
        --work_dir=runs/placement_device --extra=--input=device

Machine: 2 CPU cores (Intel Xeon with AMX), no GPU.
Time: about 6.5 minutes a run (373-385 s of training alone on the machine).
Result (code of e9efe29; docs/benchmarks.md, "Input placement"): PublicTest
59.58 +- 0.39% with host input, 59.14 +- 0.68% with device input (3 seeds).

Why these settings: fer_net in mixed precision at batch 256 (the fastest
training on these CPUs), learning rate scaled with the batch (4e-3), a short
cosine schedule after 2 warmup epochs, label smoothing 0.1: 8 epochs are
enough to compare the two placements' accuracy on PublicTest (the only split
read).
"""

from __future__ import annotations

from typing import Any


def get_config() -> dict[str, Any]:
  return {
      "dataset": "fer2013",
      "model": "fer_net",
      "epochs": 8,
      "batch_size": 256,
      "learning_rate": 4e-3,
      "warmup_epochs": 2.0,
      "label_smoothing": 0.1,
      "mixed_precision": True,
  }
