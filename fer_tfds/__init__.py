"""TFDS datasets of fer-tf. `import fer_tfds` registers `fer2013` and `fer2013_synthetic`."""

from fer_tfds import fer2013, fer2013_synthetic

__all__ = ["fer2013", "fer2013_synthetic"]
