"""What the tasks of a multi-task model share, by graph and by variables, and each task's loss.

**By graph** (walking the functional graph from each task's output). A tensor serves the tasks whose outputs depend
on it. The *shared representation* is the set of tensors that serve two or more tasks and are read by an operation
that serves fewer (a task head, an MMoE gate's mixture, a tower): every gradient from a task's loss to the shared
weights crosses it. MGDA-UB and the representation-space gradient methods take their gradients there, and GradNorm
measures its norms on the layers just below it (`last_shared_layers`).

**By variables** (from gradient connectivity). A variable is *shared* when two or more tasks' losses reach it,
*task-specific* when exactly one task's loss does, and *unconnected* when none does. The partition is read from
`tape.gradient` (None for a variable a loss does not depend on), not from layer names, so it holds for any way of
sharing: a hard-shared trunk, MMoE experts (shared) beside their per-task gates (task-specific), a cascade whose
first head feeds the next task (that head is then shared). Gradient methods and task affinity start from
`task_gradients` and `partition_variables`.

**Each task's loss** (`masked_task_losses`): the one per-task loss that the train step, `task_losses` (task
affinity, label statistics) and evaluation compute, a global masked mean under tf.distribute.

Example:

>>> import keras
>>> inputs = keras.Input((3,))
>>> shared = keras.layers.Dense(4, name="trunk")(inputs)
>>> model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(shared),
...                              "b": keras.layers.Dense(1, name="b")(shared)})
>>> [tensor.name for tensor in shared_representation(model)] == [shared.name]
True
>>> [layer.name for layer in last_shared_layers(model)]
['trunk']
>>> gradients = {"a": [1.0, None, 2.0], "b": [3.0, 4.0, None]}   # one entry per variable; None = not reached
>>> shared_variable_mask(gradients)
[True, False, False]
>>> partition = partition_variables(gradients)
>>> partition.shared, partition.task_specific, partition.unconnected
((0,), {'a': (2,), 'b': (1,)}, ())
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from mtl_keras import keras_compat
from mtl_keras.losses import MaskedLoss

SUM = tf.distribute.ReduceOp.SUM


# --- by graph --------------------------------------------------------------------------------------------------------
def _node(tensor):
    return keras_compat.producing_node(tensor)


def _task_outputs(model: keras.Model) -> dict[str, object]:
    if not isinstance(model.output, Mapping):
        raise ValueError(f"Model {model.name!r} must return a dict of outputs keyed by task name.")
    return dict(model.output)


def tensor_tasks(model: keras.Model) -> tuple[dict[int, frozenset], dict[int, object]]:
    """For every tensor of the graph (by id): the tasks whose outputs depend on it, and the tensor itself."""
    tasks_of: dict[int, set] = {}
    tensors: dict[int, object] = {}
    for task, output in _task_outputs(model).items():
        stack, seen = [output], set()
        while stack:
            tensor = stack.pop()
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            tensors[id(tensor)] = tensor
            tasks_of.setdefault(id(tensor), set()).add(task)
            stack.extend(_node(tensor).input_tensors)
    return {key: frozenset(value) for key, value in tasks_of.items()}, tensors


def shared_representation(model: keras.Model) -> list:
    """The float tensors (not model inputs) that serve several tasks and feed an operation serving fewer."""
    tasks_of, tensors = tensor_tasks(model)
    input_ids = {id(tensor) for tensor in model.inputs}
    frontier = []
    for tensor in tensors.values():
        node = _node(tensor)
        produced = [tasks_of[id(out)] for out in node.output_tensors if id(out) in tasks_of]
        for source in node.input_tensors:
            source_tasks = tasks_of[id(source)]
            if (len(source_tasks) >= 2 and any(tasks < source_tasks for tasks in produced)
                    and id(source) not in input_ids and "float" in str(source.dtype)
                    and all(id(known) != id(source) for known in frontier)):
                frontier.append(source)
    return frontier


def last_shared_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers with a trainable weight matrix (a kernel) nearest above the shared representation, searching
    upwards past layers without one (pooling, dropout, concatenation, normalisation)."""
    found, seen = [], set()
    stack = list(shared_representation(model))
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        node = _node(tensor)
        layer = node.operation
        if any(len(weight.shape) >= 2 for weight in getattr(layer, "trainable_weights", [])):
            if layer not in found:
                found.append(layer)
        else:
            stack.extend(node.input_tensors)
    return found


