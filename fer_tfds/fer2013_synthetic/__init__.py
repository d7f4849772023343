"""The `fer2013_synthetic` TFDS dataset (importing this registers it)."""

from .fer2013_synthetic_dataset_builder import Builder

__all__ = ["Builder"]
