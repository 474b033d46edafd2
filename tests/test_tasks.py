import keras
import pytest

from mtl_keras import HIGHER_IS_BETTER, KINDS, Task


@pytest.mark.parametrize(
    "task, activation, units",
    [
        (Task("a", "binary"), "sigmoid", 1),
        (Task("a", "multiclass", num_classes=5), "softmax", 5),
        (Task("a", "multilabel", num_classes=7), "sigmoid", 7),
        (Task("a", "regression"), "linear", 1),
        (Task("a", "regression", units=4), "linear", 4),
        (Task("a", "segmentation", num_classes=11), "softmax", 11),
    ],
)
def test_kind_decides_activation_and_units(task, activation, units):
    assert task.activation == activation
    assert task.output_units == units


def test_default_metrics_per_kind():
    assert Task("a", "binary").metric_names == ("accuracy", "precision", "recall", "f1", "auc")
    assert Task("a", "multiclass", num_classes=3).metric_names == ("accuracy", "precision", "recall", "f1", "auc")
    assert Task("a", "regression").metric_names == ("mae", "rmse", "pearson_r")
    assert "mean_iou" in Task("a", "segmentation", num_classes=3).metric_names


def test_every_table_metric_has_a_direction():
    for spec in KINDS.values():
        for name in spec.metrics:
            assert name in HIGHER_IS_BETTER
    assert Task("a", "regression").metric_higher_is_better("mae") is False
    assert Task("a", "binary").metric_higher_is_better("auc") is True


def test_built_metrics_are_named_like_the_table():
    task = Task("d", "multiclass", num_classes=4)
    assert [m.name for m in task.build_metrics()] == list(task.metric_names)


def test_custom_metric_needs_its_direction():
    task = Task("a", "regression", metrics=["mae", keras.metrics.MeanSquaredLogarithmicError(name="msle")])
    with pytest.raises(KeyError, match="msle"):
        task.metric_higher_is_better("msle")
    task = Task("a", "regression", metrics=[keras.metrics.MeanSquaredLogarithmicError(name="msle")],
                higher_is_better={"msle": False})
    assert task.metric_higher_is_better("msle") is False


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "bad name", "kind": "binary"}, "identifier"),
        ({"name": "a", "kind": "ranking"}, "kind must be one of"),
        ({"name": "a", "kind": "multiclass"}, "num_classes >= 2"),
        ({"name": "a", "kind": "binary", "num_classes": 3}, "2 classes"),
        ({"name": "a", "kind": "regression", "num_classes": 3}, "no num_classes"),
        ({"name": "a", "kind": "binary", "units": 2}, "regression tasks only"),
        ({"name": "a", "kind": "binary", "weight": -1.0}, "weight must be >= 0"),
        ({"name": "a", "kind": "multiclass", "num_classes": 3, "class_names": ["x"]}, "class_names"),
        ({"name": "a", "kind": "binary", "metrics": ["iou"]}, "unknown metric 'iou'"),
    ],
)
def test_bad_task_specifications(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Task(**kwargs)


def test_config_round_trip_with_objects():
    task = Task("topic", "multiclass", num_classes=3, loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")],
                weight=0.5, class_names=["a", "b", "c"], higher_is_better={"top2": True})
    clone = Task.from_config(task.get_config())
    assert clone.get_config() == task.get_config()
    assert clone.metric_names == ("accuracy", "top2")
    assert [m.name for m in clone.build_metrics()] == ["accuracy", "top2"]
