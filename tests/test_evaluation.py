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


def test_roc_auc_by_hand_and_the_streamed_auc_agrees_on_a_rare_class():
    from mtl_keras.evaluation import roc_auc

    # (positive, negative) pairs: 0.9>0.5, 0.9>0.1, 0.5=0.5 (a tie counts 1/2), 0.5>0.1 -> 3.5 of 4.
    assert roc_auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(3.5 / 4)
    rng = np.random.default_rng(0)
    labels = (rng.random(20000) < 0.05).astype("int32")  # 5 % positive, scores crowded near 0 like a real model's
    scores = np.clip(rng.beta(0.3, 12, 20000) + 0.25 * labels * rng.random(20000), 0, 1).astype("float32")
    streamed = compute_metrics([Task("rare", "binary", metrics=["auc"])], {"rare": scores[:, None]},
                               {"rare": labels})["rare"]["auc"]
    assert streamed == pytest.approx(roc_auc(labels, scores), abs=5e-4)
