r"""Emotions of the faces in photos, with a trained model.

  python -m tools.predict photo.jpg more_photos/ --model=runs/fer_net/model.keras
  python -m tools.predict photos/ --model=model.tflite --json --annotate=/tmp/annotated

Each face is found with OpenCV's Haar cascade, cropped with a margin, made a
48x48 grayscale face like FER2013's and fed to the model through the training
preprocessing (trainers.inference). Per face it prints the box
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

import sys

if __name__ == "__main__":  # before anything loads TensorFlow (trainers/console.py)
  from trainers import console

  console.start(sys.argv)

import dataclasses
import functools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from absl import flags

from trainers import cli, tta

FLAGS = flags.FLAGS
EXIT_FAILED = 1
FACE_SIZE = 48  # FER2013's native face size
CASCADE = "haarcascade_frontalface_default.xml"
# Image files a folder is scanned for; a file named on the command line is always tried.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm",
                            ".ppm", ".pbm", ".jp2"})


def define_flags() -> None:
  """The command's flags: defined when it runs, never at import (any module imports cleanly)."""
  flags.DEFINE_string("model", None, "The model: a .keras file, a SavedModel directory or a "
                      ".tflite file (tools.export).")
  flags.DEFINE_bool("json", False, "Print one JSON object per image (JSON Lines).")
  flags.DEFINE_string("annotate", None, "Write each image with its faces boxed and labelled "
                      "into this directory.")
  flags.DEFINE_integer("batch_size", 64, "Faces per model call.", lower_bound=1)
  flags.DEFINE_float("margin", 0.1, "Room added around each detected face, as a fraction of "
                     "its size on every side.", lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_integer("min_face", 30, "Smallest face to look for, in pixels.", lower_bound=10)
  tta.define_flag()
  flags.DEFINE_integer("threads", None, "TFLite interpreter threads (default: all cores).",
                       lower_bound=1)


# Faces in photos: read an image, find faces with OpenCV's Haar cascade, crop them FER-style.
# Here, not in a module of their own, because this command is their only user.
#
# Why the Haar cascade: it ships inside opencv-python-headless (cv2.data), so prediction works
# offline with no model download, and it is fast on a CPU. FER2013's faces are 48x48 grayscale
# crops with a little room around the face; `crop_faces` reproduces that (square box plus
# `margin`, grayscale, area-averaged down to 48x48 uint8), and the classifier then applies the
# training preprocessing (trainers.data.preprocess_images) to these uint8 faces, exactly as it
# does to FER2013's.


class ImageError(ValueError):
  """A file that cannot be read as an image."""


@dataclasses.dataclass(frozen=True)
class Box:
  """A face's bounding box in the original image's pixels."""

  x: int
  y: int
  width: int
  height: int


@functools.cache
def cascade() -> cv2.CascadeClassifier:
  """The frontal-face Haar cascade of opencv-python-headless, loaded once."""
  path = os.path.join(cv2.data.haarcascades, CASCADE)
  classifier = cv2.CascadeClassifier(path)
  if classifier.empty():
    raise RuntimeError(f"cannot load OpenCV's Haar cascade {path}; reinstall "
                       "opencv-python-headless<5 (OpenCV 5 no longer ships it)")
  return classifier


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
  """The image at `path` as BGR uint8 (H, W, 3); ImageError saying why it cannot be read.

  Decoded from bytes (np.fromfile + imdecode) rather than cv2.imread, so paths
  with non-ASCII characters work and a missing file is told apart from one
  that is not an image.
  """
  try:
    raw = np.fromfile(path, dtype=np.uint8)
  except OSError as e:
    raise ImageError(f"cannot read the file: {e.strerror or e}") from None
  if raw.size == 0:
    raise ImageError("the file is empty")
  image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
  if image is None:
    raise ImageError("not an image OpenCV can decode (JPEG, PNG, BMP, TIFF, WebP, ...)")
  return image


def detect_faces(gray: np.ndarray, min_size: int = 30, max_side: int = 1280,
                 min_neighbors: int = 5) -> list[Box]:
  """Face boxes of a grayscale uint8 image, largest first.

  Large photos are searched on a copy scaled down to `max_side` pixels (the
  cascade's cost grows with the pixel count; a face below 30 px there is too
  small for a 48x48 crop anyway); boxes are returned in full-size pixels.
  """
  scale = min(1.0, max_side / max(gray.shape[:2]))
  small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale,
                                               interpolation=cv2.INTER_AREA)
  found = cascade().detectMultiScale(cv2.equalizeHist(small), scaleFactor=1.1,
                                     minNeighbors=min_neighbors,
                                     minSize=(min_size, min_size))
  boxes = [Box(*(int(round(v / scale)) for v in box)) for box in np.reshape(found, (-1, 4))]
  return sorted(boxes, key=lambda b: (-b.width * b.height, b.y, b.x))


