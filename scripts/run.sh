#!/usr/bin/env bash
# The main job of README.md: set-up, then build the fer2013 dataset from the
# FER2013 download found in $FER2013_DIR, ../shared/data/fer2013 or the TFDS
# manual dir (~/tensorflow_datasets/downloads/manual). Extra arguments go to
# `tfds build` (e.g. --data_dir DIR, --config skip_bad_rows, --overwrite).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
for dir in "${FER2013_DIR:-}" "$ROOT/../shared/data/fer2013" "$HOME/tensorflow_datasets/downloads/manual"; do
  if [ -n "$dir" ] && [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "== building fer2013 from $dir" >&2
    exec tfds build fer2013 --imports fer_tfds --manual_dir "$dir" "$@"
  fi
done
echo "No FER2013 download found. Set FER2013_DIR to the folder that holds it:" >&2
exec tfds build fer2013 --imports fer_tfds --manual_dir "$HOME/tensorflow_datasets/downloads/manual" "$@"
