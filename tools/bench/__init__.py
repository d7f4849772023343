"""Benchmarks: each is a command that measures one claim of the project on this machine.

  python -m tools.bench.build     `tfds build fer2013` and loading it vs the notebook's CSV loop
  python -m tools.bench.encoding  image encodings of the TFDS feature: serialize, size, read
  python -m tools.bench.input     the training input pipeline alone (and via tf.data service)
  python -m tools.bench.placement host CPU time per training image on one core: host vs device input
  python -m tools.bench.shards    reading fer2013's train split written in 1, 4, ..., 64 files
  python -m tools.bench.train     training throughput: our pipeline vs the notebook's numpy path
  python -m tools.bench.tuning    memory and time per trial of a tuning sweep
  python -m tools.bench.plateau   improved_cnn's majority-class plateau: input scale, init
  python -m tools.bench.recipe    a recipe over seeds: time to accuracy, mean and spread

Why a subpackage: tools/ holds the commands a user runs on models and data;
these only measure, and their figures are in docs/benchmarks.md, docs/tuning.md and
docs/models.md.
"""
