"""Deterministic, stratified splits of a labelled corpus."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mtl_keras.seeds import DEFAULT_SEED


@dataclasses.dataclass
class Split:
    """One split: inputs, labels keyed by task name, and optional masks keyed by task name (True = labelled)."""

    inputs: np.ndarray
    labels: dict[str, np.ndarray]
    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)

    def for_tasks(self, names) -> Split:
        """The same examples with the labels and masks of the named tasks only."""
        names = set(names)
        return Split(self.inputs, {k: v for k, v in self.labels.items() if k in names},
                     {k: v for k, v in self.masks.items() if k in names})

    def take(self, indices: np.ndarray) -> Split:
        return Split(
            self.inputs[indices],
            {name: values[indices] for name, values in self.labels.items()},
            {name: values[indices] for name, values in self.masks.items()},
        )


@dataclasses.dataclass
class Splits:
    """Train, validation and test splits and the tasks they are labelled for."""

    train: Split
    validation: Split
    test: Split
    tasks: list


def stratified_split_indices(
    strata: Sequence, fractions: Sequence[float], seed: int = DEFAULT_SEED
) -> list[np.ndarray]:
    """Indices of each part, with every stratum shared among the parts in the given fractions.

    The result depends only on `strata`, `fractions` and `seed`. Each part's indices are sorted.
    """
    strata = np.asarray(strata)
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1, got {list(fractions)}.")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for stratum in sorted(set(strata.tolist())):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        bounds = np.round(np.cumsum(fractions) * len(members)).astype(int)
        for part, (start, stop) in enumerate(zip(np.concatenate([[0], bounds[:-1]]), bounds, strict=True)):
            parts[part].append(members[start:stop])
    return [np.sort(np.concatenate(chunks)) for chunks in parts]
