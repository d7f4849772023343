"""Faces in photos: read an image, find faces with OpenCV's Haar cascade, crop them FER-style.

Why the Haar cascade: it ships inside opencv-python-headless (cv2.data), so
prediction works offline with no model download, and it is fast on a CPU.
FER2013's faces are 48x48 grayscale crops with a little room around the face;
`crop_faces` reproduces that (square box plus `margin`, grayscale, area-averaged
down to 48x48 uint8), and the classifier then applies the training
preprocessing (trainers.data.preprocess_images) to these uint8 faces, exactly
as it does to FER2013's.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

FACE_SIZE = 48  # FER2013's native face size
CASCADE = "haarcascade_frontalface_default.xml"
# Image files a folder is scanned for; a file named on the command line is always tried.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm",
                            ".ppm", ".pbm", ".jp2"})


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
