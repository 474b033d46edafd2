"""`compile_multitask`: a convenience over `MultiTaskModel.compile`, and the same for a plain `keras.Model`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from mtl_keras.tasks import Task, as_task_dict
from mtl_keras.training.model import MultiTaskModel
from mtl_keras.training.task_defaults import compile_arguments, resolve_loss_weights

__all__ = ["compile_multitask", "resolve_loss_weights"]


def _model_output_names(model: keras.Model) -> list[str]:
    structure = model.output
    if not isinstance(structure, Mapping):
        raise ValueError(f"Model {model.name!r} must return a dict of outputs keyed by task name; it returns "
                         f"{type(structure).__name__}.")
    return list(structure)


def compile_multitask(
    model: keras.Model,
    tasks: Sequence[Task] | None = None,
    loss_weights: Mapping[str, float] | None = None,
    optimizer="adam",
    loss: Mapping[str, object] | str = "auto",
    metrics: Mapping[str, Sequence] | str = "auto",
    jit_compile: bool | str = "auto",
    weighting=None,
    gradient=None,
    **compile_kwargs,
) -> keras.Model:
    """Compiles `model` for its tasks and returns it: `model.compile(...)` for a `MultiTaskModel` (what the builders
    return; it knows its tasks, so `tasks` may be left out), the same defaults for a plain `keras.Model` with
    dict outputs (which needs `tasks`). Tasks given to a `MultiTaskModel` become its tasks.

    Losses default to each task's kind (wrapped by `MaskedLoss`, so missing labels are left out of the mean);
    metrics default to the kind's metrics and are compiled as *weighted* metrics, so they skip missing labels too.
    `loss`, `metrics` and `loss_weights` may override single tasks: `loss={"intensity": "huber"}`.
    Logs then carry `<task>_loss` and `<task>_<metric>` for each task.

    `weighting` (`"static"` by default, or a name in `mtl_keras.training.weighting.WEIGHTINGS`, or a `Weighting`)
    and `gradient` (None, or a name in `mtl_keras.GRADIENT_METHODS` such as `"pcgrad"`, or a `GradientMethod`)
    choose how the tasks are balanced; see `mtl_keras.training.weighting` and
    `mtl_keras.training.gradients`. Logs then also carry `<task>_weight` and, with a gradient method,
    `cosine_<a>_<b>`.

    `jit_compile="auto"` means XLA on GPUs only (on CPUs it slowed small models down).

    Example:

    >>> from mtl_keras import Task, build_text_model
    >>> tasks = [Task("sentiment", "binary"), Task("intensity", "regression")]
    >>> model = build_text_model(tasks, texts=["good", "bad"], embedding_dim=4, encoder_options={"filters": 2})
    >>> model = compile_multitask(model, loss_weights={"intensity": 0.5})   # or model.compile(loss_weights=...)
    >>> type(model.loss["intensity"]).__name__, model.tasks == tasks
    ('MaskedLoss', True)
    """
    outputs = _model_output_names(model)
    if isinstance(model, MultiTaskModel):
        if tasks is not None:
            model.tasks = list(as_task_dict(tasks).values())  # checked against the outputs
        elif model.tasks is None:
            raise ValueError(f"Model {model.name!r} carries no tasks; pass them: compile_multitask(model, tasks).")
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights,
                      jit_compile=jit_compile, weighting=weighting, gradient=gradient, **compile_kwargs)
        return model
    if weighting is not None or gradient is not None:
        raise TypeError(f"weighting and gradient methods need a MultiTaskModel (what the mtl_keras builders "
                        f"return); got {type(model).__name__}.")
    if tasks is None:
        raise ValueError(f"Model {model.name!r} is a plain keras.Model: pass its tasks, compile_multitask(model, "
                         f"tasks), or build it as mtl_keras.MultiTaskModel(inputs, outputs, tasks=tasks).")
    tasks = as_task_dict(tasks)
    if sorted(outputs) != sorted(tasks):
        raise ValueError(f"The model's outputs {sorted(outputs)} and the tasks {sorted(tasks)} differ; "
                         f"each task needs an output of the same name.")
    if jit_compile == "auto" and not tf.config.list_physical_devices("GPU"):
        jit_compile = False  # Keras' "auto" would compile with XLA on CPUs too
    model.compile(optimizer=optimizer, jit_compile=jit_compile, **compile_arguments(tasks, loss, metrics, loss_weights),
                  **compile_kwargs)
    return model
