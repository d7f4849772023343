"""KerasTuner sweeps over the trainer's models: `python -m tuning.main`, `python -m tuning.launch`.

Layout: search_space.py (what is searched, declared once), flags.py (the command
line), hypermodel.py (trials through the trainer's pipelines and builders),
tuners.py (KerasTuner tuners with failure handling and timing), distributed.py
(the chief oracle's gRPC server and the workers' checks), results.py (the files a
sweep writes), main.py and launch.py (entry points). docs/tuning.md is the guide.
"""
