"""What a model's tasks decide at compile time: each task's loss, metrics and weight, with per-task overrides.

`MultiTaskModel.compile` fills its losses and metrics from here (keras-hub style: `loss="auto"`, `metrics="auto"`,
or a dict that overrides single tasks), and so does `compile_multitask` for a plain `keras.Model`.

Example:

>>> from mtl_keras.tasks import Task
>>> tasks = {"a": Task("a", "binary"), "b": Task("b", "regression", weight=2.0)}
>>> arguments = compile_arguments(tasks, loss={"b": "huber"}, metrics="auto", loss_weights=None)
>>> arguments["loss_weights"], [m.name for m in arguments["weighted_metrics"]["b"]]
({'a': 1.0, 'b': 2.0}, ['mae', 'rmse', 'pearson_r'])
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping

import numpy as np

from mtl_keras.labels import check_task_names
from mtl_keras.tasks import Task


def is_auto(value) -> bool:
    return value is None or (isinstance(value, str) and value == "auto")


def _overrides(tasks: Mapping[str, Task], given, what: str) -> dict:
    """The per-task entries a user gave: none for 'auto', a dict keyed by task name as given, and anything else (one
    loss or one list of metrics) for every task."""
    if is_auto(given):
        return {}
    if not isinstance(given, Mapping):
        return {name: given for name in tasks}
    check_task_names(tasks, given, what)
    return dict(given)


def resolve_loss_weights(tasks: Mapping[str, Task], loss_weights: Mapping[str, float] | None) -> dict[str, float]:
    """Each task's weight: `loss_weights[name]` where given, else `Task.weight`; checked to be finite and >= 0."""
    if loss_weights is not None and not isinstance(loss_weights, Mapping):
        raise TypeError(f"loss_weights must be a dict keyed by task name ({sorted(tasks)}), got {loss_weights!r}.")
    given = _overrides(tasks, loss_weights, "loss_weights")
    weights = {name: given.get(name, task.weight) for name, task in tasks.items()}
    for name, weight in weights.items():
        # numbers.Real takes NumPy's scalars too (np.float32(0.5)); a bool is refused, not read as 0 or 1.
        if isinstance(weight, bool | np.bool_) or not isinstance(weight, numbers.Real) or not 0.0 <= weight < math.inf:
            raise ValueError(f"loss_weights[{name!r}] must be a finite number >= 0, got {weight!r}.")
    return {name: float(weight) for name, weight in weights.items()}


def tasks_with_overrides(tasks: Mapping[str, Task], loss="auto", metrics="auto") -> dict[str, Task]:
    """The tasks with the losses and metrics a user gave in place of their kind's defaults."""
    tasks = dict(tasks)
    for name, override in _overrides(tasks, loss, "loss").items():
        tasks[name] = dataclasses.replace(tasks[name], loss=override)
    for name, override in _overrides(tasks, metrics, "metrics").items():
        tasks[name] = dataclasses.replace(tasks[name], metrics=override)
    return tasks


def compile_arguments(tasks: Mapping[str, Task], loss="auto", metrics="auto", loss_weights=None) -> dict:
    """`keras.Model.compile`'s `loss`, `loss_weights` and `weighted_metrics` for `tasks`, keyed by task name.

    Losses are wrapped by `MaskedLoss` (missing labels are left out of the mean); metrics are *weighted* metrics, so
    they skip missing labels too.
    """
    tasks = tasks_with_overrides(tasks, loss, metrics)
    return {
        "loss": {name: task.build_loss() for name, task in tasks.items()},
        "loss_weights": resolve_loss_weights(tasks, loss_weights),
        "weighted_metrics": {name: task.build_metrics() for name, task in tasks.items()},
    }
