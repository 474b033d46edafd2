import numpy as np
import pytest

from mtl_keras import MacroF1, MacroPrecision, MacroRecall, PearsonR, SparseMacroAUC


def test_pearson_r_streams_exactly_and_honours_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 0.7 * x + rng.normal(size=200)
    metric = PearsonR()
    for start in range(0, 200, 32):  # uneven batches: a batch-mean of correlations would differ
        metric.update_state(x[start:start + 32, None], y[start:start + 32, None])
    assert float(metric.result()) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)

    weights = (np.arange(200) % 3 != 0).astype("float32")
    metric.reset_state()
    metric.update_state(x[:, None], y[:, None], sample_weight=weights)
    kept = weights > 0
    assert float(metric.result()) == pytest.approx(np.corrcoef(x[kept], y[kept])[0, 1], abs=1e-9)


def test_pearson_r_of_constant_predictions_is_zero_not_nan():
    metric = PearsonR()
    metric.update_state([[1.0], [2.0]], [[3.0], [3.0]])
    assert float(metric.result()) == 0.0


def test_macro_metrics_against_a_hand_computed_confusion_matrix():
    # true:      0 0 0 1 1 2      predicted: 0 1 0 1 2 2
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 0, 1, 2, 2])
    probabilities = np.eye(3)[predicted] * 0.8 + 0.2 / 3
    # class 0: P=2/2, R=2/3; class 1: P=1/2, R=1/2; class 2: P=1/2, R=1/1
    precision = np.mean([1.0, 0.5, 0.5])
    recall = np.mean([2 / 3, 0.5, 1.0])
    f1 = np.mean([2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5])
    for metric_class, expected in ((MacroPrecision, precision), (MacroRecall, recall), (MacroF1, f1)):
        metric = metric_class(3)
        metric.update_state(labels[:, None], probabilities)
        assert float(metric.result()) == pytest.approx(expected, abs=1e-9), metric_class.__name__


def test_macro_metrics_skip_zero_weight_examples():
    metric = MacroF1(2)
    metric.update_state([[0], [1], [1]], [[0.9, 0.1], [0.2, 0.8], [0.9, 0.1]], sample_weight=[1.0, 1.0, 0.0])
    assert float(metric.result()) == pytest.approx(1.0)


def test_sparse_macro_auc_matches_pairwise_ranking():
    labels = np.array([0, 0, 1, 1, 2, 2])
    scores = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.6, 0.2], [0.5, 0.3, 0.2],
                       [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]])

    def one_vs_rest_auc(c):
        positives = scores[labels == c, c]
        negatives = scores[labels != c, c]
        pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
        return np.mean(pairs)

    metric = SparseMacroAUC(3, num_thresholds=2001)
    metric.update_state(labels, scores)
    expected = np.mean([one_vs_rest_auc(c) for c in range(3)])
    assert float(metric.result()) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("metric", [PearsonR(), MacroF1(4), MacroPrecision(4), MacroRecall(4), SparseMacroAUC(4)])
def test_metric_config_round_trip(metric):
    clone = type(metric).from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
