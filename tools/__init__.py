"""Commands run on trained models and prepared data; each is `python -m tools.NAME --help`.

  predict               emotions of the faces in photos
  evaluate              accuracy of a model in any format on one split
  export                SavedModel / TFLite (float16, int8) export
  inspect_dataset       split sizes, class counts and sample faces of the built dataset
  data_service          a tf.data service dispatcher or worker for the trainer
  launch_local_cluster  N local training workers as one multi-worker cluster
  bench/                benchmarks (tools/bench/__init__.py lists them)

Why only commands here: code they share lives where its callers expect it
(trainers.inference, trainers.cli, trainers.files), so tools/ has no library.
Each command defines its absl flags in `define_flags()`, called from its
`__main__` block only, so every module can be imported next to any other.
"""
