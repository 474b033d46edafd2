"""Labels, their checks, and missing labels turned into masks.

A missing label is explicit. For classification kinds the sentinel `MISSING` (-1) marks it (a whole row of -1 for
multilabel, a whole map of -1 for segmentation); for any kind an explicit boolean mask (`True` = labelled) may be
given instead. `prepare_labels` checks every label against its task *before* training and returns the labels with
missing entries filled by a harmless value, plus one sample-weight vector per task (1 = labelled, 0 = missing),
which the losses (`mtl_keras.losses.MaskedLoss`) and the weighted metrics use.

Example:

>>> from mtl_keras.tasks import Task
>>> y, weights = prepare_labels([Task("sentiment", "binary")], {"sentiment": [1, -1, 0]})
>>> y["sentiment"].ravel().tolist(), weights["sentiment"].tolist()
([1.0, 0.0, 0.0], [1.0, 0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mtl_keras.tasks import MISSING, Task, as_task_dict


class LabelError(ValueError):
    """A label does not fit its task; the message names the task and what was expected."""


def check_task_names(tasks: Mapping[str, Task], names, what: str) -> None:
    """Raises if `names` mentions a task that does not exist."""
    unknown = sorted(set(names) - set(tasks))
    if unknown:
        raise LabelError(f"{what} name unknown task(s) {unknown}; the tasks are {sorted(tasks)}.")


def _standardize_shape(task: Task, values: np.ndarray) -> np.ndarray:
    if task.spec.pixel_labels:
        if values.ndim == 4 and values.shape[-1] == 1:
            values = values[..., 0]
        if values.ndim != 3:
            raise LabelError(
                f"Task {task.name!r} ({task.kind}) expects labels of shape (examples, height, width) with "
                f"{task.spec.label_description}; got shape {values.shape}."
            )
        return values
    per_example = task.spec.label_shape(task)
    if values.ndim == 1 and per_example == (1,):
        values = values[:, None]
    if values.shape[1:] != per_example:
        raise LabelError(
            f"Task {task.name!r} ({task.kind}) expects labels of shape {per_example} per example "
            f"({task.spec.label_description}); got an array of shape {values.shape}."
        )
    return values


def _present_mask(task: Task, values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    n = values.shape[0]
    present = np.ones(n, dtype=bool)
    if not task.spec.continuous_labels:  # -1 marks a missing label
        per_example = values.reshape(n, -1)
        missing = np.all(per_example == MISSING, axis=1)
        partly = np.any(per_example == MISSING, axis=1) & ~missing
        if np.any(partly):
            raise LabelError(
                f"Task {task.name!r}: example {int(np.argmax(partly))} is only partly missing (-1 in some entries); "
                f"mark a whole example missing or none of it."
            )
        present &= ~missing
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape not in ((n,), (n, 1)) or mask.dtype != bool:
            raise LabelError(f"Task {task.name!r}: the mask must be a boolean array of shape ({n},), got "
                             f"{mask.dtype} {mask.shape}.")
        present &= mask.reshape(n)
    return present


def _check_values(task: Task, values: np.ndarray, present: np.ndarray) -> None:
    if values.dtype.kind not in "biuf":
        raise LabelError(f"Task {task.name!r} expects numeric labels ({task.spec.label_description}); "
                         f"got dtype {values.dtype}.")
    labelled = values[present]
    if task.spec.continuous_labels:
        bad = ~np.isfinite(labelled.reshape(len(labelled), -1)).all(axis=1)
        if np.any(bad):
            index = int(np.flatnonzero(present)[np.argmax(bad)])
            raise LabelError(
                f"Task {task.name!r}: {task.kind} target of example {index} is not finite ({values[index]}); "
                f"mark missing targets with a mask (masks={{{task.name!r}: labelled}}) instead of NaN."
            )
        return
    if not np.all(np.isfinite(labelled)):
        raise LabelError(f"Task {task.name!r}: labels contain NaN or infinity; use {MISSING} for a missing label.")
    if task.spec.sparse_labels and np.any(labelled != np.round(labelled)):
        raise LabelError(f"Task {task.name!r} expects integer class indices; got fractional values.")
    high = task.num_classes_or_two if task.spec.sparse_labels else 2
    out = (labelled < 0) | (labelled >= high)
    if np.any(out):
        raise LabelError(
            f"Task {task.name!r}: label {labelled[out].flat[0]:g} is out of range; expected "
            f"{task.spec.label_description}."
        )


def prepare_task_labels(task: Task, labels, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Checks one task's labels and returns (filled labels, sample weights)."""
    values = np.asarray(labels)
    if values.ndim == 0 or values.shape[0] == 0:
        raise LabelError(f"Task {task.name!r}: no labels (got shape {values.shape}).")
    values = _standardize_shape(task, values)
    present = _present_mask(task, values, mask)
    _check_values(task, values, present)
    filled = np.where(present.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0).astype(task.spec.label_dtype)
    return filled, present.astype("float32")


def prepare_labels(
    tasks: Sequence[Task] | Mapping[str, Task],
    labels: Mapping[str, object],
    masks: Mapping[str, object] | None = None,
    num_examples: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Checks labels for every task and returns `(labels, sample_weights)`, both dicts keyed by task name.

    Raises LabelError naming the task for an unknown or absent task, a wrong shape or dtype, a class index out of
    range, a NaN target, or a number of examples that differs from `num_examples`.
    """
    tasks = as_task_dict(tasks)
    if not isinstance(labels, Mapping):
        raise LabelError(f"Labels must be a dict keyed by task name ({sorted(tasks)}), got {type(labels).__name__}.")
    masks = dict(masks or {})
    check_task_names(tasks, labels, "The labels")
    check_task_names(tasks, masks, "The masks")
    absent = sorted(set(tasks) - set(labels))
    if absent:
        raise LabelError(f"No labels for task(s) {absent}; give every task a label array (use {MISSING} "
                         f"or a mask for examples that lack one).")
    prepared, weights = {}, {}
    for name, task in tasks.items():
        prepared[name], weights[name] = prepare_task_labels(task, labels[name], masks.get(name))
        if num_examples is None:
            num_examples = len(prepared[name])
        if len(prepared[name]) != num_examples:
            raise LabelError(f"Task {name!r} has {len(prepared[name])} labels for {num_examples} examples.")
    return prepared, weights
