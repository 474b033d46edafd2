"""The cheap-to-trace metrics give the numbers of the Keras metrics they replace.

Each of `HistogramAUC`, `SparseMacroAUC`, `ThresholdPrecision`, `ThresholdRecall` and `ThresholdF1Score` is fed the
same batches as its Keras reference: random scores plus scores exactly on Keras' thresholds, exactly 0 and 1 and
outside [0, 1], sample weights with zeros, several `update_state` calls of uneven sizes. Their variables and results
must agree to float rounding. Our own metrics (`PearsonR`, the macro family) are checked against sums by hand.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import (
    HistogramAUC,
    MacroF1,
    MacroPrecision,
    MacroRecall,
    PearsonR,
    PixelAccuracy,
    SparseMacroAUC,
    Task,
    ThresholdF1Score,
    ThresholdPrecision,
    ThresholdRecall,
)

BATCH_SIZES = (17, 1, 64, 30)  # streaming: uneven batches, one of a single example


def hard_scores(rng, shape, num_thresholds=200):
    """Scores that probe the threshold rules: on a threshold exactly, 0, 1, 0.5, below 0 and above 1, and random."""
    on_threshold = rng.integers(0, num_thresholds, size=shape) / (num_thresholds - 1)
    special = rng.choice(np.array([0.0, 1.0, 0.5, -0.25, 1.5, 1e-9, 1 - 1e-7]), size=shape)
    uniform = rng.random(shape)
    pick = rng.integers(0, 3, size=shape)
    return np.choose(pick, [on_threshold, special, uniform]).astype("float32")


def batches(rng, label_shape, score_shape, num_thresholds=200, per_label_weights=False):
    """(labels, scores, sample weights) in uneven batches; about a fifth of the weights are 0, the rest vary."""
    for size in BATCH_SIZES:
        labels = rng.integers(0, 2, size=(size, *label_shape)).astype("float32")
        scores = hard_scores(rng, (size, *score_shape), num_thresholds)
        weight_shape = (size, *label_shape) if per_label_weights else (size,)
        weights = np.where(rng.random(weight_shape) < 0.2, 0.0, rng.random(weight_shape) * 2).astype("float32")
        yield labels, scores, weights


def stream(metric, data, weighted=True):
    for labels, scores, weights in data:
        metric.update_state(labels, scores, sample_weight=weights if weighted else None)
    return metric


def assert_same_state(metric, reference):
    assert [v.name for v in metric.variables] == [v.name for v in reference.variables]
    for ours, theirs in zip(metric.variables, reference.variables, strict=True):
        # Float rounding of sums in another order: Keras' true negatives at -epsilon are `total - count`, which may
        # leave a residue of the totals' last bits where ours are exactly 0.
        rounding = 1e-6 * max(1.0, float(np.max(np.abs(theirs.numpy()))))
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=rounding, err_msg=ours.name)
    np.testing.assert_allclose(metric.result().numpy(), reference.result().numpy(), rtol=1e-5, atol=1e-6)


AUC_CASES = {
    "binary": dict(label_shape=(1,), arguments={}),
    "binary_pr_curve": dict(label_shape=(1,), arguments={"curve": "PR"}),
    "binary_majoring": dict(label_shape=(1,), arguments={"summation_method": "majoring"}),
    "binary_rank_1": dict(label_shape=(), arguments={}),
    "flattened_labels": dict(label_shape=(4,), arguments={}),
    "flattened_with_label_weights": dict(label_shape=(4,), arguments={"label_weights": [1.0, 0.0, 2.0, 0.5]}),
    "multi_label": dict(label_shape=(4,), arguments={"multi_label": True, "num_labels": 4}),
    "multi_label_built_lazily": dict(label_shape=(4,), arguments={"multi_label": True}),
    "multi_label_weighted_labels": dict(label_shape=(4,), arguments={"multi_label": True, "num_labels": 4,
                                                                     "label_weights": [1.0, 0.0, 2.0, 0.5]}),
    "multi_label_pr_curve": dict(label_shape=(4,), arguments={"multi_label": True, "curve": "PR"}),
}


@pytest.mark.parametrize("num_thresholds", [7, 200, 10_000])
@pytest.mark.parametrize("case", sorted(AUC_CASES))
def test_histogram_auc_equals_keras_auc(case, num_thresholds):
    label_shape, arguments = AUC_CASES[case]["label_shape"], AUC_CASES[case]["arguments"]
    data = list(batches(np.random.default_rng(num_thresholds), label_shape, label_shape, num_thresholds))
    ours = stream(HistogramAUC(num_thresholds=num_thresholds, **arguments), data)
    reference = stream(keras.metrics.AUC(num_thresholds=num_thresholds, **arguments), data)
    assert_same_state(ours, reference)


def test_histogram_auc_equals_keras_auc_with_per_label_weights_logits_and_no_weights():
    rng = np.random.default_rng(1)
    data = list(batches(rng, (3,), (3,), per_label_weights=True))
    arguments = {"multi_label": True, "num_labels": 3}
    assert_same_state(stream(HistogramAUC(**arguments), data), stream(keras.metrics.AUC(**arguments), data))
    assert_same_state(stream(HistogramAUC(**arguments), data, weighted=False),
                      stream(keras.metrics.AUC(**arguments), data, weighted=False))
    logits = [(labels, scores * 8 - 4, weights) for labels, scores, weights in data]
    assert_same_state(stream(HistogramAUC(from_logits=True, **arguments), logits),
                      stream(keras.metrics.AUC(from_logits=True, **arguments), logits))


def test_histogram_auc_with_uneven_thresholds_keeps_keras_update():
    data = list(batches(np.random.default_rng(2), (1,), (1,)))
    thresholds = [0.1, 0.3, 0.35, 0.9]
    assert_same_state(stream(HistogramAUC(thresholds=thresholds), data),
                      stream(keras.metrics.AUC(thresholds=thresholds), data))


def test_histogram_auc_counts_by_hand():
    # Thresholds -eps, 0.5, 1+eps. Predicted positive at 0.5 means strictly above it: 0.5 itself is negative there.
    auc = HistogramAUC(num_thresholds=3)
    auc.update_state([1, 1, 0, 0, 1], [0.5, 0.9, 0.2, 1.7, -3.0], sample_weight=[1.0, 2.0, 3.0, 4.0, 0.0])
    # Weighted positives 1 (0.5) + 2 (0.9); negatives 3 (0.2) + 4 (1.7, clipped to 1); the weight-0 one counts 0.
    np.testing.assert_allclose(auc.true_positives.numpy(), [3.0, 2.0, 0.0])
    np.testing.assert_allclose(auc.false_positives.numpy(), [7.0, 4.0, 0.0])
    np.testing.assert_allclose(auc.true_negatives.numpy(), [0.0, 3.0, 7.0])
    np.testing.assert_allclose(auc.false_negatives.numpy(), [0.0, 1.0, 3.0])


@pytest.mark.parametrize("num_thresholds", [200, 10_000])
def test_sparse_macro_auc_equals_keras_multi_label_auc_of_one_hot_labels(num_thresholds):
    rng = np.random.default_rng(3)
    ours = SparseMacroAUC(4, num_thresholds=num_thresholds)
    reference = keras.metrics.AUC(num_thresholds=num_thresholds, multi_label=True, num_labels=4)
    for size in BATCH_SIZES:
        labels = rng.integers(0, 4, size=(size, 1))
        scores = hard_scores(rng, (size, 4), num_thresholds)
        weights = np.where(rng.random(size) < 0.2, 0.0, rng.random(size)).astype("float32")
        ours.update_state(labels, scores, sample_weight=weights)
        reference.update_state(np.eye(4)[labels[:, 0]], scores, sample_weight=weights[:, None])
    assert_same_state(ours, reference)


THRESHOLD_PAIRS = [(ThresholdPrecision, keras.metrics.Precision), (ThresholdRecall, keras.metrics.Recall)]


THRESHOLD_ARGUMENTS = {"default": {}, "zero": {"thresholds": 0.0}, "several": {"thresholds": [0.2, 0.5, 0.9]},
                       "evenly_spaced": {"thresholds": [0.0, 0.5, 1.0]}}
# class_id and top_k choose among several outputs, so only with labels of several columns.
THRESHOLD_CASES = ([(name, arguments, shape) for name, arguments in THRESHOLD_ARGUMENTS.items()
                    for shape in [(1,), (4,)]]
                   + [("class_id", {"class_id": 2}, (4,)), ("top_k", {"top_k": 2}, (4,))])


@pytest.mark.parametrize("pair", THRESHOLD_PAIRS, ids=lambda pair: pair[0].__name__)
@pytest.mark.parametrize("case", THRESHOLD_CASES, ids=lambda case: f"{case[0]}-{len(case[2]) and case[2][0]}")
def test_threshold_precision_and_recall_equal_keras(pair, case):
    _, arguments, label_shape = case
    ours_class, keras_class = pair
    data = list(batches(np.random.default_rng(4), label_shape, label_shape))
    assert_same_state(stream(ours_class(**arguments), data), stream(keras_class(**arguments), data))
    assert_same_state(stream(ours_class(**arguments), data, weighted=False),
                      stream(keras_class(**arguments), data, weighted=False))


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_threshold_f1_score_equals_keras(average, threshold):
    data = list(batches(np.random.default_rng(5), (3,), (3,)))
    arguments = {"average": average, "threshold": threshold}
    assert_same_state(stream(ThresholdF1Score(**arguments), data), stream(keras.metrics.F1Score(**arguments), data))
    assert_same_state(stream(ThresholdF1Score(**arguments), data, weighted=False),
                      stream(keras.metrics.F1Score(**arguments), data, weighted=False))


def test_threshold_f1_score_needs_a_threshold():
    with pytest.raises(ValueError, match="needs a threshold"):
        ThresholdF1Score(threshold=None)


def test_pearson_r_of_several_units_with_weights_by_hand():
    rng = np.random.default_rng(6)
    targets = rng.normal(size=(90, 2))
    predictions = 0.5 * targets + rng.normal(size=(90, 2))
    weights = np.where(rng.random(90) < 0.2, 0.0, rng.random(90))
    metric = PearsonR()
    for start in range(0, 90, 40):
        metric.update_state(targets[start:start + 40], predictions[start:start + 40], weights[start:start + 40])
    w = np.repeat(weights, 2)
    x, y = targets.reshape(-1), predictions.reshape(-1)
    mean_x, mean_y = np.average(x, weights=w), np.average(y, weights=w)
    expected = (np.sum(w * (x - mean_x) * (y - mean_y))
                / np.sqrt(np.sum(w * (x - mean_x) ** 2) * np.sum(w * (y - mean_y) ** 2)))
    assert float(metric.result()) == pytest.approx(expected, abs=1e-9)


def test_macro_metrics_stream_weighted_confusion_by_hand():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=100)
    scores = rng.random((100, 3)).astype("float32")
    weights = np.where(rng.random(100) < 0.2, 0.0, rng.random(100))
    confusion = np.zeros((3, 3))
    np.add.at(confusion, (labels, scores.argmax(axis=1)), weights)
    precision = np.diag(confusion) / confusion.sum(axis=0)
    recall = np.diag(confusion) / confusion.sum(axis=1)
    expected = {MacroPrecision: precision.mean(), MacroRecall: recall.mean(),
                MacroF1: np.mean(2 * precision * recall / (precision + recall))}
    for metric_class, value in expected.items():
        metric = metric_class(3)
        for start in range(0, 100, 33):
            metric.update_state(labels[start:start + 33, None], scores[start:start + 33], weights[start:start + 33])
        np.testing.assert_allclose(metric.confusion.numpy(), confusion, rtol=1e-12)
        assert float(metric.result()) == pytest.approx(value, abs=1e-12), metric_class.__name__


def test_pixel_confusion_spreads_each_example_weight_over_its_pixels():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 3, size=(5, 4, 4))
    scores = rng.random((5, 4, 4, 3)).astype("float32")
    weights = np.array([1.0, 0.0, 2.0, 1.0, 0.5])
    metric = PixelAccuracy(3)
    metric.update_state(labels, scores, sample_weight=weights)
    right = (scores.argmax(axis=-1) == labels).reshape(5, -1).mean(axis=1)
    assert float(metric.result()) == pytest.approx(np.sum(right * weights) / np.sum(weights), abs=1e-12)


def all_new_metrics():
    """(metric, Keras reference or None, label shape, score shape, sparse labels)."""
    return [
        (HistogramAUC(num_thresholds=10_000), keras.metrics.AUC(num_thresholds=10_000), (1,), (1,), False),
        (HistogramAUC(multi_label=True, num_labels=3), keras.metrics.AUC(multi_label=True, num_labels=3),
         (3,), (3,), False),
        (ThresholdPrecision(), keras.metrics.Precision(), (3,), (3,), False),
        (ThresholdRecall(), keras.metrics.Recall(), (1,), (1,), False),
        (ThresholdF1Score(average="macro"), keras.metrics.F1Score(average="macro", threshold=0.5),
         (3,), (3,), False),
        (SparseMacroAUC(3), None, (1,), (3,), True),
        (MacroF1(3), None, (1,), (3,), True),
        (PearsonR(), None, (1,), (1,), False),
    ]


@pytest.mark.parametrize("index", range(len(all_new_metrics())))
def test_inside_tf_function_with_unknown_batch_size_equals_eager(index):
    metric, reference, label_shape, score_shape, sparse = all_new_metrics()[index]
    eager = type(metric).from_config(metric.get_config())
    rng = np.random.default_rng(9)
    update = tf.function(lambda labels, scores, weights: metric.update_state(labels, scores, weights),
                         input_signature=[tf.TensorSpec((None, *label_shape), tf.float32),
                                          tf.TensorSpec((None, *score_shape), tf.float32),
                                          tf.TensorSpec((None,), tf.float32)])
    tracings = []
    for labels, scores, weights in batches(rng, label_shape, score_shape):
        if sparse:
            labels = rng.integers(0, score_shape[-1], size=labels.shape).astype("float32")
        update(labels, scores, weights)
        tracings.append(update.experimental_get_tracing_count())
        eager.update_state(labels, scores, weights)
        if reference is not None:
            reference.update_state(labels, scores, weights)
    # One graph for every batch size (a metric that creates its variables on the first call traces twice then).
    assert tracings == [tracings[0]] * len(tracings)
    assert_same_state(metric, eager)
    if reference is not None:
        assert_same_state(metric, reference)


@pytest.mark.parametrize("index", range(len(all_new_metrics())))
def test_config_round_trip_and_registration(index):
    metric = all_new_metrics()[index][0]
    clone = type(metric).from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(restored) is type(metric) and restored.get_config() == metric.get_config()


def test_reset_state_zeroes_every_variable():
    for metric, _, label_shape, score_shape, _ in all_new_metrics():
        labels = np.zeros((4, *label_shape), "float32")
        metric.update_state(labels, np.full((4, *score_shape), 0.7, "float32"))
        metric.reset_state()
        assert all(not np.any(variable.numpy()) for variable in metric.variables), type(metric).__name__


@pytest.mark.parametrize("kind, expected", [
    ("binary", {"precision": ThresholdPrecision, "recall": ThresholdRecall, "f1": ThresholdF1Score,
                "auc": HistogramAUC}),
    ("multilabel", {"precision": ThresholdPrecision, "f1": ThresholdF1Score, "f1_micro": ThresholdF1Score,
                    "auc": HistogramAUC}),
    ("multiclass", {"auc": SparseMacroAUC}),
])
def test_kinds_default_to_the_cheap_metrics_under_the_same_names(kind, expected):
    task = Task("t", kind, num_classes=None if kind == "binary" else 3)
    built = {metric.name: metric for metric in task.build_metrics()}
    assert tuple(built) == task.metric_names
    for name, metric_class in expected.items():
        assert type(built[name]) is metric_class, name


def test_under_mirrored_strategy_the_replicas_counts_add_up(two_replicas):
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 2, size=(64, 3)).astype("float32")
    scores = hard_scores(rng, (64, 3))
    weights = np.where(rng.random(64) < 0.2, 0.0, 1.0).astype("float32")
    sparse_labels = rng.integers(0, 3, size=(64, 1)).astype("float32")
    with two_replicas.scope():
        distributed = [HistogramAUC(multi_label=True, num_labels=3), ThresholdPrecision(),
                       ThresholdF1Score(average="macro"), SparseMacroAUC(3), PearsonR()]
    single = [type(metric).from_config(metric.get_config()) for metric in distributed]
    data = two_replicas.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((labels, sparse_labels, scores, weights)).batch(16))

    @tf.function
    def update(batch):
        def step(labels, sparse_labels, scores, weights):
            for metric in distributed:
                metric.update_state(sparse_labels if isinstance(metric, SparseMacroAUC) else labels, scores, weights)
        two_replicas.run(step, args=batch)

    for batch in data:
        update(batch)
    for metric in single:
        metric.update_state(sparse_labels if isinstance(metric, SparseMacroAUC) else labels, scores, weights)
    for ours, reference in zip(distributed, single, strict=True):
        np.testing.assert_allclose(ours.result().numpy(), reference.result().numpy(), rtol=1e-5,
                                   err_msg=type(ours).__name__)
