"""What every way of sharing has in common: a layer that maps one shared representation to one representation per
task, keyed by task name, and the dense stack most of them are made of.

A sharing layer sits between a builder's trunk (an embedding, an encoder, feature columns) and the task heads, so
architecture stays apart from the heads and from the loss weighting: any builder can take any sharing layer.

Example:

>>> import numpy as np
>>> stack = DenseStack((8, 4))
>>> tuple(stack(np.zeros((2, 3), "float32")).shape)
(2, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def check_task_names(task_names: Sequence[str], owner: str) -> list[str]:
    """The task names as a list; at least one, all distinct strings."""
    names = [task_names] if isinstance(task_names, str) else list(task_names)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"{owner}: task_names must be a non-empty list of task names, got {task_names!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}: task names must be distinct, got {names}.")
    return names


def check_units(units: Sequence[int], owner: str, allow_empty: bool = True) -> tuple[int, ...]:
    units = tuple(int(u) for u in units)
    if (not units and not allow_empty) or any(u < 1 for u in units):
        raise ValueError(f"{owner}: units must be positive layer widths{'' if allow_empty else ' (at least one)'}, "
                         f"got {units}.")
    return units


@keras.saving.register_keras_serializable(package="mtl_keras")
class DenseStack(keras.layers.Layer):
    """Dense layers of the given widths, each followed by dropout (no layers: the identity).

    Args:
        units: widths of the layers, in order.
        activation: activation of every layer.
        dropout: dropout rate after each layer.
    """

    def __init__(self, units: Sequence[int] = (), activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = check_units(units, type(self).__name__)
        self.activation = activation
        self.dropout = float(dropout)
        self.dense_layers = [keras.layers.Dense(width, activation=activation, name=f"dense_{i}",
                                                dtype=self.dtype_policy) for i, width in enumerate(self.units)]
        self.dropout_layers = [keras.layers.Dropout(self.dropout, dtype=self.dtype_policy) for _ in self.units]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        x = inputs
        for dense, dropout in zip(self.dense_layers, self.dropout_layers, strict=True):
            x = dropout(dense(x), training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + ((self.units[-1],) if self.units else (input_shape[-1],))

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "activation": self.activation,
                "dropout": self.dropout}


class SharingLayer(keras.layers.Layer):
    """Base of the sharing layers: `call(shared)` returns `{task_name: representation}`.

    Subclasses set `self.task_names` through this constructor and return one tensor per task, in any layout the
    heads accept (a vector per example, or a feature map).
    """

    def __init__(self, task_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.task_names = check_task_names(task_names, type(self).__name__)

    def get_config(self):
        return {**super().get_config(), "task_names": list(self.task_names)}
