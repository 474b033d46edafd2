import numpy as np
import pytest

from mtl_keras import Task, compute_metrics, delta_m, task_deltas


def test_delta_m_by_hand():
    tasks = [Task("a", "binary", metrics=["accuracy", "f1"]), Task("b", "regression", metrics=["mae"])]
    multi = {"a": {"accuracy": 0.88, "f1": 0.75}, "b": {"mae": 0.9}}
    single = {"a": {"accuracy": 0.80, "f1": 0.75}, "b": {"mae": 1.0}}
    # a: mean(+10%, 0%) = +5%; b: lower is better, mae fell by 10% -> +10%; Δm = mean(5, 10)
    assert task_deltas(tasks, multi, single) == pytest.approx({"a": 5.0, "b": 10.0})
    assert delta_m(tasks, multi, single) == pytest.approx(7.5)


def test_delta_m_refuses_a_zero_reference():
    tasks = [Task("a", "regression", metrics=["mae"])]
    with pytest.raises(ValueError, match="single-task mae is 0"):
        delta_m(tasks, {"a": {"mae": 0.1}}, {"a": {"mae": 0.0}})


def test_compute_metrics_skips_missing_labels():
    tasks = [Task("s", "binary", metrics=["accuracy"]), Task("r", "regression", metrics=["mae"])]
    predictions = {"s": np.array([[0.9], [0.8], [0.1]]), "r": np.array([[1.0], [2.0], [3.0]])}
    labels = {"s": np.array([1, -1, 1]), "r": np.array([1.5, 2.0, np.nan])}
    result = compute_metrics(tasks, predictions, labels, masks={"r": np.array([True, True, False])})
    assert result["s"] == {"accuracy": pytest.approx(0.5), "labelled": 2}
    assert result["r"] == {"mae": pytest.approx(0.25), "labelled": 2}
