"""Procedurally drawn 48x48 faces whose brows, eyes and mouth express the 7 emotions.

This is the embedded default dataset: it lets the whole system run (and a
model clearly beat chance) on a fresh machine without the FER2013 download.
Each face is drawn at 4x resolution with PIL, jittered in pose (rotation,
shift, scale), face shape, lighting and noise, then downsampled to 48x48. The
expression cues are deliberately partial and noisy so that the task is
learnable but not trivial. Nothing here comes from FER2013.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fer_tfds.features import EMOTIONS

SIZE = 48
_SCALE = 4
_CANVAS = SIZE * _SCALE

# Per emotion: brow tilt (inner end up > 0), brow height, eye openness,
# mouth curvature (smile > 0), mouth opening, mouth width, mouth asymmetry.
_EXPRESSIONS = {
    "angry": dict(tilt=-0.5, brow=-0.3, eye=0.55, curve=-0.15, open=0.0, width=0.75, skew=0.0),
    "disgust": dict(tilt=-0.25, brow=-0.15, eye=0.45, curve=-0.35, open=0.15, width=0.8,
                    skew=0.6),
    "fear": dict(tilt=0.45, brow=0.45, eye=1.25, curve=-0.1, open=0.55, width=1.05, skew=0.0),
    "happy": dict(tilt=0.0, brow=0.05, eye=0.8, curve=0.9, open=0.25, width=1.2, skew=0.0),
    "sad": dict(tilt=0.55, brow=0.0, eye=0.7, curve=-0.7, open=0.0, width=0.9, skew=0.0),
    "surprise": dict(tilt=0.1, brow=0.7, eye=1.4, curve=0.0, open=1.0, width=0.7, skew=0.0),
    "neutral": dict(tilt=0.0, brow=0.0, eye=0.85, curve=0.0, open=0.0, width=0.9, skew=0.0),
}


def draw_face(label: int, rng: np.random.Generator) -> np.ndarray:
  """One (48, 48) uint8 face showing emotion `label` (index into EMOTIONS)."""
  cue = {k: v + rng.normal(0, 0.18) for k, v in _EXPRESSIONS[EMOTIONS[label]].items()}
  background = int(rng.integers(20, 120))
  skin = int(rng.integers(130, 230))
  ink = int(max(0, skin - rng.integers(70, 130)))
  image = Image.new("L", (_CANVAS, _CANVAS), background)
  draw = ImageDraw.Draw(image)
  c = _CANVAS / 2
  s = _CANVAS * rng.uniform(0.42, 0.5)  # half face height
  w = s * rng.uniform(0.72, 0.86)  # half face width
  draw.ellipse((c - w, c - s, c + w, c + s), fill=skin)
  line = max(2, int(_SCALE * rng.uniform(0.9, 1.5)))
  eye_y = c - 0.18 * s
  eye_dx = 0.38 * w
  for side in (-1, 1):
    ex = c + side * eye_dx
    ew, eh = 0.16 * w, 0.09 * s * max(0.15, cue["eye"])
    draw.ellipse((ex - ew, eye_y - eh, ex + ew, eye_y + eh), fill=ink)
    # Brows: the inner end (towards the nose) goes up with `tilt`.
    by = eye_y - 0.22 * s - 0.12 * s * cue["brow"]
    inner, outer = ex - side * 0.2 * w, ex + side * 0.22 * w
    draw.line((inner, by - 0.1 * s * cue["tilt"], outer, by + 0.04 * s * cue["tilt"]),
              fill=ink, width=line + 1)
  mouth_y = c + 0.45 * s
  half = 0.3 * w * max(0.3, cue["width"])
  xs = np.linspace(-1, 1, 24)
  curve = -0.12 * s * cue["curve"] * (xs**2 - 0.5) + 0.06 * s * cue["skew"] * xs
  top = [(c + half * x, mouth_y + y) for x, y in zip(xs, curve, strict=True)]
  opening = 0.16 * s * max(0.0, cue["open"])
  if opening > line:
    bottom = [(x, y + opening * (1 - xs[i] ** 2)) for i, (x, y) in enumerate(top)]
    draw.polygon(top + bottom[::-1], fill=ink)
  else:
    draw.line(top, fill=ink, width=line)
  draw.line((c, c - 0.05 * s, c - 0.05 * w, c + 0.2 * s), fill=max(0, skin - 40), width=line)

  # Supersampled once more, then one affine map does rotation, zoom and shift.
  image = image.filter(ImageFilter.BoxBlur(_SCALE / 2))
  image = image.transform((SIZE, SIZE), Image.AFFINE, _pose(rng), Image.BILINEAR,
                          fillcolor=background)
  image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.8)))
  pixels = np.asarray(image, dtype=np.float32)
  gradient = np.linspace(-1, 1, SIZE)[None, :] * rng.uniform(-35, 35)
  noise = rng.normal(0, rng.uniform(3, 12), pixels.shape)
  pixels = pixels * rng.uniform(0.7, 1.2) + gradient + noise
  return np.clip(pixels, 0, 255).astype(np.uint8)


def draw_faces(labels: np.ndarray, seed: int) -> np.ndarray:
  """Faces for `labels`, shape (n, 48, 48, 1); the same seed gives the same faces."""
  rng = np.random.default_rng(seed)
  return np.stack([draw_face(int(label), rng) for label in labels])[..., None]


def _pose(rng: np.random.Generator) -> tuple[float, ...]:
  """Affine map from 48x48 output pixels to canvas pixels: a random pose."""
  angle = np.deg2rad(rng.uniform(-15, 15))
  step = _SCALE / rng.uniform(0.9, 1.12)  # canvas pixels per output pixel
  cos, sin = np.cos(angle) * step, np.sin(angle) * step
  cx, cy = _CANVAS / 2 + rng.uniform(-0.06, 0.06, size=2) * _CANVAS
  half = SIZE / 2
  return (cos, -sin, cx - cos * half + sin * half, sin, cos, cy - sin * half - cos * half)
