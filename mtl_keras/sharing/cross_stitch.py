"""Cross-stitch networks (Misra et al. 2016): a tower per task, linearly mixed at chosen depths.

After layer l, task t's activation becomes `sum_s alpha_l[t, s] * h_s`, with alpha_l a learned T x T matrix.
`CrossStitchUnit` is that mixing alone, on any tensors of equal shape (dense activations or feature maps);
`CrossStitch` is a sharing layer of per-task dense towers with a unit after every layer (or those in `stitch_after`).

alpha starts at `self_weight` on the diagonal and `(1 - self_weight) / (T - 1)` elsewhere (the paper starts from
0.9 / 0.1). With `self_weight=1` the network starts as independent towers.

Example:

>>> import numpy as np
>>> unit = CrossStitchUnit(num_tasks=2, self_weight=0.5)
>>> mixed = unit([np.ones((1, 2), "float32"), np.zeros((1, 2), "float32")])
>>> [m.tolist() for m in np.asarray(mixed)]
[[[0.5, 0.5]], [[0.5, 0.5]]]
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from mtl_keras.sharing.base import DenseStack, SharingLayer, check_units


@keras.saving.register_keras_serializable(package="mtl_keras")
class CrossStitchUnit(keras.layers.Layer):
    """Learned linear mixing of T same-shaped tensors: output t = sum_s alpha[t, s] * input s.

    Args:
        num_tasks: T, the number of tensors mixed.
        self_weight: initial alpha[t, t]; the rest of each row shares `1 - self_weight` equally.
    """

    def __init__(self, num_tasks: int, self_weight: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        if int(num_tasks) < 1:
            raise ValueError(f"CrossStitchUnit: num_tasks must be >= 1, got {num_tasks}.")
        if not 0.0 <= float(self_weight) <= 1.0:
            raise ValueError(f"CrossStitchUnit: self_weight must be in [0, 1], got {self_weight}.")
        self.num_tasks = int(num_tasks)
        self.self_weight = float(self_weight)

    def initial_alpha(self) -> np.ndarray:
        t = self.num_tasks
        off_diagonal = (1.0 - self.self_weight) / (t - 1) if t > 1 else 0.0
        return np.full((t, t), off_diagonal, "float32") + np.eye(t, dtype="float32") * (self.self_weight - off_diagonal)

    def build(self, input_shape):
        if len(input_shape) != self.num_tasks:
            raise ValueError(f"CrossStitchUnit: expected a list of {self.num_tasks} tensors, got {len(input_shape)}.")
        if len({tuple(shape[1:]) for shape in input_shape}) != 1:
            raise ValueError(f"CrossStitchUnit: the tensors must have the same shape, got {list(input_shape)}.")
        self.alpha = self.add_weight(shape=(self.num_tasks, self.num_tasks), name="alpha",
                                     initializer=keras.initializers.Constant(self.initial_alpha()))

    def call(self, inputs):
        stacked = ops.stack(list(inputs), axis=0)  # (T, batch, ...)
        alpha = ops.cast(self.alpha, stacked.dtype)
        mixed = ops.tensordot(alpha, stacked, axes=[[1], [0]])
        return [mixed[t] for t in range(self.num_tasks)]

    def compute_output_shape(self, input_shape):
        return list(input_shape)

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "self_weight": self.self_weight}


@keras.saving.register_keras_serializable(package="mtl_keras")
class CrossStitch(SharingLayer):
    """Per-task dense towers with cross-stitch units between them.

    Args:
        task_names: the tasks, in order.
        units: widths of each tower's layers.
        self_weight: initial diagonal of every alpha (1.0: start as independent towers).
        stitch_after: indices of the layers followed by a unit (default: every layer).
        activation: activation of the tower layers.
        dropout: dropout after each layer.
    """

    def __init__(self, task_names: Sequence[str], units: Sequence[int] = (64, 32), self_weight: float = 0.9,
                 stitch_after: Sequence[int] | None = None, activation: str = "relu", dropout: float = 0.0,
                 **kwargs):
        super().__init__(task_names, **kwargs)
        self.units = check_units(units, "CrossStitch", allow_empty=False)
        self.stitch_after = tuple(range(len(self.units))) if stitch_after is None else tuple(stitch_after)
        if any(not 0 <= i < len(self.units) for i in self.stitch_after):
            raise ValueError(f"CrossStitch: stitch_after indexes layers 0..{len(self.units) - 1}, "
                             f"got {self.stitch_after}.")
        self.self_weight = float(self_weight)
        self.activation = activation
        self.dropout = float(dropout)
        self.layers_by_task = {
            name: [DenseStack((width,), activation, dropout, name=f"{name}_layer_{depth}", dtype=self.dtype_policy)
                   for depth, width in enumerate(self.units)]
            for name in self.task_names
        }
        self.units_by_depth = {
            f"depth_{depth}": CrossStitchUnit(len(self.task_names), self_weight, name=f"cross_stitch_{depth}",
                                              dtype=self.dtype_policy)
            for depth in self.stitch_after
        }

    def build(self, input_shape):
        for depth in range(len(self.units)):
            shape = tuple(input_shape) if depth == 0 else tuple(input_shape[:-1]) + (self.units[depth - 1],)
            for name in self.task_names:
                self.layers_by_task[name][depth].build(shape)
            if f"depth_{depth}" in self.units_by_depth:
                out = tuple(input_shape[:-1]) + (self.units[depth],)
                self.units_by_depth[f"depth_{depth}"].build([out] * len(self.task_names))

    def call(self, inputs, training=None):
        activations = [inputs] * len(self.task_names)
        for depth in range(len(self.units)):
            activations = [self.layers_by_task[name][depth](x, training=training)
                           for name, x in zip(self.task_names, activations, strict=True)]
            if f"depth_{depth}" in self.units_by_depth:
                activations = self.units_by_depth[f"depth_{depth}"](activations)
        return dict(zip(self.task_names, activations, strict=True))

    def compute_output_shape(self, input_shape):
        return {name: tuple(input_shape[:-1]) + (self.units[-1],) for name in self.task_names}

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "self_weight": self.self_weight,
                "stitch_after": list(self.stitch_after), "activation": self.activation, "dropout": self.dropout}
