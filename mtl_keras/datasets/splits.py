"""Deterministic, stratified splits of a labelled corpus."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from mtl_keras.seeds import DEFAULT_SEED


@dataclasses.dataclass
class Split:
    """One split: inputs, labels keyed by task name, and optional masks keyed by task name (True = labelled).

    `inputs` is either an array with one row per example, or a dict of feature columns (name -> 1-D array, all of
    the same length).

    >>> split = Split({"age": np.array([30.0, 40.0, 50.0]), "sex": np.array(["F", "M", "F"], dtype=object)},
    ...               {"income": np.array([0, 1, 0])})
    >>> len(split), split.take(np.array([2, 0])).inputs["sex"].tolist()
    (3, ['F', 'F'])
    """

    inputs: np.ndarray | dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.inputs, Mapping):
            shapes = {name: np.shape(values) for name, values in self.inputs.items()}
            if not shapes or any(len(shape) != 1 for shape in shapes.values()) or len(set(shapes.values())) != 1:
                raise ValueError(f"Split inputs given as a dict must be one or more 1-D columns of equal length, "
                                 f"got shapes {shapes}.")

    def __len__(self) -> int:
        if isinstance(self.inputs, Mapping):
            return len(next(iter(self.inputs.values())))
        return len(self.inputs)

    def for_tasks(self, names) -> Split:
        """The same examples with the labels and masks of the named tasks only."""
        names = set(names)
        return Split(self.inputs, {k: v for k, v in self.labels.items() if k in names},
                     {k: v for k, v in self.masks.items() if k in names})

    def sample(self, size: int, seed: int = DEFAULT_SEED) -> Split:
        """A seeded random `size` of the examples, in their original order (the same seed, the same examples; a
        larger size keeps the smaller one's examples).

        >>> Split(np.arange(10), {"y": np.arange(10)}).sample(3, seed=0).inputs.tolist()
        [2, 4, 6]
        """
        if not 1 <= size <= len(self):
            raise ValueError(f"A sample of {size} from a split of {len(self)} examples: give 1 to {len(self)}.")
        order = np.random.default_rng(seed).permutation(len(self))
        return self.take(np.sort(order[:size]))

    def take(self, indices: np.ndarray) -> Split:
        """The examples at `indices`, in that order."""
        if isinstance(self.inputs, Mapping):
            inputs = {name: values[indices] for name, values in self.inputs.items()}
        else:
            inputs = self.inputs[indices]
        return Split(
            inputs,
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
    # No strata at all (an empty corpus): every part is empty.
    return [np.sort(np.concatenate(chunks)) if chunks else np.array([], dtype=int) for chunks in parts]
