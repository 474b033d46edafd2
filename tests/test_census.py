from collections import Counter

import numpy as np
import pytest

from mtl_keras.datasets.census import (
    CENSUS_CATEGORICAL,
    CENSUS_COLUMNS,
    CENSUS_NUMERIC,
    census_tasks,
    load_census,
    read_census,
)
from mtl_keras.datasets.splits import Split

# Measured on the bundled files (the official UCI train and test files): records, then positives of each task.
COUNTS = {"train": (199_523, 12_382, 86_485), "test": (99_762, 6_186, 43_143)}


@pytest.mark.parametrize("part", ["train", "test"])
def test_row_counts_dtypes_and_positive_rates(part):
    columns = read_census(part)
    rows, incomes_over_50k, never_married = COUNTS[part]
    assert list(columns) == list(CENSUS_COLUMNS)
    assert {len(values) for values in columns.values()} == {rows}
    assert all(columns[name].dtype == np.float32 for name in (*CENSUS_NUMERIC, "instance_weight"))
    assert all(columns[name].dtype == object and isinstance(columns[name][0], str) for name in CENSUS_CATEGORICAL)
    assert set(columns["income"]) == {"- 50000.", "50000+."}
    assert (columns["income"] == "50000+.").sum() == incomes_over_50k  # 6.2% in both parts
    assert (columns["marital_stat"] == "Never married").sum() == never_married  # 43.3% in both parts
    assert not any(value.startswith(" ") for value in columns["class_of_worker"])


def test_whole_test_file_and_labels_not_among_features():
    splits = load_census()
    assert len(splits.test) == 99_762 and len(splits.train) + len(splits.validation) == 199_523
    assert abs(len(splits.validation) - 19_952) <= 4
    assert splits.test.labels["income"].sum() == 6_186 and splits.test.labels["marital"].sum() == 43_143
    features = set(splits.train.inputs)
    assert features == set(CENSUS_NUMERIC) | set(CENSUS_CATEGORICAL) and len(features) == 39
    assert not features & {"income", "marital_stat", "instance_weight"}
    assert [task.name for task in splits.tasks] == [task.name for task in census_tasks()] == ["income", "marital"]
    assert all(values.dtype == np.int32 for values in splits.train.labels.values())


def row_keys(split, columns=("age", "detailed_occupation_recode", "weeks_worked_in_year", "dividends_from_stocks",
                              "country_of_birth_self", "wage_per_hour")):
    """A multiset of (nearly unique) row keys made of a few feature columns."""
    return Counter(zip(*(split.inputs[name].tolist() for name in columns), strict=True))


def test_validation_is_disjoint_stratified_and_seeded():
    a, b, c = load_census(seed=1), load_census(seed=1), load_census(seed=2)
    train_file = Split({name: read_census("train")[name] for name in a.train.inputs}, {})
    # Train and validation share the rows of the training file out, each row to one of them.
    assert row_keys(a.train) + row_keys(a.validation) == row_keys(train_file)
    for task in ("income", "marital"):
        assert abs(a.train.labels[task].mean() - a.validation.labels[task].mean()) < 0.001
    assert np.array_equal(a.validation.inputs["age"], b.validation.inputs["age"])
    assert not np.array_equal(a.validation.inputs["age"], c.validation.inputs["age"])
    assert np.array_equal(a.test.inputs["age"], c.test.inputs["age"])  # the whole test file, always


def test_limit_keeps_a_stratified_subset_of_both_files():
    splits = load_census(limit=3000, seed=5)
    assert abs(len(splits.train) + len(splits.validation) - 3000) <= 4
    assert abs(len(splits.test) - 1500) <= 4
    for split in (splits.train, splits.test):
        assert abs(split.labels["income"].mean() - 0.062) < 0.005
        assert abs(split.labels["marital"].mean() - 0.433) < 0.005
    assert len(load_census(limit=10**6).test) == 99_762  # a limit above the file's size keeps it whole


def test_take_on_dict_inputs():
    split = load_census(limit=200).train
    picked = split.take(np.array([5, 0, 5]))
    assert len(picked) == 3 and set(picked.inputs) == set(split.inputs)
    assert picked.inputs["education"].tolist() == [split.inputs["education"][i] for i in (5, 0, 5)]
    assert picked.labels["income"].tolist() == [split.labels["income"][i] for i in (5, 0, 5)]
    assert len(split.for_tasks(["marital"])) == len(split)
    with pytest.raises(ValueError, match="1-D columns of equal length"):
        Split({"age": np.zeros(3), "sex": np.zeros(2)}, {})


def test_errors_name_the_rebuild_script_and_the_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="data/build_census.py"):
        read_census("test", path=tmp_path)
    with pytest.raises(ValueError, match="part must be one of"):
        read_census("validation")
    with pytest.raises(ValueError, match="validation_fraction"):
        load_census(validation_fraction=1.0)
    with pytest.raises(ValueError, match="limit"):
        load_census(limit=0)
