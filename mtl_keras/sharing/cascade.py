"""Task cascades ("task-to-task connections"): one task's prediction or hidden state feeds the next task's head.

Tasks are chained in an order the user gives: the head of the k-th task sees its own representation concatenated
with the link of the (k-1)-th task, either its prediction (`link="prediction"`) or the hidden layer of its head
(`link="hidden"`). With `stop_gradient=True` the later task's loss does not train the earlier task's head through
the link (the earlier prediction is read as a fixed input), as in cascades trained task by task.

`TaskCascade` is a description that the builders take (`cascade=TaskCascade([...])`, or `sharing="cascade"` with
`sharing_options={"order": [...]}` on a hard-shared trunk); `attach_cascade_heads` wires it.

Example:

>>> import keras
>>> from mtl_keras.tasks import Task
>>> features = keras.Input((6,))
>>> tasks = [Task("click", "binary"), Task("buy", "binary")]
>>> outputs = attach_cascade_heads({"click": features, "buy": features}, tasks, TaskCascade(["click", "buy"]))
>>> sorted(outputs)
['buy', 'click']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import keras

from mtl_keras.heads import TaskHead
from mtl_keras.layers import StopGradient
from mtl_keras.tasks import Task, as_task_dict

LINKS = ("prediction", "hidden")


@dataclasses.dataclass(frozen=True)
class TaskCascade:
    """How tasks feed each other.

    Args:
        order: task names, first to last; each task's head receives the link of the task before it. Tasks not in
            the order get ordinary heads.
        link: `"prediction"` (the earlier head's output) or `"hidden"` (its hidden layer).
        stop_gradient: if True, the later task's loss sends no gradient back through the link.
        hidden_units: width of the hidden layer of each cascaded head (the `"hidden"` link's width).
    """

    order: Sequence[str]
    link: str = "prediction"
    stop_gradient: bool = False
    hidden_units: int = 32

    def __post_init__(self):
        object.__setattr__(self, "order", tuple(self.order))
        if len(self.order) < 2 or len(set(self.order)) != len(self.order):
            raise ValueError(f"TaskCascade: order must name at least two distinct tasks, got {list(self.order)}.")
        if self.link not in LINKS:
            raise ValueError(f"TaskCascade: link must be one of {LINKS}, got {self.link!r}.")
        if int(self.hidden_units) < 1:
            raise ValueError(f"TaskCascade: hidden_units must be positive, got {self.hidden_units}.")


def attach_cascade_heads(
    representations: Mapping[str, object],
    tasks: Sequence[Task],
    cascade: TaskCascade,
    head_hidden_units: Sequence[int] = (),
    dropout: float = 0.0,
) -> dict:
    """Heads for every task, the tasks in `cascade.order` chained; returns the outputs keyed by task name."""
    tasks = as_task_dict(tasks)
    unknown = sorted(set(cascade.order) - set(tasks))
    if unknown:
        raise ValueError(f"TaskCascade: order names unknown task(s) {unknown}; the tasks are {sorted(tasks)}.")
    outputs, previous_link = {}, None
    for name in cascade.order:
        task = tasks[name]
        inputs = representations[name]
        if previous_link is not None:
            link = StopGradient(name=f"{name}_link_stop_gradient")(previous_link) if cascade.stop_gradient \
                else previous_link
            inputs = keras.layers.Concatenate(name=f"{name}_with_link")([inputs, link])
        hidden = keras.layers.Dense(cascade.hidden_units, activation="relu", name=f"{name}_cascade_hidden")(inputs)
        outputs[name] = TaskHead.for_task(task, dropout=dropout)(hidden)
        previous_link = outputs[name] if cascade.link == "prediction" else hidden
    for name, task in tasks.items():
        if name not in outputs:
            outputs[name] = TaskHead.for_task(task, hidden_units=head_hidden_units, dropout=dropout)(
                representations[name])
    return {name: outputs[name] for name in tasks}
