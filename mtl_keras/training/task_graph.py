"""Where a functional multi-task model stops being shared: found by walking its graph from each task's output.

A tensor serves the tasks whose outputs depend on it. The *shared representation* is the set of tensors that serve
two or more tasks and are read by an operation that serves fewer (a task head, an MMoE gate's mixture, a tower):
every gradient from a task's loss to the shared weights crosses it. MGDA-UB takes its gradients there, and GradNorm
measures its norms on the layers just below it (the last shared layers).

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
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from mtl_keras import keras_compat


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
