"""Hard parameter sharing (Caruana 1997): one trunk for all tasks, then a head per task.

Every task receives the same representation: the output of a shared dense stack (or the input itself when the stack
is empty, so that a builder's own trunk is the shared part). This is the default and the baseline the other kinds of
sharing are measured against ("shared-bottom" in the MMoE paper).

Example:

>>> import numpy as np
>>> layer = HardSharing(["income", "marital"], units=(8,))
>>> {name: tuple(value.shape) for name, value in layer(np.zeros((2, 5), "float32")).items()}
{'income': (2, 8), 'marital': (2, 8)}
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mtl_keras.sharing.base import DenseStack, SharingLayer


@keras.saving.register_keras_serializable(package="mtl_keras")
class HardSharing(SharingLayer):
    """One shared dense stack whose output every task receives.

    Args:
        task_names: the tasks, in order.
        units: widths of the shared layers (empty: pass the input through).
        activation: activation of the shared layers.
        dropout: dropout after each shared layer.
    """

    def __init__(self, task_names: Sequence[str], units: Sequence[int] = (), activation: str = "relu",
                 dropout: float = 0.0, **kwargs):
        super().__init__(task_names, **kwargs)
        self.bottom = DenseStack(units, activation=activation, dropout=dropout, name="shared_bottom",
                                 dtype=self.dtype_policy)

    def build(self, input_shape):
        self.bottom.build(input_shape)

    def call(self, inputs, training=None):
        shared = self.bottom(inputs, training=training)
        return {name: shared for name in self.task_names}

    def compute_output_shape(self, input_shape):
        shape = self.bottom.compute_output_shape(input_shape)
        return {name: shape for name in self.task_names}

    def get_config(self):
        return {**super().get_config(), "units": list(self.bottom.units), "activation": self.bottom.activation,
                "dropout": self.bottom.dropout}
