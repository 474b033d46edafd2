"""How tasks share: the layers between a builder's trunk and the task heads, one file each.

Any builder takes `sharing=` as a name, with `sharing_options=` for that layer's arguments, or as a layer object:

=================  ===========================================================================================
`"hard"`           `HardSharing`: one shared stack, every task gets its output (the default; "shared-bottom")
`"soft"`           `SoftSharing`: a tower per task, tied by lambda * sum ||theta_i - theta_j||^2
`"cross_stitch"`   `CrossStitch`: a tower per task, mixed by learned cross-stitch units (Misra et al. 2016)
`"mmoe"`           `MMoE`: shared experts, a softmax gate per task (Ma et al. 2018)
`"ple"`            `PLE`: shared and task-owned experts over levels; CGC with one level (Tang et al. 2020)
`"dselect_k"`      `DSelectK`: shared experts, a gate per task that learns to select exactly k (Hazimeh et al. 2021)
`"mtan"`           `TaskAttention`: per-task attention masks over shared features at several depths (Liu et al. 2019)
`"cascade"`        hard sharing, and heads chained by `TaskCascade` (one task's prediction feeds the next)
=================  ===========================================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import keras
import numpy as np

from mtl_keras.sharing.base import DenseStack, SharingLayer
from mtl_keras.sharing.cascade import StopGradient, TaskCascade, attach_cascade_heads
from mtl_keras.sharing.cross_stitch import CrossStitch, CrossStitchUnit
from mtl_keras.sharing.dselect_k import DSelectGate, DSelectK
from mtl_keras.sharing.hard import HardSharing
from mtl_keras.sharing.mmoe import Gate, MMoE
from mtl_keras.sharing.mtan import TaskAttention
from mtl_keras.sharing.ple import PLE
from mtl_keras.sharing.soft import SoftSharing

SHARING: dict[str, type[SharingLayer]] = {
    "hard": HardSharing,
    "soft": SoftSharing,
    "cross_stitch": CrossStitch,
    "mmoe": MMoE,
    "ple": PLE,
    "dselect_k": DSelectK,
    "mtan": TaskAttention,
}
SHARING_NAMES = (*SHARING, "cascade")


def get_sharing(sharing: str | SharingLayer, task_names: Sequence[str], **options) -> SharingLayer:
    """The sharing layer for `task_names`: by name (with its options), or a given layer checked against the tasks.

    >>> get_sharing("mmoe", ["a", "b"], num_experts=2).num_experts
    2
    """
    if isinstance(sharing, SharingLayer):
        if options:
            raise ValueError(f"sharing options {sorted(options)} apply to a sharing given by name, not to a layer.")
        if list(sharing.task_names) != list(task_names):
            raise ValueError(f"The sharing layer {sharing.name!r} is for tasks {sharing.task_names}; the model's "
                             f"tasks are {list(task_names)}.")
        return sharing
    if sharing == "cascade":
        sharing = "hard"
    check_sharing_options(sharing, options)
    return SHARING[sharing](task_names, name=f"{sharing}_sharing", **options)


def check_sharing_options(sharing: str, options) -> None:
    """Raises naming the sharing or the options unless `sharing` is a sharing's name and every option one its layer
    takes (a cascade's options are its `TaskCascade`'s, `order` first): what a job checks before it loads any data.

    >>> check_sharing_options("mmoe", {"num_experts": 4})
    >>> check_sharing_options("mmoe", {"experts": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: sharing='mmoe': bad sharing option(s) ['experts']; MMoE takes ['num_experts', ...].
    """
    options = dict(options or {})
    if sharing == "cascade":
        if "order" not in options:
            raise ValueError("sharing='cascade' needs sharing_options={'order': [task names, first to last]}.")
        return
    if sharing not in SHARING:
        raise ValueError(f"Unknown sharing {sharing!r}; choose one of {list(SHARING_NAMES)} or pass a SharingLayer.")
    layer_class = SHARING[sharing]
    accepted = [name for name, parameter in inspect.signature(layer_class.__init__).parameters.items()
                if name not in ("self", "task_names") and parameter.kind is parameter.POSITIONAL_OR_KEYWORD]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"sharing={sharing!r}: bad sharing option(s) {unknown}; {layer_class.__name__} takes "
                         f"{accepted}.")


def expert_gates(model: keras.Model, inputs, batch_size: int = 1024) -> dict[str, dict[str, np.ndarray]]:
    """Gate values of every gated sharing layer (MMoE, PLE, DSelect-k: any with a `gates` method) of `model` on
    `inputs`.

    Returns `{layer name: {task (or level{l}_...): array (examples, experts)}}`; each row sums to 1. Average over
    examples to see how much each task relies on each expert.
    """
    gated = [layer for layer in model.layers if hasattr(layer, "gates") and isinstance(layer, SharingLayer)]
    if not gated:
        raise ValueError(f"Model {model.name!r} has no gated sharing layer (MMoE, PLE or DSelect-k).")
    report = {}
    for layer in gated:
        features = keras.Model(model.inputs, layer.input).predict(inputs, batch_size=batch_size, verbose=0)
        report[layer.name] = {key: np.asarray(value) for key, value in layer.gates(features).items()}
    return report


__all__ = [
    "SHARING",
    "SHARING_NAMES",
    "CrossStitch",
    "CrossStitchUnit",
    "DSelectGate",
    "DSelectK",
    "DenseStack",
    "Gate",
    "HardSharing",
    "MMoE",
    "PLE",
    "SharingLayer",
    "SoftSharing",
    "StopGradient",
    "TaskAttention",
    "TaskCascade",
    "attach_cascade_heads",
    "expert_gates",
    "get_sharing",
]
