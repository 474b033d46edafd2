"""Tabular features, described once from the training data: what each column is and what the model needs of it.

`describe_features(columns)` reads a dict of columns (or a pandas DataFrame) once and records, per column: for a
categorical column its vocabulary (most frequent first) and embedding width; for a numeric one its mean and variance
(after an optional signed log, for heavy-tailed money columns). The tabular encoder
(`mtl_keras.encoders.tabular`) turns these descriptions into layers.

Example:

>>> import numpy as np
>>> features = describe_features({"age": np.array([25.0, 40.0, 61.0]), "job": np.array(["a", "b", "a"])})
>>> [(f.name, f.kind) for f in features]
[('age', 'numeric'), ('job', 'categorical')]
>>> features[1].vocabulary
('a', 'b')
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

KINDS = ("numeric", "categorical")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input column.

    Args:
        name: the column's name; names the model input.
        kind: `"numeric"` or `"categorical"`.
        vocabulary: a categorical column's known values (others map to one out-of-vocabulary entry).
        embedding_dim: a categorical column's embedding width.
        mean: a numeric column's mean (after the log, if any).
        variance: a numeric column's variance (after the log, if any).
        log: a numeric column goes through sign(x) * log(1 + |x|) before standardisation.
    """

    name: str
    kind: str
    vocabulary: tuple[str, ...] | None = None
    embedding_dim: int | None = None
    mean: float = 0.0
    variance: float = 1.0
    log: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"Feature name must be an identifier (letters, digits, _), got {self.name!r}; it names "
                             f"a model input and a SavedModel argument.")
        if self.kind not in KINDS:
            raise ValueError(f"Feature {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}.")
        if self.kind == "categorical":
            if not self.vocabulary:
                raise ValueError(f"Feature {self.name!r}: a categorical feature needs a non-empty vocabulary.")
            object.__setattr__(self, "vocabulary", tuple(str(v) for v in self.vocabulary))
            if self.embedding_dim is None:
                object.__setattr__(self, "embedding_dim", default_embedding_dim(len(self.vocabulary)))
        if not (math.isfinite(self.mean) and math.isfinite(self.variance) and self.variance >= 0):
            raise ValueError(f"Feature {self.name!r}: mean and variance must be finite (variance >= 0).")

    @property
    def dtype(self) -> str:
        """The dtype of the model input (and of the SavedModel's argument) for this column."""
        return "string" if self.kind == "categorical" else "float32"

    def get_config(self) -> dict[str, Any]:
        config = dataclasses.asdict(self)
        config["vocabulary"] = None if self.vocabulary is None else list(self.vocabulary)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Feature:
        return cls(**config)


def default_embedding_dim(cardinality: int) -> int:
    """About 6 * cardinality^(1/4), capped at 16: wide enough for a few hundred values, small for a handful."""
    return int(min(16, max(2, round(6 * (cardinality + 1) ** 0.25))))


def signed_log1p(values):
    return np.sign(values) * np.log1p(np.abs(values))


def column_dict(columns) -> dict[str, np.ndarray]:
    """A dict of 1-D arrays from a dict of columns or a pandas DataFrame."""
    if hasattr(columns, "columns") and hasattr(columns, "__getitem__") and not isinstance(columns, Mapping):
        columns = {str(name): columns[name].to_numpy() for name in columns.columns}
    if not isinstance(columns, Mapping) or not columns:
        raise TypeError(f"Expected a non-empty dict of columns or a pandas DataFrame, got {type(columns).__name__}.")
    arrays = {str(name): np.asarray(values) for name, values in columns.items()}
    lengths = {name: len(values) for name, values in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Columns must have the same length, got {lengths}.")
    for name, values in arrays.items():
        if values.ndim != 1:
            raise ValueError(f"Column {name!r} must be 1-D, got shape {values.shape}.")
    return arrays


def describe_features(
    columns,
    categorical: Iterable[str] | None = None,
    numeric: Iterable[str] | None = None,
    log: Iterable[str] = (),
    exclude: Iterable[str] = (),
    min_count: int = 1,
    embedding_dim: int | Mapping[str, int] | None = None,
) -> list[Feature]:
    """One `Feature` per column, learned from training data (vocabularies, means and variances).

    Args:
        columns: a dict of 1-D arrays or a pandas DataFrame (the training split only, so nothing leaks).
        categorical / numeric: column names of each kind; columns listed in neither are typed by dtype (strings,
            objects and booleans categorical, numbers numeric).
        log: numeric columns to pass through sign(x) * log(1 + |x|) first (money, counts with long tails).
        exclude: columns that are not features (labels, weights, ids).
        min_count: values seen fewer times go to the out-of-vocabulary entry.
        embedding_dim: one width for every categorical column, or a width per column name (default: by
            cardinality, see `default_embedding_dim`).
    """
    arrays = column_dict(columns)
    categorical, numeric, log, exclude = set(categorical or ()), set(numeric or ()), set(log), set(exclude)
    unknown = sorted((categorical | numeric | log | exclude) - set(arrays))
    if unknown:
        raise ValueError(f"describe_features: no column(s) {unknown}; the columns are {sorted(arrays)}.")
    if categorical & numeric:
        raise ValueError(f"describe_features: columns {sorted(categorical & numeric)} are both numeric and "
                         f"categorical.")
    features = []
    for name, values in arrays.items():
        if name in exclude:
            continue
        is_categorical = name in categorical or (name not in numeric and values.dtype.kind not in "iuf")
        if is_categorical:
            if name in log:
                raise ValueError(f"describe_features: log applies to numeric columns; {name!r} is categorical.")
            counts = collections.Counter(values.astype(str).tolist())
            vocabulary = [value for value, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                          if count >= min_count]
            width = embedding_dim.get(name) if isinstance(embedding_dim, Mapping) else embedding_dim
            features.append(Feature(name, "categorical", vocabulary=tuple(vocabulary) or ("",), embedding_dim=width))
        else:
            numbers = _numeric_values(name, values)
            transformed = signed_log1p(numbers) if name in log else numbers
            features.append(Feature(name, "numeric", mean=float(transformed.mean()),
                                    variance=float(transformed.var()), log=name in log))
    if not features:
        raise ValueError("describe_features: no feature columns left.")
    return features


def _numeric_values(name: str, values: np.ndarray) -> np.ndarray:
    try:
        numbers = values.astype("float64")
    except (TypeError, ValueError):
        raise ValueError(f"Column {name!r} is declared numeric but holds non-numbers (e.g. {values[0]!r}).") from None
    bad = ~np.isfinite(numbers)
    if bad.any():
        raise ValueError(f"Column {name!r} has a non-finite value at row {int(np.argmax(bad))}; fill or drop it.")
    return numbers
