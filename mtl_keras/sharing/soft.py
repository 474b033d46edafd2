"""Soft parameter sharing (Duong et al. 2015; Yang & Hospedales 2017): a tower per task, tied by a penalty.

Each task has its own dense tower of the same shape; the layer adds to the model's loss

    penalty * sum_{i<j} sum_l ||theta_i^l - theta_j^l||^2

over the corresponding weights (kernels and biases) of every pair of towers, so towers may differ where the data
asks and stay close elsewhere. `penalty=0` gives independent towers; a large penalty approaches hard sharing.

The penalty goes through `add_loss`, which Keras scales by 1/replicas under tf.distribute before the optimizer sums
gradients over replicas, so it weighs the same on one device and on many.

Example:

>>> import numpy as np
>>> layer = SoftSharing(["a", "b"], units=(4,), penalty=0.1)
>>> outputs = layer(np.ones((2, 3), "float32"))
>>> sorted(outputs), len(layer.losses)
(['a', 'b'], 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from mtl_keras.sharing.base import DenseStack, SharingLayer, check_units


@keras.saving.register_keras_serializable(package="mtl_keras")
class SoftSharing(SharingLayer):
    """Per-task dense towers whose corresponding weights are pulled together by a squared-distance penalty.

    Args:
        task_names: the tasks, in order.
        units: widths of each tower's layers (the same for every task).
        penalty: lambda, the weight of the summed squared distances between towers.
        activation: activation of the tower layers.
        dropout: dropout after each layer.
    """

    def __init__(self, task_names: Sequence[str], units: Sequence[int] = (64,), penalty: float = 1e-3,
                 activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(task_names, **kwargs)
        self.units = check_units(units, "SoftSharing", allow_empty=False)
        if not float(penalty) >= 0.0:
            raise ValueError(f"SoftSharing: penalty must be >= 0, got {penalty!r}.")
        self.penalty = float(penalty)
        self.activation = activation
        self.dropout = float(dropout)
        self.towers = {name: DenseStack(self.units, activation, dropout, name=f"tower_{name}", dtype=self.dtype_policy)
                       for name in self.task_names}

    def build(self, input_shape):
        for tower in self.towers.values():
            tower.build(input_shape)

    def distance_penalty(self):
        """`penalty * sum_{i<j} ||theta_i - theta_j||^2` over the towers' corresponding weights."""
        weights = [tower.trainable_weights for tower in self.towers.values()]
        total = ops.zeros((), dtype="float32")
        for i in range(len(weights)):
            for j in range(i + 1, len(weights)):
                for first, second in zip(weights[i], weights[j], strict=True):
                    total = total + ops.sum(ops.square(ops.cast(first, "float32") - ops.cast(second, "float32")))
        return self.penalty * total

    def call(self, inputs, training=None):
        if self.penalty > 0 and len(self.towers) > 1:
            self.add_loss(self.distance_penalty())
        return {name: tower(inputs, training=training) for name, tower in self.towers.items()}

    def compute_output_shape(self, input_shape):
        return {name: tuple(input_shape[:-1]) + (self.units[-1],) for name in self.task_names}

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "penalty": self.penalty,
                "activation": self.activation, "dropout": self.dropout}
