r"""Writes `dummy_data/` for the builder test: drawn faces, never FER2013 rows.

    python -m fer_tfds.fer2013.dummy_data_generation
"""

from __future__ import annotations

from pathlib import Path

from absl import app

from fer_tfds.fer2013 import fake_data

# Training, PublicTest, PrivateTest rows: every class in train, 7 in each other split.
DUMMY_SPLITS = (14, 7, 7)


def main(argv: list[str]) -> None:
  del argv
  out = Path(__file__).parent / "dummy_data" / "fer2013.csv.gz"
  fake_data.write_csv(out, fake_data.fake_rows(DUMMY_SPLITS, seed=2013))
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
