r"""Emotions of the faces in photos, with a trained model.

  python -m tools.predict photo.jpg more_photos/ --model=runs/fer_net/model.keras
  python -m tools.predict photos/ --model=model.tflite --json --annotate=/tmp/annotated

Each face is found with OpenCV's Haar cascade, cropped with a margin, made a
48x48 grayscale face like FER2013's and fed to the model through the training
preprocessing (tools.faces, tools.inference). Per face it prints the box
(x, y, width, height in pixels), the emotion and the 7 probabilities; `--json`
prints one JSON object per image instead (JSON Lines). Faces of several images
are classified together in batches; a folder is read one image at a time
(image files only, sorted, subfolders included), so its size does not matter.

A file that cannot be read, is not an image or shows no face is reported (on
stderr, and in --json as an object with "error") and the others go on; the
exit code is 1 when any file failed, 2 for bad flags or a model that cannot be
used, 0 otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags

from tools import cli

_MODEL = flags.DEFINE_string("model", None, "The model: a .keras file, a SavedModel directory "
                             "or a .tflite file (tools.export).")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object per image (JSON Lines).")
_ANNOTATE = flags.DEFINE_string("annotate", None, "Write each image with its faces boxed and "
                                "labelled into this directory.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Faces per model call.", lower_bound=1)
_MARGIN = flags.DEFINE_float("margin", 0.1, "Room added around each detected face, as a "
                             "fraction of its size on every side.", lower_bound=0.0,
                             upper_bound=1.0)
_MIN_FACE = flags.DEFINE_integer("min_face", 30, "Smallest face to look for, in pixels.",
                                 lower_bound=10)
_THREADS = flags.DEFINE_integer("threads", None, "TFLite interpreter threads (default: all "
                                "cores).", lower_bound=1)
EXIT_FAILED = 1


@dataclasses.dataclass
class Item:
  """One input file on its way through: read, detected, waiting for its predictions."""

  path: Path
  annotate_to: Path | None
  error: str | None = None
  image: np.ndarray | None = None
  boxes: list[Any] = dataclasses.field(default_factory=list)
  faces: np.ndarray | None = None


def image_files(arguments: list[str]) -> Iterator[tuple[Path, Path, str | None]]:
  """(file, annotation name, error) per input: named files as they are, folders walked
  (sorted, image suffixes only), a missing path or an empty folder as an error."""
  from tools import faces

  for argument in arguments:
    path = Path(argument)
    if path.is_dir():
      found = False
      for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
          file = Path(root) / name
          if file.suffix.lower() in faces.IMAGE_SUFFIXES:
            found = True
            yield file, Path(path.resolve().name) / file.relative_to(path), None
      if not found:
        yield path, path, "no image files in this folder"
    elif path.exists():
      yield path, Path(path.name), None
    else:
      yield path, path, "no such file or folder"


class Predictor:
  """Reads and detects image by image, classifies faces in batches, reports in input order."""

  def __init__(self, classifier: Any, batch_size: int, margin: float, min_face: int,
               as_json: bool, annotate_dir: str | None) -> None:
    self.classifier = classifier
    self.batch_size = batch_size
    self.margin = margin
    self.min_face = min_face
    self.as_json = as_json
    self.annotate_dir = Path(annotate_dir) if annotate_dir else None
    self.written: set[Path] = set()
    self.pending: list[Item] = []
    self.images = self.faces = self.failed = 0

  def add(self, path: Path, annotate_name: Path, error: str | None) -> None:
    from tools import faces

    item = Item(path, annotate_name if self.annotate_dir else None, error)
    if item.error is None:
      try:
        image = faces.read_image(path)
      except faces.ImageError as e:
        item.error = str(e)
      else:
        gray = faces.to_gray(image)
        item.boxes = faces.detect_faces(gray, min_size=self.min_face)
        if not item.boxes:
          item.error = (f"no face found (the Haar cascade looks for frontal faces at least "
                        f"{self.min_face} px wide; a smaller --min_face finds smaller ones)")
        else:
          item.faces = faces.crop_faces(gray, item.boxes, self.margin)
          item.image = image if self.annotate_dir else None
    self.pending.append(item)
    waiting = sum(len(i.boxes) for i in self.pending)
    if waiting >= self.batch_size or len(self.pending) >= self.batch_size:
      self.flush()

  def flush(self) -> None:
    """Classifies every pending face in batches of `batch_size`, then reports each image."""
    crops = [i.faces for i in self.pending if i.faces is not None]
    probabilities = np.zeros((0, 7), np.float32)
    if crops:
      stacked = np.concatenate(crops)
      probabilities = np.concatenate([
          self.classifier.predict(self.classifier.prepare(stacked[start:start + self.batch_size]))
          for start in range(0, len(stacked), self.batch_size)])
    offset = 0
    for item in self.pending:
      count = len(item.boxes) if item.error is None else 0
      self.report(item, probabilities[offset:offset + count])
      offset += count
    self.pending = []

  def report(self, item: Item, probabilities: np.ndarray) -> None:
    from tools import faces
    from tools.inference import CLASS_NAMES

    self.images += 1
    if item.error is not None:
      self.failed += 1
      print(f"error: {item.path}: {item.error}", file=sys.stderr, flush=True)
      if self.as_json:
        print(json.dumps({"file": str(item.path), "error": item.error}), flush=True)
      return
    self.faces += len(item.boxes)
    labels = [CLASS_NAMES[int(p.argmax())] for p in probabilities]
    records = [{"box": dataclasses.asdict(box), "emotion": label,
                "probabilities": {n: round(float(v), 4) for n, v in zip(CLASS_NAMES, p,
                                                                         strict=True)}}
               for box, label, p in zip(item.boxes, labels, probabilities, strict=True)]
    if self.as_json:
      print(json.dumps({"file": str(item.path), "faces": records}), flush=True)
    else:
      print(f"{item.path}: {len(records)} face{'s' if len(records) > 1 else ''}")
      for number, (box, record) in enumerate(zip(item.boxes, records, strict=True), 1):
        shares = " ".join(f"{n} {v:.3f}" for n, v in record["probabilities"].items())
        print(f"  face {number} at x={box.x} y={box.y} w={box.width} h={box.height}: "
              f"{record['emotion']} ({shares})", flush=True)
    if self.annotate_dir is not None and item.image is not None:
      drawn = faces.annotate(item.image, item.boxes,
                             [f"{label} {p.max():.0%}" for label, p in zip(labels, probabilities,
                                                                             strict=True)])
      faces.write_image(self._annotation_path(item.annotate_to), drawn)

  def _annotation_path(self, name: Path) -> Path:
    """OUT_DIR/name, with _2, _3, ... when two inputs share a name."""
    target = self.annotate_dir / name
    number = 1
    while target in self.written:
      number += 1
      target = self.annotate_dir / name.with_name(f"{name.stem}_{number}{name.suffix}")
    self.written.add(target)
    return target


def main(argv: list[str]) -> int:
  arguments = argv[1:]
  if not _MODEL.value:
    raise cli.UsageError("--model is required: a .keras file, a SavedModel directory or a "
                         ".tflite file")
  if not arguments:
    raise cli.UsageError("no images given: python -m tools.predict IMAGE_OR_DIR... "
                         "--model=PATH")
  from tools import inference  # TensorFlow starts here

  try:
    classifier = inference.load_model(_MODEL.value, threads=_THREADS.value)
  except inference.ModelError as e:
    raise cli.UsageError(f"--model={e}") from None
  predictor = Predictor(classifier, _BATCH_SIZE.value, _MARGIN.value, _MIN_FACE.value,
                        _JSON.value, _ANNOTATE.value)
  for path, annotate_name, error in image_files(arguments):
    predictor.add(path, annotate_name, error)
  predictor.flush()
  print(f"{predictor.images} image(s), {predictor.faces} face(s), {predictor.failed} failed",
        file=sys.stderr)
  return EXIT_FAILED if predictor.failed else 0


if __name__ == "__main__":
  cli.run(main, positional=True)
