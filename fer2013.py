"""`tfds build fer2013`, typed in the repository root, builds fer_tfds's fer2013.

TFDS's CLI resolves a bare name to `./NAME.py` before its registry, and this is
that file: it re-exports the builder (a subclass, which TFDS requires to live
in the module it loads). `--imports fer_tfds` and `cd fer_tfds` keep working.
"""

from fer_tfds.fer2013 import fer2013_dataset_builder


class Builder(fer2013_dataset_builder.Builder):
  """fer_tfds's fer2013 builder, under the name TFDS's CLI looks for in the working directory."""

  name = "fer2013"
  # The dataset card, citation and checksums stay those of fer_tfds/fer2013/.
  pkg_dir_path = fer2013_dataset_builder.Builder._get_pkg_dir_path()