# --- by variables ----------------------------------------------------------------------------------------------------
def _check_lengths(gradients_per_task: Mapping[str, Sequence]) -> int:
    if not gradients_per_task:
        raise ValueError("gradients_per_task is empty; expected {task name: one gradient (or None) per variable}.")
    lengths = {name: len(gradients) for name, gradients in gradients_per_task.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Every task needs one gradient (or None) per variable, in the same order; got lengths "
                         f"{lengths}.")
    return next(iter(lengths.values()))


def shared_variable_mask(gradients_per_task: Mapping[str, Sequence[object | None]]) -> list[bool]:
    """For each variable, whether the gradients of two or more tasks reach it (are not None).

    Args:
        gradients_per_task: `{task: [gradient or None, one per variable]}`, the variables in the same order for every
            task (as `tape.gradient(loss, variables)` returns them).

    Example:

    >>> shared_variable_mask({"a": [1.0, None], "b": [2.0, 3.0]})
    [True, False]
    """
    count = _check_lengths(gradients_per_task)
    return [sum(gradients[k] is not None for gradients in gradients_per_task.values()) >= 2 for k in range(count)]


@dataclasses.dataclass(frozen=True)
class VariablePartition:
    """Indices of the variables (in the order the gradients were given) that the tasks share, that belong to one
    task, and that no task's loss reaches."""

    shared: tuple[int, ...]
    task_specific: dict[str, tuple[int, ...]]
    unconnected: tuple[int, ...]

    def paths(self, variables: Sequence) -> dict:
        """The same partition as variable paths, e.g. `{"shared": ["dense/kernel", ...], "task_specific": {...}}`."""
        def names(indices):
            return [variables[k].path for k in indices]

        return {"shared": names(self.shared),
                "task_specific": {task: names(indices) for task, indices in self.task_specific.items()},
                "unconnected": names(self.unconnected)}


def partition_variables(gradients_per_task: Mapping[str, Sequence[object | None]]) -> VariablePartition:
    """Splits the variables into shared, task-specific and unconnected ones by which tasks' gradients reach them.

    Example:

    >>> partition_variables({"a": [1.0, None], "b": [2.0, None]})
    VariablePartition(shared=(0,), task_specific={'a': (), 'b': ()}, unconnected=(1,))
    """
    count = _check_lengths(gradients_per_task)
    reached_by = [[task for task, gradients in gradients_per_task.items() if gradients[k] is not None]
                  for k in range(count)]
    return VariablePartition(
        shared=tuple(k for k in range(count) if len(reached_by[k]) >= 2),
        task_specific={task: tuple(k for k in range(count) if reached_by[k] == [task])
                       for task in gradients_per_task},
        unconnected=tuple(k for k in range(count) if not reached_by[k]),
    )


# --- each task's loss ------------------------------------------------------------------------------------------------
def as_masked_loss(loss) -> MaskedLoss:
    """`loss` as a `MaskedLoss` (its per-example values, averaged over the labelled examples)."""
    return loss if isinstance(loss, MaskedLoss) else MaskedLoss(keras.losses.get(loss) if isinstance(loss, str)
                                                                 else loss)


def masked_task_losses(losses: Mapping[str, MaskedLoss], y: Mapping, y_pred: Mapping, sample_weight=None,
                       context: tf.distribute.ReplicaContext | None = None) -> list[tf.Tensor]:
    """The one definition of a task's loss: for each task of `losses` (in its order), the mean of its per-example
    loss over the examples whose label is present (sample weight 1; 0 when none is), as this replica's share of the
    global mean under `context` (the example count is summed over the replicas; its sum over replicas is then the
    mean over every replica's labelled examples). Without a context (one device, or outside a replica), the mean over
    this batch.

    A list, not a stacked tensor: a slice of a stack would connect every task's loss to every head, and the
    shared parameters are found by which variables each task's loss reaches.
    """
    sums, counts = [], []
    for name, loss in losses.items():
        values = tf.reshape(tf.cast(loss.call(y[name], y_pred[name]), tf.float32), [-1])
        weights = _task_weight(sample_weight, name, values)
        sums.append(tf.reduce_sum(values * weights))
        counts.append(tf.reduce_sum(weights))
    counts = tf.stack(counts)
    if context is not None:
        counts = context.all_reduce(SUM, counts)
    return [tf.math.divide_no_nan(total, count) for total, count in zip(sums, tf.unstack(counts), strict=True)]


