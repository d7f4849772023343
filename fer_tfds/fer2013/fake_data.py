"""Small FER2013-shaped inputs in every accepted format, for tests and dummy_data.

The images are drawn here (seeded noise with a bright oval "face"), never taken
from FER2013. Each writer returns the path it wrote.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .pixels import IMAGE_SIZE
from .readers import EMOTIONS, USAGES


def fake_images(n: int, seed: int = 0) -> np.ndarray:
  """`n` drawn 48x48 grayscale images, shape (n, 48, 48), uint8."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
  face = ((yy - 24) / 20) ** 2 + ((xx - 24) / 15) ** 2 < 1
  images = rng.integers(0, 90, size=(n, IMAGE_SIZE, IMAGE_SIZE))
  images[:, face] += 120
  return images.astype(np.uint8)


def fake_rows(
    n_per_usage: Sequence[int] = (14, 7, 7), seed: int = 0
) -> list[tuple[int, str, np.ndarray]]:
  """`(label, usage, image)` rows: labels cycle through all 7 classes."""
  counts = dict(zip(USAGES, n_per_usage, strict=True))
  images = fake_images(sum(n_per_usage), seed)
  rows = []
  for usage, count in counts.items():
    for _ in range(count):
      rows.append((len(rows) % len(EMOTIONS), usage, images[len(rows)]))
  return rows


def pixel_string(image: np.ndarray) -> str:
  return " ".join(map(str, image.reshape(-1).tolist()))


def csv_bytes(rows: Sequence[tuple[int, str, np.ndarray]], layout: str = "fer2013") -> bytes:
  """The CSV text of `rows` in the `fer2013` (emotion,pixels,Usage), `icml`
  (emotion, Usage, pixels) or `train` (emotion,pixels) layout, as UTF-8 bytes."""
  lines = {
      "fer2013": ["emotion,pixels,Usage"]
      + [f"{label},{pixel_string(img)},{usage}" for label, usage, img in rows],
      "icml": ["emotion, Usage, pixels"]
      + [f"{label},{usage},{pixel_string(img)}" for label, usage, img in rows],
      "train": ["emotion,pixels"] + [f"{label},{pixel_string(img)}" for label, _, img in rows],
  }[layout]
  return ("\n".join(lines) + "\n").encode()


def write_csv(
    path: Path,
    rows: Sequence[tuple[int, str, np.ndarray]],
    layout: str = "fer2013",
) -> Path:
  """Writes `csv_bytes(rows, layout)` to `path`; gzipped when `path` ends in `.gz`."""
  data = csv_bytes(rows, layout)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
  return path


def image_files(
    rows: Sequence[tuple[int, str, np.ndarray]], prefixed: bool = True, suffix: str = ".png"
) -> dict[str, bytes]:
  """`train|test/<emotion>/<name>` -> encoded image, as in the image release."""
  files = {}
  for number, (label, usage, image) in enumerate(rows):
    folder = "train" if usage == "Training" else "test"
    name = f"{usage}_{number}" if prefixed else f"im{number}"
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG" if suffix == ".png" else "JPEG")
    files[f"{folder}/{EMOTIONS[label]}/{name}{suffix}"] = buffer.getvalue()
  return files


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
  for name, data in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
  return root


def write_archive(path: Path, files: dict[str, bytes]) -> Path:
  """A `.zip`, `.tar` or `.tar.gz` of `files` (names are archive members)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.name.endswith(".zip"):
    with zipfile.ZipFile(path, "w") as archive:
      for name, data in files.items():
        archive.writestr(name, data)
  else:
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as archive:
      for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
  return path
