"""`python -m trainers.models [MODEL...]`: parameters and multiply-adds per image.

Why a command: docs/models.md quotes these figures, and a figure there must sit
next to the command that prints it. Every model is built with random weights (no
download); the default is every registered model, ResNet50 taking a few seconds.
Prints a Markdown table so the output can be pasted as is.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainers import cli
from trainers.models import MODELS, build_model, count_macs


def print_table(names: Sequence[str] = tuple(MODELS)) -> None:
  """One row per model at its default hyperparameters: input, parameters, MACs."""
  print("| model | input | params | MACs |")
  print("|---|---|---:|---:|")
  for name in names:
    spec = MODELS[name]
    model = build_model(name)
    size = f"{spec.image_size}x{spec.image_size}x{spec.channels}"
    print(f"| {name} | {size} | {model.count_params():,} | {count_macs(model) / 1e6:.1f} M |")


def main(argv: list[str]) -> None:
  unknown = [name for name in argv[1:] if name not in MODELS]
  if unknown:
    raise cli.UsageError(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(MODELS)}")
  print_table(argv[1:] or tuple(MODELS))


if __name__ == "__main__":
  cli.run(main, positional=True)
