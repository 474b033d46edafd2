"""Tabular features, described once from the training data: what each column is and what the model needs of it.

`describe_features(columns)` reads a dict of columns (or a pandas DataFrame) once and records, per column: for a
categorical column its vocabulary (most frequent first) and embedding width; for a numeric one its mean and variance
(after an optional signed log, for heavy-tailed money columns). The tabular encoder
(`mtl_keras.encoders.tabular`) turns these descriptions into layers.

**Column names** are the user's, any non-empty string (`"education-num"`, `"capital gain"`, `"Ünit.price"`). The
model's inputs and the SavedModel's `serving_default` arguments need names TensorFlow accepts; each is derived from
its column by one rule, `input_name`: accents dropped (Unicode NFKD, then ASCII only), every run of other characters
than letters, digits and `_` replaced by one `_`, leading and trailing `_` removed, and `x_` put before a name that
would start with a digit or be empty. Two columns that end with the same input name are refused, naming both.
`model.predict`, `make_tabular_dataset`, the SavedModel's `serve` and `mtl-keras predict` take the original names.

**Categorical values** are compared as text, by one rule (`category_value`): a string as it is; a whole number as
an integer (`10001` and `10001.0` are the same category); other numbers as Python prints them; booleans as
`"True"`/`"False"`; `None`, NaN and pandas' missing values as the category `MISSING_CATEGORY` (`"<missing>"`),
learned like any other value. A column that holds both strings and numbers is refused, naming it.

Example:

>>> import numpy as np
>>> features = describe_features({"age": np.array([25.0, 40.0, 61.0]), "job": np.array(["a", "b", "a"])})
>>> [(f.name, f.kind) for f in features]
[('age', 'numeric'), ('job', 'categorical')]
>>> features[1].vocabulary
('a', 'b')
>>> input_name("Ünit.price"), input_name("capital gain"), input_name("1st-choice")
('Unit_price', 'capital_gain', 'x_1st_choice')
>>> [category_value(v) for v in ("a", 10001.0, 7, 0.5, None, float("nan"), True)]
['a', '10001', '7', '0.5', '<missing>', '<missing>', 'True']
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

KINDS = ("numeric", "categorical")
MISSING_CATEGORY = "<missing>"  # the category of None, NaN and pandas' NA in a categorical column
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]+")


def input_name(column: str) -> str:
    """The model-input and SavedModel-argument name of a column (see the module docstring for the rule)."""
    ascii_only = unicodedata.normalize("NFKD", column).encode("ascii", "ignore").decode("ascii")
    name = _NOT_NAME.sub("_", ascii_only).strip("_")
    return name if name[:1].isalpha() else f"x_{name}".rstrip("_")


def input_names(columns: Sequence[str]) -> dict[str, str]:
    """`{column: input_name(column)}`, refusing two columns that would share an input name."""
    by_input: dict[str, str] = {}
    for column in columns:
        name = input_name(column)
        if name in by_input:
            raise ValueError(f"Columns {by_input[name]!r} and {column!r} would both be the model input {name!r} "
                             f"(see mtl_keras.datasets.features.input_name); rename one of them.")
        by_input[name] = column
    return {column: name for name, column in by_input.items()}


def _is_missing(value) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return type(value).__name__ in ("NAType", "NaTType")  # pandas' missing values, without importing pandas


def category_value(value) -> str:
    """A categorical value as the model's vocabulary holds it (see the module docstring for the rule)."""
    if _is_missing(value):
        return MISSING_CATEGORY
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _value_type(value) -> str:
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    return type(value).__name__


