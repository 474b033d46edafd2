"""`compile_multitask`: dict losses, dict loss weights and dict metrics, keyed by task name, from the Task table."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.labels import check_task_names
from mtl_keras.tasks import Task, as_task_dict
from mtl_keras.training.model import MultiTaskModel


def _model_output_names(model: keras.Model) -> list[str]:
    structure = model.output
    if not isinstance(structure, Mapping):
        raise ValueError(f"Model {model.name!r} must return a dict of outputs keyed by task name; it returns "
                         f"{type(structure).__name__}.")
    return list(structure)


def _overrides(tasks: Mapping[str, Task], given, what: str) -> dict:
    """The per-task entries a user gave (a dict keyed by task name), or none for 'auto'."""
    if given is None or (isinstance(given, str) and given == "auto"):
        return {}
    if not isinstance(given, Mapping):
        raise TypeError(f"{what} must be 'auto' or a dict keyed by task name ({sorted(tasks)}), got {given!r}.")
    check_task_names(tasks, given, what)
    return dict(given)


def resolve_loss_weights(tasks: Mapping[str, Task], loss_weights: Mapping[str, float] | None) -> dict[str, float]:
    """Each task's weight: `loss_weights[name]` where given, else `Task.weight`; checked to be finite and >= 0."""
    given = _overrides(tasks, loss_weights, "loss_weights")
    weights = {name: given.get(name, task.weight) for name, task in tasks.items()}
    for name, weight in weights.items():
        # numbers.Real takes NumPy's scalars too (np.float32(0.5)); a bool is refused, not read as 0 or 1.
        if isinstance(weight, bool | np.bool_) or not isinstance(weight, numbers.Real) or not 0.0 <= weight < math.inf:
            raise ValueError(f"loss_weights[{name!r}] must be a finite number >= 0, got {weight!r}.")
    return {name: float(weight) for name, weight in weights.items()}


def compile_multitask(
    model: keras.Model,
    tasks: Sequence[Task],
    loss_weights: Mapping[str, float] | None = None,
    optimizer="adam",
    loss: Mapping[str, object] | str = "auto",
    metrics: Mapping[str, Sequence] | str = "auto",
    jit_compile: bool | str = "auto",
    weighting=None,
    gradient=None,
    **compile_kwargs,
) -> keras.Model:
    """Compiles `model` for its tasks and returns it.

    Losses default to each task's kind (wrapped by `MaskedLoss`, so missing labels are left out of the mean);
    metrics default to the kind's metrics and are compiled as *weighted* metrics, so they skip missing labels too.
    `loss`, `metrics` and `loss_weights` may override single tasks: `loss={"intensity": "huber"}`.
    Logs then carry `<task>_loss` and `<task>_<metric>` for each task.

    `weighting` (`"static"` by default, `"uncertainty"`, `"gradnorm"`, `"dwa"`, `"rlw"`, `"famo"` or a `Weighting`)
    and `gradient` (None, `"pcgrad"`, `"cagrad"`, `"mgda"`, `"imtl_g"`, `"nash_mtl"`, `"aligned_mtl"` or a
    `GradientMethod`) choose how the tasks are balanced; see `mtl_keras.training.weighting` and
    `mtl_keras.training.gradients`. Logs then also carry `<task>_weight` and, with a gradient method,
    `cosine_<a>_<b>`.

    `jit_compile="auto"` means XLA on GPUs only (on CPUs it slowed small models down).

    Example:

    >>> from mtl_keras import Task, build_text_model
    >>> tasks = [Task("sentiment", "binary"), Task("intensity", "regression")]
    >>> model = build_text_model(tasks, texts=["good", "bad"], embedding_dim=4, encoder_options={"filters": 2})
    >>> model = compile_multitask(model, tasks, loss_weights={"intensity": 0.5})
    """
    tasks = as_task_dict(tasks)
    outputs = _model_output_names(model)
    if sorted(outputs) != sorted(tasks):
        raise ValueError(f"The model's outputs {sorted(outputs)} and the tasks {sorted(tasks)} differ; "
                         f"each task needs an output of the same name.")
    loss_overrides = _overrides(tasks, loss, "loss")
    metric_overrides = _overrides(tasks, metrics, "metrics")
    for name in loss_overrides:
        tasks[name] = dataclasses.replace(tasks[name], loss=loss_overrides[name])
    for name in metric_overrides:
        tasks[name] = dataclasses.replace(tasks[name], metrics=metric_overrides[name])
    if jit_compile == "auto" and not tf.config.list_physical_devices("GPU"):
        jit_compile = False  # Keras' "auto" would compile with XLA on CPUs too
    if not isinstance(model, MultiTaskModel):
        if weighting is not None or gradient is not None:
            raise TypeError(f"weighting and gradient methods need a MultiTaskModel (what the mtl_keras builders "
                            f"return); got {type(model).__name__}.")
        balancing = {}
    else:
        balancing = {"weighting": weighting, "gradient": gradient}
    model.compile(
        optimizer=optimizer,
        loss={name: task.build_loss() for name, task in tasks.items()},
        loss_weights=resolve_loss_weights(tasks, loss_weights),
        weighted_metrics={name: task.build_metrics() for name, task in tasks.items()},
        jit_compile=jit_compile,
        **balancing,
        **compile_kwargs,
    )
    return model
