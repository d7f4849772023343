"""TFDS datasets of fer-tf. `import fer_tfds` registers `fer2013` with TFDS."""

from fer_tfds import fer2013

__all__ = ["fer2013"]