def category_values(name: str, values: np.ndarray) -> np.ndarray:
    """A column's values as categories (`category_value`), as an object array of str; raises ValueError naming the
    column if it mixes strings and numbers (or other types)."""
    if values.dtype.kind in "US":
        return values.astype(str).astype(object)
    if values.dtype.kind != "O":  # numbers or booleans of one dtype
        return np.array([category_value(v) for v in values.tolist()], dtype=object)
    types = set(map(type, values.tolist()))
    if types == {str}:  # the common case, kept fast
        return values
    present = [v for v in values.tolist() if not _is_missing(v)]
    kinds = {}
    for value in present:
        kinds.setdefault(_value_type(value), value)
    if len(kinds) > 1:
        examples = ", ".join(f"{kind} {value!r}" for kind, value in kinds.items())
        raise ValueError(f"Column {name!r} mixes value types ({examples}); give it values of one type.")
    return np.array([category_value(v) for v in values.tolist()], dtype=object)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input column.

    Args:
        name: the column's name, any non-empty string; the model input is named `input_name(name)`.
        kind: `"numeric"` or `"categorical"`.
        vocabulary: a categorical column's known values (others map to one out-of-vocabulary entry).
        embedding_dim: a categorical column's embedding width.
        mean: a numeric column's mean (after the log, if any).
        variance: a numeric column's variance (after the log, if any).
        log: a numeric column goes through sign(x) * log(1 + |x|) before standardisation.
        bins: a numeric column's quantile bin edges (after the log, if any; increasing, duplicates merged), for the
            piecewise-linear encoding (`mtl_keras.encoders.tabular.PiecewiseLinearEncoding`).
    """

    name: str
    kind: str
    vocabulary: tuple[str, ...] | None = None
    embedding_dim: int | None = None
    mean: float = 0.0
    variance: float = 1.0
    log: bool = False
    bins: tuple[float, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Feature name must be a non-empty string (the column's name), got {self.name!r}.")
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
        if self.bins is not None:
            edges = tuple(float(edge) for edge in self.bins)
            increasing = all(b > a for a, b in zip(edges, edges[1:], strict=False))
            if self.kind != "numeric" or len(edges) < 2 or not increasing or not all(map(math.isfinite, edges)):
                raise ValueError(f"Feature {self.name!r}: bins are a numeric feature's increasing, finite edges "
                                 f"(at least 2), got {self.bins!r}.")
            object.__setattr__(self, "bins", edges)

    @property
    def input_name(self) -> str:
        """The name of the model input (and of the SavedModel's `serving_default` argument) for this column."""
        return input_name(self.name)

    @property
    def dtype(self) -> str:
        """The dtype of the model input (and of the SavedModel's argument) for this column."""
        return "string" if self.kind == "categorical" else "float32"

    def get_config(self) -> dict[str, Any]:
        config = dataclasses.asdict(self)
        config["vocabulary"] = None if self.vocabulary is None else list(self.vocabulary)
        config["bins"] = None if self.bins is None else list(self.bins)
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
        columns = {str(name): _pandas_column(columns[name]) for name in columns.columns}
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


def _pandas_column(series) -> np.ndarray:
    """A pandas column as NumPy: nullable numbers (Int64, Float64) as float64 with NaN for missing values, a
    category column as its values (objects); strings, booleans and the rest as `to_numpy` gives them (missing values
    stay pandas' NA, which `category_value` reads as missing)."""
    dtype = getattr(series, "dtype", None)
    if str(dtype) == "category":
        return series.astype(object).to_numpy()
    if not isinstance(dtype, np.dtype) and getattr(dtype, "kind", "O") in "iuf":
        return series.to_numpy(dtype="float64", na_value=np.nan)
    return series.to_numpy()


def describe_features(
    columns,
    categorical: Iterable[str] | None = None,
    numeric: Iterable[str] | None = None,
    log: Iterable[str] = (),
    exclude: Iterable[str] = (),
    min_count: int = 1,
    embedding_dim: int | Mapping[str, int] | None = None,
    bins: int = 16,
) -> list[Feature]:
    """One `Feature` per column, learned from training data (vocabularies, means and variances).

    Args:
        columns: a dict of 1-D arrays or a pandas DataFrame (the training split only, so nothing leaks), under any
            column names; pandas' string, category, nullable integer and boolean dtypes are read as their values.
        categorical / numeric: column names of each kind; columns listed in neither are typed by dtype (strings,
            objects and booleans categorical, numbers numeric).
        log: numeric columns to pass through sign(x) * log(1 + |x|) first (money, counts with long tails).
        exclude: columns that are not features (labels, weights, ids).
        min_count: values seen fewer times go to the out-of-vocabulary entry.
        embedding_dim: one width for every categorical column, or a width per column name (default: by
            cardinality, see `default_embedding_dim`).
        bins: how many quantile bins to learn per numeric column (edges at the 0, 1/bins, ..., 1 quantiles of its
            training values, duplicates merged: a column with few distinct values gets fewer), for the
            piecewise-linear encoding; 0 for none.
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
            counts = collections.Counter(category_values(name, values).tolist())
            vocabulary = [value for value, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                          if count >= min_count]
            width = embedding_dim.get(name) if isinstance(embedding_dim, Mapping) else embedding_dim
            features.append(Feature(name, "categorical", vocabulary=tuple(vocabulary) or ("",), embedding_dim=width))
        else:
            numbers = _numeric_values(name, values)
            transformed = signed_log1p(numbers) if name in log else numbers
            features.append(Feature(name, "numeric", mean=float(transformed.mean()),
                                    variance=float(transformed.var()), log=name in log,
                                    bins=quantile_edges(transformed, bins)))
    if not features:
        raise ValueError("describe_features: no feature columns left.")
    input_names([feature.name for feature in features])  # two columns for one input name fail here, naming both
    return features


def quantile_edges(values: np.ndarray, bins: int) -> tuple[float, ...] | None:
    """The edges of `bins` quantile bins of `values` (increasing, duplicates merged; float32-exact); None if
    `bins` is 0 or the values are constant.

    >>> quantile_edges(np.array([0.0, 0, 0, 0, 1, 2, 3, 4]), 4)
    (0.0, 0.5, 2.25, 4.0)
    """
    if bins < 0 or isinstance(bins, bool) or not isinstance(bins, int):
        raise ValueError(f"describe_features: bins must be a whole number >= 0, got {bins!r}.")
    if bins == 0:
        return None
    edges = np.unique(np.quantile(np.asarray(values, "float64"), np.linspace(0.0, 1.0, bins + 1)).astype("float32"))
    return tuple(float(edge) for edge in edges) if len(edges) >= 2 else None


def _numeric_values(name: str, values: np.ndarray) -> np.ndarray:
    try:
        numbers = values.astype("float64")
    except (TypeError, ValueError):
        raise ValueError(f"Column {name!r} is declared numeric but holds non-numbers (e.g. {values[0]!r}).") from None
    bad = ~np.isfinite(numbers)
    if bad.any():
        raise ValueError(f"Column {name!r} has a non-finite value at row {int(np.argmax(bad))}; fill or drop it.")
    return numbers
