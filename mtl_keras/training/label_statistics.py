"""What a task learns from its training labels when training starts: "balanced" class weights and the mean and
spread of a standardized target.

`Task(class_weight="balanced")` cannot weigh its classes, nor `Task(standardize_target=True)` scale its target,
before it has seen its labels. At the start of `fit` (`MultiTaskModel.fit` with arrays or a dataset, and
`fit_distributed`), each such task's labelled training examples are read (one pass over a dataset's labels, without
the model) and the task becomes one with explicit numbers (`Task.with_balanced_class_weight`,
`Task.with_target_statistics`): the model's tasks, its compiled losses, the standardized head's weights and its
saved config then carry them, so a reloaded model or a resumed training uses the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.heads import TaskHead
from mtl_keras.tasks import Task


def _pending(task: Task) -> bool:
    return task.class_weight == "balanced" or task.standardize_target is True


def standardized_head(model: keras.Model, task: Task) -> TaskHead:
    """The head that returns `task`'s standardized target in the user's units; fails, naming the task, if the model
    has none (a model built otherwise than by the builders)."""
    try:
        head = model.get_layer(task.name)
    except ValueError:
        head = None
    if not isinstance(head, TaskHead) or not head.standardized:
        raise ValueError(f"Task {task.name!r} has standardize_target set, but model {model.name!r} has no "
                         f"standardized head for it to return outputs in the target's units: end the output with "
                         f"mtl_keras.TaskHead.for_task(task) (the builders do), or leave standardize_target off.")
    return head


def check_standardized_heads(model: keras.Model, tasks) -> None:
    """Fails before training if a task standardizes its target without a head that undoes the scaling."""
    for task in tasks or []:
        if task.standardize_target is not False:
            standardized_head(model, task)


def resolve_label_statistics(model, y: Mapping | None = None, sample_weight: Mapping | None = None,
                             dataset: tf.data.Dataset | None = None) -> None:
    """Replaces every `"balanced"` class weight and every `standardize_target=True` of `model`'s tasks by the
    numbers read from `y` (prepared label arrays, with `sample_weight` 0 where a label is missing) or from
    `dataset`'s label batches."""
    tasks = getattr(model, "tasks", None) or []
    pending = [task for task in tasks if _pending(task)]
    if not pending:
        return
    if y is None:
        if dataset is None:
            raise ValueError(f"class_weight='balanced' and standardize_target=True (tasks "
                             f"{[t.name for t in pending]}) are computed from the training labels: fit needs them "
                             f"as arrays or as a tf.data.Dataset.")
        y, sample_weight = _labels_of(dataset, [task.name for task in pending])
    resolved = {}
    for task in pending:
        labels = np.asarray(y[task.name])
        present = (None if sample_weight is None or sample_weight.get(task.name) is None
                   else np.asarray(sample_weight[task.name]).reshape(-1) > 0)
        resolved[task.name] = task.with_balanced_class_weight(labels, present).with_target_statistics(labels, present)
    model.tasks = [resolved.get(task.name, task) for task in tasks]
    step = getattr(model, "_multitask_step", None)
    for name, task in resolved.items():
        if task.target_statistics is not None:
            standardized_head(model, task).set_target_statistics(*task.target_statistics)
        if step is not None:
            for option, value in task.loss_options().items():
                setattr(step.losses[name], option, value)
    # Functions traced before (an `evaluate`, say) hold the old numbers: trace them again.
    model.train_function = model.test_function = None


def _labels_of(dataset: tf.data.Dataset, names: list[str]) -> tuple[dict, dict]:
    labels, weights = {name: [] for name in names}, {name: [] for name in names}
    for batch in dataset:
        _, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        for name in names:
            labels[name].append(np.asarray(y[name]))
            present = (np.ones(len(y[name])) if sample_weight is None or sample_weight.get(name) is None
                       else np.asarray(sample_weight[name]).reshape(-1))
            weights[name].append(present)
    return ({name: np.concatenate(values) for name, values in labels.items()},
            {name: np.concatenate(values) for name, values in weights.items()})
