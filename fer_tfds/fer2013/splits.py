"""Maps examples to the standard splits, carving missing ones out of train.

`train` = Training, `validation` = PublicTest, `test` = PrivateTest. An input
without usage information (the challenge's `train.csv`, image folders without
`Training_`-style names) gets its missing validation (and test) split carved
out of the unassigned examples: stratified by label, with a fixed seed, so
every build of the same input gives the same split.
"""

from __future__ import annotations

import numpy as np

from .readers import UNKNOWN_USAGE, ExampleTable

SPLIT_OF_USAGE = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
SPLITS = ("train", "validation", "test")
# FER2013's own proportions: 3589 of 35887 examples in each held-out split.
CARVE_FRACTION = 0.1
CARVE_SEED = 2013


def assign_splits(table: ExampleTable) -> tuple[dict[str, np.ndarray], list[str]]:
  """Returns the example indices of each non-empty split, and the carved splits."""
  usages = np.asarray(table.usages, dtype=object)
  split_of = np.array([SPLIT_OF_USAGE.get(u, "") for u in usages], dtype=object)
  unassigned = np.flatnonzero(usages == UNKNOWN_USAGE)
  carved = []
  if unassigned.size:
    present = set(split_of[split_of != ""])
    to_carve = [s for s in ("validation", "test") if s not in present]
    rng = np.random.default_rng(CARVE_SEED)
    for label in np.unique(table.labels[unassigned]):
      members = unassigned[table.labels[unassigned] == label]
      members = members[rng.permutation(members.size)]
      # At least one example per class and carved split, if the class allows.
      take = max(1, round(members.size * CARVE_FRACTION))
      if members.size <= len(to_carve):
        take = 0
      for index, split in enumerate(to_carve):
        split_of[members[index * take : (index + 1) * take]] = split
    split_of[split_of == ""] = "train"
    carved = to_carve
  indices = {s: np.flatnonzero(split_of == s) for s in SPLITS}
  return {s: i for s, i in indices.items() if i.size}, carved
