"""`class_weight="balanced"`: the weights computed from the training labels when training starts.

A task compiled with `Task(class_weight="balanced")` cannot weigh its classes before it has seen its labels. At the
start of `fit` (`MultiTaskModel.fit` with arrays or a dataset, and `fit_distributed`), each such task's labelled
training examples are counted (one pass over a dataset's labels, without the model) and the task becomes one with
explicit weights (`Task.with_balanced_class_weight`): the model's tasks, its compiled losses and its saved config
then carry the numbers, so a reloaded model or a resumed training uses the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf


def resolve_balanced_class_weights(model, y: Mapping | None = None, sample_weight: Mapping | None = None,
                                   dataset: tf.data.Dataset | None = None) -> None:
    """Replaces every `"balanced"` class weight of `model`'s tasks by weights counted from `y` (prepared label
    arrays, with `sample_weight` 0 where a label is missing) or from `dataset`'s label batches."""
    tasks = getattr(model, "tasks", None) or []
    balanced = [task for task in tasks if task.class_weight == "balanced"]
    if not balanced:
        return
    if y is None:
        if dataset is None:
            raise ValueError(f"class_weight='balanced' (tasks {[t.name for t in balanced]}) is computed from the "
                             f"training labels: fit needs them as arrays or as a tf.data.Dataset.")
        y, sample_weight = _labels_of(dataset, [task.name for task in balanced])
    resolved = {task.name: task.with_balanced_class_weight(
        np.asarray(y[task.name]), None if sample_weight is None or sample_weight.get(task.name) is None
        else np.asarray(sample_weight[task.name]).reshape(-1) > 0) for task in balanced}
    model.tasks = [resolved.get(task.name, task) for task in tasks]
    step = getattr(model, "_multitask_step", None)
    if step is not None:
        for name, task in resolved.items():
            step.losses[name].class_weight = task.class_weight_vector
    # Functions traced before (an `evaluate`, say) hold the old weights: trace them again.
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