def crop_faces(gray: np.ndarray, boxes: Sequence[Box], margin: float = 0.1) -> np.ndarray:
  """uint8 (N, 48, 48, 1) faces: each box grown by `margin` of its size on every side.

  A grown box that leaves the image is filled by repeating the border pixels,
  so the face stays centred and undistorted.
  """
  faces = np.zeros((len(boxes), FACE_SIZE, FACE_SIZE, 1), np.uint8)
  height, width = gray.shape[:2]
  for i, box in enumerate(boxes):
    side = max(box.width, box.height)
    grown = int(round(side * (1 + 2 * margin)))
    left = box.x + box.width // 2 - grown // 2
    top = box.y + box.height // 2 - grown // 2
    crop = gray[max(top, 0):top + grown, max(left, 0):left + grown]
    pad = (max(-top, 0), max(top + grown - height, 0), max(-left, 0),
           max(left + grown - width, 0))
    if any(pad):
      crop = cv2.copyMakeBorder(crop, *pad, cv2.BORDER_REPLICATE)
    faces[i, :, :, 0] = cv2.resize(crop, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
  return faces


def to_gray(image: np.ndarray) -> np.ndarray:
  return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def annotate(image: np.ndarray, boxes: Sequence[Box], labels: Sequence[str]) -> np.ndarray:
  """A copy of the BGR `image` with each box drawn and its label written above it."""
  out = image.copy()
  thickness = max(1, round(max(image.shape[:2]) / 400))
  font_scale = max(0.4, max(image.shape[:2]) / 1000)
  for box, label in zip(boxes, labels, strict=True):
    cv2.rectangle(out, (box.x, box.y), (box.x + box.width, box.y + box.height), (0, 255, 0),
                  thickness)
    (text_width, text_height), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX,
                                                      font_scale, thickness)
    top = max(box.y - text_height - base - 2, 0)
    cv2.rectangle(out, (box.x, top), (box.x + text_width + 2, top + text_height + base + 2),
                  (0, 255, 0), cv2.FILLED)
    cv2.putText(out, label, (box.x + 1, top + text_height + 1), cv2.FONT_HERSHEY_SIMPLEX,
                font_scale, (0, 0, 0), thickness, cv2.LINE_AA)
  return out


def write_image(path: Path, image: np.ndarray) -> Path:
  """Writes `image` (BGR) to `path`, or to `path` + '.png' if OpenCV cannot write that
  format (e.g. GIF); returns the path written."""
  path.parent.mkdir(parents=True, exist_ok=True)
  ok, encoded = False, None
  try:
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
  except cv2.error:
    ok = False
  if not ok:
    path = path.with_name(path.name + ".png")
    ok, encoded = cv2.imencode(".png", image)
  encoded.tofile(path)
  return path


# The command: files in, one report per image out.


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
  for argument in arguments:
    path = Path(argument)
    if path.is_dir():
      found = False
      for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
          file = Path(root) / name
          if file.suffix.lower() in IMAGE_SUFFIXES:
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
    item = Item(path, annotate_name if self.annotate_dir else None, error)
    if item.error is None:
      try:
        image = read_image(path)
      except ImageError as e:
        item.error = str(e)
      else:
        gray = to_gray(image)
        item.boxes = detect_faces(gray, min_size=self.min_face)
        if not item.boxes:
          item.error = (f"no face found (the Haar cascade looks for frontal faces at least "
                        f"{self.min_face} px wide; a smaller --min_face finds smaller ones)")
        else:
          item.faces = crop_faces(gray, item.boxes, self.margin)
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
    from trainers.inference import CLASS_NAMES

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
      drawn = annotate(item.image, item.boxes,
                       [f"{label} {p.max():.0%}" for label, p in zip(labels, probabilities,
                                                                     strict=True)])
      write_image(self._annotation_path(item.annotate_to), drawn)

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
  if not FLAGS.model:
    raise cli.UsageError("--model is required: a .keras file, a SavedModel directory or a "
                         ".tflite file")
  if not arguments:
    raise cli.UsageError("no images given: python -m tools.predict IMAGE_OR_DIR... "
                         "--model=PATH")
  from trainers import inference  # TensorFlow starts here

  try:
    classifier = inference.load_model(FLAGS.model, threads=FLAGS.threads, tta=FLAGS.tta)
  except inference.ModelError as e:
    raise cli.UsageError(f"--model={e}") from None
  predictor = Predictor(classifier, FLAGS.batch_size, FLAGS.margin, FLAGS.min_face, FLAGS.json,
                        FLAGS.annotate)
  for path, annotate_name, error in image_files(arguments):
    predictor.add(path, annotate_name, error)
  predictor.flush()
  print(f"{predictor.images} image(s), {predictor.faces} face(s), {predictor.failed} failed",
        file=sys.stderr)
  return EXIT_FAILED if predictor.failed else 0


if __name__ == "__main__":
  define_flags()
  cli.run(main, positional=True)