def task_losses(model: keras.Model, y: Mapping, y_pred: Mapping, sample_weight: Mapping | None = None
                ) -> dict[str, tf.Tensor]:
    """Each task's loss, unweighted, as the training step computes it (`masked_task_losses`, with the loss the
    model was compiled with, `model.loss[task]`): the mean over the examples whose label is present (0, not NaN,
    when none is); inside a replica of a strategy, that replica's share of the global mean.

    Loss weights and losses added by layers (`add_loss`) are left out: they belong to no single task.

    Example:

    >>> import numpy as np
    >>> from mtl_keras import Task, compile_multitask
    >>> inputs = keras.Input((2,))
    >>> model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs)})
    >>> model = compile_multitask(model, [Task("a", "regression")])
    >>> y = {"a": np.array([[1.0], [2.0]], "float32")}
    >>> losses = task_losses(model, y, {"a": np.array([[1.0], [0.0]], "float32")}, {"a": np.array([1.0, 0.0])})
    >>> float(losses["a"])
    0.0
    """
    if not isinstance(model.loss, Mapping):
        raise ValueError(f"Model {model.name!r} must be compiled with one loss per task (a dict keyed by task name, "
                         f"as compile_multitask does); its loss is {model.loss!r}.")
    losses = {name: as_masked_loss(loss) for name, loss in model.loss.items()}
    # Inside a replica of a strategy: that replica's share of the global mean, as in the training step.
    context = None if tf.distribute.in_cross_replica_context() else tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync == 1:
        context = None
    return dict(zip(losses, masked_task_losses(losses, y, y_pred, sample_weight, context), strict=True))


def _task_weight(sample_weight, name, values):
    if sample_weight is None:
        return tf.ones_like(values)
    weights = sample_weight[name] if isinstance(sample_weight, Mapping) else sample_weight
    if weights is None:
        return tf.ones_like(values)
    return tf.reshape(tf.cast(weights, tf.float32), [-1])


def task_gradients(model: keras.Model, x, y: Mapping, sample_weight: Mapping | None = None,
                   variables: Sequence | None = None, training: bool = True
                   ) -> tuple[dict[str, tf.Tensor], dict[str, list[tf.Tensor | None]]]:
    """Each task's loss (`task_losses`) on one batch and its gradient with respect to `variables` (default: the
    model's trainable variables), None where the task's loss does not reach a variable.

    Returns `(losses, gradients)`, both keyed by task name. Wrap it in `tf.function` for speed; None gradients come
    back as None.

    Example:

    >>> import numpy as np
    >>> from mtl_keras import Task, compile_multitask
    >>> inputs = keras.Input((2,))
    >>> trunk = keras.layers.Dense(3, name="trunk")(inputs)
    >>> outputs = {name: keras.layers.Dense(1, name=name)(trunk) for name in ("a", "b")}
    >>> model = compile_multitask(keras.Model(inputs, outputs), [Task("a", "regression"), Task("b", "regression")])
    >>> x, y = np.ones((4, 2), "float32"), {"a": np.ones((4, 1), "float32"), "b": np.zeros((4, 1), "float32")}
    >>> losses, gradients = task_gradients(model, x, y)
    >>> partition_variables(gradients).paths(model.trainable_variables)["shared"]
    ['trunk/kernel', 'trunk/bias']
    """
    variables = list(model.trainable_variables if variables is None else variables)
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=training)
        losses = task_losses(model, y, y_pred, sample_weight)
    gradients = {name: tape.gradient(loss, variables) for name, loss in losses.items()}
    del tape
    return losses, gradients
