"""Task heads: the per-task part of a multi-task model.

`TaskHead` maps a shared representation to one task's output. Its last layer's width and activation come from the
task's kind (`mtl_keras.tasks.KINDS`), so the same head serves every builder: a pooled vector `(batch, features)`
gives `(batch, units)`; a feature map `(batch, H, W, channels)` gives per-pixel outputs `(batch, H, W, units)`.
Outputs are float32 even under mixed precision, so losses and metrics stay stable.

Example:

>>> import numpy as np
>>> from mtl_keras.tasks import Task
>>> head = TaskHead.for_task(Task("topic", "multiclass", num_classes=3), hidden_units=(16,))
>>> tuple(head(np.zeros((2, 8), "float32")).shape)
(2, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mtl_keras.tasks import Task


@keras.saving.register_keras_serializable(package="mtl_keras")
class TaskHead(keras.layers.Layer):
    """Hidden layers (optional) followed by the output layer of one task.

    Args:
        units: output width (from `Task.output_units`).
        activation: output activation (from `Task.activation`).
        hidden_units: widths of hidden layers before the output.
        dropout: dropout rate before each hidden layer and the output layer.
        hidden_activation: activation of the hidden layers.
        spatial: if True, the head is applied per pixel with 1x1 convolutions (segmentation).
    """

    def __init__(
        self,
        units: int,
        activation: str,
        hidden_units: Sequence[int] = (),
        dropout: float = 0.0,
        hidden_activation: str = "relu",
        spatial: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activation
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.dropout = float(dropout)
        self.hidden_activation = hidden_activation
        self.spatial = bool(spatial)

        def project(width, act, name, dtype=self.dtype_policy):
            if self.spatial:
                return keras.layers.Conv2D(width, 1, activation=act, name=name, dtype=dtype)
            return keras.layers.Dense(width, activation=act, name=name, dtype=dtype)

        self.hidden_layers = [project(w, hidden_activation, f"hidden_{i}") for i, w in enumerate(self.hidden_units)]
        self.dropout_layers = [keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
                               for _ in range(len(self.hidden_units) + 1)]
        self.output_layer = project(self.units, None, "output", dtype="float32")
        self.output_activation = keras.layers.Activation(activation, dtype="float32")

    @classmethod
    def for_task(cls, task: Task, **kwargs) -> TaskHead:
        """The head a task's kind calls for, named after the task."""
        kwargs.setdefault("name", task.name)
        kwargs.setdefault("spatial", task.spec.pixel_labels)
        return cls(task.output_units, task.activation, **kwargs)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for hidden in self.hidden_layers:
            hidden.build(shape)
            shape = hidden.compute_output_shape(shape)
        self.output_layer.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        for dropout, hidden in zip(self.dropout_layers[:-1], self.hidden_layers, strict=True):
            x = hidden(dropout(x, training=training))
        x = self.output_layer(self.dropout_layers[-1](x, training=training))
        return self.output_activation(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def compute_output_spec(self, inputs, training=None):
        # The output layers compute in float32 whatever the head's own policy (mixed precision): say so, so that a
        # model's symbolic outputs carry the dtype its predictions have.
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.output_activation.compute_dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "hidden_units": list(self.hidden_units),
            "dropout": self.dropout,
            "hidden_activation": self.hidden_activation,
            "spatial": self.spatial,
        }
