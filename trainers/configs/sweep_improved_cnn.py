"""A KerasTuner sweep of improved_cnn on FER2013 that fits a 2-core session (docs/tuning.md).

Command: `python -m tuning.main --config=sweep_improved_cnn`, the same sweep as

    python -m tuning.main --dataset=fer2013 --epochs=3 --batch_size=64 --mixed_precision \
        --augment_strength=0 --tuner=random --max_trials=4 --space_learning_rate=5e-4,3e-3 \
        --project_name=sweep_improved_cnn

then `python -m trainers.main --hparams=runs/tuning/sweep_improved_cnn/best_hparams.json`.
Machine: 2 CPU cores (AMD EPYC, AVX2), no GPU, bfloat16.
Time: about 22 minutes for the 4 trials (with the test suite running beside it).
Result (measured before improved_cnn got its input standardisation, with
`--directory=/tmp/fer_tuning_real`; not yet re-measured): best trial 44.8%
PublicTest vs the untuned improved_cnn trained the same way 41.7% (one seed each).

Why: 3 full epochs at batch 64 are what improved_cnn needs to rank settings
at all on this budget; no augmentation so that the short trials learn fast; the
learning rate searched in 5e-4..3e-3, where the untuned 1e-3 sits.
"""

from __future__ import annotations

from typing import Any


def get_config() -> dict[str, Any]:
  return {
      "dataset": "fer2013",
      "epochs": 3,
      "batch_size": 64,
      "mixed_precision": True,
      "augment_strength": 0.0,
      "tuner": "random",
      "max_trials": 4,
      "space_learning_rate": "5e-4,3e-3",
      "project_name": "sweep_improved_cnn",
  }
