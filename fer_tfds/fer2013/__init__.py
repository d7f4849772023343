"""The `fer2013` TFDS dataset (importing this registers it)."""

from .fer2013_dataset_builder import Builder

__all__ = ["Builder"]
