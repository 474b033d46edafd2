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
import numpy as np

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
        standardized: the head predicts a standardized target and returns it in the user's units, `mean + std * z`,
            with `target_mean` and `target_std` (one per unit) held as non-trainable weights, so that `.keras` files
            and SavedModels answer in the user's units (`Task(standardize_target=True)`; `fit` sets them from the
            training labels).
        target_mean, target_std: their values (default 0 and 1 until `fit` computes them).

    >>> head = TaskHead(1, "linear", standardized=True, target_mean=[40.0], target_std=[10.0])
    >>> float(head(np.zeros((1, 4), "float32"))[0, 0])  # a zero input reads z = 0: the mean, in hours
    40.0
    """

    def __init__(
        self,
        units: int,
        activation: str,
        hidden_units: Sequence[int] = (),
        dropout: float = 0.0,
        hidden_activation: str = "relu",
        spatial: bool = False,
        standardized: bool = False,
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activation
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.dropout = float(dropout)
        self.hidden_activation = hidden_activation
        self.spatial = bool(spatial)
        self.standardized = bool(standardized)
        if not self.standardized and (target_mean is not None or target_std is not None):
            raise ValueError("TaskHead: target_mean and target_std are for a standardized head (standardized=True).")
        self._initial_target = (list(target_mean) if target_mean is not None else [0.0] * self.units,
                                list(target_std) if target_std is not None else [1.0] * self.units)

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
        if task.standardize_target is not False:
            kwargs.setdefault("standardized", True)
            if task.target_statistics is not None:
                kwargs.setdefault("target_mean", task.target_statistics[0])
                kwargs.setdefault("target_std", task.target_statistics[1])
        return cls(task.output_units, task.activation, **kwargs)

    def set_target_statistics(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Sets the mean and spread the standardized head returns its outputs in."""
        if not self.standardized:
            raise ValueError(f"TaskHead {self.name!r} is not standardized (standardized=False).")
        self.target_mean.assign(np.asarray(mean, "float32"))
        self.target_std.assign(np.asarray(std, "float32"))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for hidden in self.hidden_layers:
            hidden.build(shape)
            shape = hidden.compute_output_shape(shape)
        self.output_layer.build(shape)
        if self.standardized:
            mean, std = self._initial_target
            self.target_mean = self.add_weight(name="target_mean", shape=(self.units,), dtype="float32",
                                               initializer=keras.initializers.Constant(mean), trainable=False)
            self.target_std = self.add_weight(name="target_std", shape=(self.units,), dtype="float32",
                                              initializer=keras.initializers.Constant(std), trainable=False)

    def call(self, inputs, training=None):
        x = inputs
        for dropout, hidden in zip(self.dropout_layers[:-1], self.hidden_layers, strict=True):
            x = hidden(dropout(x, training=training))
        x = self.output_layer(self.dropout_layers[-1](x, training=training))
        x = self.output_activation(x)
        if self.standardized:
            x = x * self.target_std + self.target_mean
        return x

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
            "standardized": self.standardized,
            # The statistics themselves live in the weights (and in the task's config).
        }
