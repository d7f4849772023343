#!/usr/bin/env bash
# The main job of README.md: set-up; build the fer2013 dataset when a FER2013
# download is found ($FER2013_DIR, ../shared/data/fer2013 or the TFDS manual dir
# ~/tensorflow_datasets/downloads/manual); then train with `python -m
# trainers.main`: on FER2013 when it is built, else on the synthetic faces
# (trainers/data.py logs which). Extra arguments go to trainers.main and win
# over the defaults below (e.g. --epochs=30, --model=vgg_style, --data_dir=DIR).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

# --data_dir, if given, is where fer2013 is built as well as read.
DATA_DIR=""
MODEL_DIR_GIVEN=""
prev=""
for arg in "$@"; do
  case "$arg" in
    --data_dir=*) DATA_DIR="${arg#*=}" ;;
    --model_dir=*) MODEL_DIR_GIVEN=1 ;;
  esac
  case "$prev" in
    --data_dir) DATA_DIR="$arg" ;;
    --model_dir) MODEL_DIR_GIVEN=1 ;;
  esac
  prev="$arg"
done

found=""
# FER2013_DIR=none: do not look for a download (train on what is built, else synthetic faces).
search=("${FER2013_DIR:-}" "$ROOT/../shared/data/fer2013" "$HOME/tensorflow_datasets/downloads/manual")
[ "${FER2013_DIR:-}" = "none" ] && search=()
for dir in "${search[@]}"; do
  if [ -n "$dir" ] && [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "== building fer2013 from $dir (skipped when already built)" >&2
    tfds build fer2013 --imports fer_tfds --manual_dir "$dir" ${DATA_DIR:+--data_dir "$DATA_DIR"}
    found=1
    break
  fi
done
if [ -z "$found" ]; then
  echo "== no FER2013 download found (set FER2013_DIR to the folder that holds it):" \
       "training uses fer2013 if already built, else the synthetic faces" >&2
fi

# The quick-start recipe (trainers/configs/quickstart.py: fer_net, 5 epochs, batch 32,
# runs/quickstart): a few minutes on 2 CPU cores with the synthetic faces. Real
# FER2013 is 4x larger: expect ~4x the time.
MODEL_DIR="runs/quickstart"
args=(--config=quickstart)
if [ -z "$MODEL_DIR_GIVEN" ] && [ -f "$MODEL_DIR/finished.json" ]; then
  echo "== $MODEL_DIR holds a finished quick-start run: replacing it" \
       "(pass --model_dir=DIR to keep runs)" >&2
  args+=(--overwrite)
fi
echo "== training: python -m trainers.main ${args[*]} $*" >&2
exec python -m trainers.main "${args[@]}" "$@"
