import numpy as np

from mtl_keras import load_vader
from mtl_keras.datasets.splits import stratified_split_indices


def test_splits_are_80_10_10_disjoint_and_complete():
    splits = load_vader()
    sizes = [len(splits.train), len(splits.validation), len(splits.test)]
    assert sum(sizes) == 23703
    assert abs(sizes[1] - 2370) <= 12 and abs(sizes[2] - 2370) <= 12
    all_texts = np.concatenate([splits.train.inputs, splits.validation.inputs, splits.test.inputs])
    assert len(all_texts) == 23703


def test_split_is_deterministic_and_seeded():
    a, b, c = load_vader(seed=1), load_vader(seed=1), load_vader(seed=2)
    assert list(a.test.inputs) == list(b.test.inputs)
    assert list(a.test.inputs) != list(c.test.inputs)


def test_tasks_and_missing_sentiment():
    splits = load_vader()
    labels = {k: np.concatenate([getattr(splits, s).labels[k] for s in ("train", "validation", "test")])
              for k in ("sentiment", "intensity", "domain")}
    assert (labels["sentiment"] == -1).sum() == 383  # rating exactly 0
    assert np.all((labels["sentiment"] == 1) == (labels["intensity"] > 0))
    assert np.bincount(labels["domain"]).tolist() == [4200, 10605, 3708, 5190]
    assert [t.name for t in splits.tasks] == ["sentiment", "intensity", "domain"]


def test_stratification_keeps_proportions():
    strata = np.repeat([0, 1, 2], [100, 50, 10])
    train, validation, test = stratified_split_indices(strata, (0.8, 0.1, 0.1), seed=0)
    assert np.bincount(strata[test]).tolist() == [10, 5, 1]
    assert np.bincount(strata[train]).tolist() == [80, 40, 8]
    assert len(set(train) | set(validation) | set(test)) == 160


def test_limit_takes_a_stratified_subset():
    splits = load_vader(limit=500)
    total = len(splits.train) + len(splits.validation) + len(splits.test)
    assert abs(total - 500) <= 12
    assert set(np.unique(splits.train.labels["domain"])) == {0, 1, 2, 3}
