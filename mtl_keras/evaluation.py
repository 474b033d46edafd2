"""Per-task metrics from predictions, and the multi-task gain Δm against single-task baselines.

Metrics are computed with the same metric objects training uses (`Task.build_metrics`), weighted by the label
masks, so a number in `metrics.json` means exactly what the training logs meant.

Δm (Maninis et al. 2019; Vandenhende et al. 2021; as LibMTL reports it) is the mean over tasks of the mean over each
task's metrics of `s * (M_multi - M_single) / |M_single|`, with `s = +1` where higher is better and `-1` otherwise,
in percent. Positive means the multi-task model is better.

Example:

>>> from mtl_keras.tasks import Task
>>> tasks = [Task("a", "binary", metrics=["accuracy"]), Task("b", "regression", metrics=["mae"])]
>>> multi, single = {"a": {"accuracy": 0.9}, "b": {"mae": 0.5}}, {"a": {"accuracy": 0.8}, "b": {"mae": 0.4}}
>>> round(delta_m(tasks, multi, single), 4)  # a: +12.5 %, b: -25 % (MAE rose)
-6.25
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mtl_keras.labels import prepare_labels
from mtl_keras.tasks import Task, as_task_dict


def compute_metrics(
    tasks,
    predictions: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """`{task: {metric: value, ..., "labelled": count}}` over the examples that carry each task's label.

    `tasks` is the model (a `MultiTaskModel` carries its tasks) or the tasks themselves.

    A segmentation task also gets `iou_per_class`: `{class name (or id): IoU}` over every pixel of the labelled
    examples.
    """
    tasks = as_task_dict(tasks)
    labels, weights = prepare_labels(tasks, labels, masks)
    results = {}
    for name, task in tasks.items():
        if name not in predictions:
            raise KeyError(f"No predictions for task {name!r}; got {sorted(predictions)}.")
        values = {}
        for metric in task.build_metrics():
            metric.update_state(labels[name], np.asarray(predictions[name]), sample_weight=weights[name])
            values[metric.name] = float(np.asarray(metric.result()))
        values["labelled"] = int(weights[name].sum())
        if task.spec.evaluation_extras is not None:  # e.g. segmentation's IoU per class
            values.update(task.spec.evaluation_extras(task, labels[name], np.asarray(predictions[name]),
                                                      weights[name]))
        results[name] = values
    return results


def task_deltas(
    tasks: Sequence[Task], multi: Mapping[str, Mapping[str, float]], single: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Per task, the mean signed relative gain (in %) of the multi-task model over its single-task baseline."""
    deltas = {}
    for name, task in as_task_dict(tasks).items():
        gains = []
        for metric in task.metric_names:
            reference = single[name][metric]
            if reference == 0:
                raise ValueError(f"Task {name!r}: the single-task {metric} is 0, so a relative gain is undefined.")
            sign = 1.0 if task.metric_higher_is_better(metric) else -1.0
            gains.append(sign * (multi[name][metric] - reference) / abs(reference))
        deltas[name] = 100.0 * float(np.mean(gains))
    return deltas


def delta_m(
    tasks: Sequence[Task], multi: Mapping[str, Mapping[str, float]], single: Mapping[str, Mapping[str, float]]
) -> float:
    """Δm in percent: the mean over tasks of `task_deltas`."""
    return float(np.mean(list(task_deltas(tasks, multi, single).values())))


def roc_auc(labels, scores) -> float:
    """Exact area under the ROC curve (the Mann-Whitney statistic, ties counted one half).

    Keras' `AUC` metric streams over a fixed grid of thresholds, which is what training needs; a benchmark compared
    with published figures needs the exact value.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"roc_auc: {labels.shape[0]} labels for {scores.shape[0]} scores.")
    positives = labels == 1
    num_positive, num_negative = int(positives.sum()), int((labels == 0).sum())
    if num_positive == 0 or num_negative == 0 or num_positive + num_negative != len(labels):
        raise ValueError("roc_auc: labels must be 0 or 1, with both classes present.")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype="float64")
    # Tied scores share the mean of their ranks.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[positives].sum() - num_positive * (num_positive + 1) / 2.0) / (num_positive * num_negative))
