"""Multi-gate Mixture-of-Experts, MMoE (Ma et al., KDD 2018).

K expert networks see the shared input; each task has its own softmax gate over the experts and receives the
gate-weighted sum of the expert outputs:

    h_t = sum_k g_t(x)_k * e_k(x),   g_t(x) = softmax(W_t x)

Tasks that relate weakly can learn to use different experts, which a shared bottom cannot. `gates(x)` returns each
task's gate values (summing to 1 over experts), to see which experts a task uses; `mtl_keras.expert_gates(model,
inputs)` does it for a whole model. Each expert has its own randomly drawn initial weights, so experts start
different and the gates have something to choose between.

Example:

>>> import numpy as np
>>> layer = MMoE(["income", "marital"], num_experts=3, expert_units=(8,))
>>> x = np.ones((2, 5), "float32")
>>> tuple(layer(x)["income"].shape), tuple(layer.gates(x)["marital"].shape)
((2, 8), (2, 3))
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from mtl_keras.sharing.base import DenseStack, SharingLayer, check_units


def mix_experts(gate_values, expert_outputs):
    """sum_k gate[:, k] * expert_k: gate_values (batch, K), expert outputs K x (batch, width) -> (batch, width)."""
    stacked = ops.stack(expert_outputs, axis=1)  # (batch, K, width)
    return ops.sum(stacked * ops.expand_dims(ops.cast(gate_values, stacked.dtype), -1), axis=1)


@keras.saving.register_keras_serializable(package="mtl_keras")
class Gate(keras.layers.Layer):
    """A softmax gate over `num_experts` experts, with optional hidden layers before it.

    >>> import numpy as np
    >>> values = np.asarray(Gate(num_experts=3)(np.ones((2, 4), "float32")))
    >>> values.shape, bool(np.allclose(values.sum(axis=1), 1.0))
    ((2, 3), True)

    Args:
        num_experts: how many experts the gate weighs.
        hidden_units: widths of hidden layers before the softmax.
    """

    def __init__(self, num_experts: int, hidden_units: Sequence[int] = (), **kwargs):
        super().__init__(**kwargs)
        if int(num_experts) < 1:
            raise ValueError(f"Gate: num_experts must be >= 1, got {num_experts}.")
        self.num_experts = int(num_experts)
        self.hidden = DenseStack(hidden_units, name="hidden", dtype=self.dtype_policy)
        # Softmax in float32: gate values are read by users and must sum to 1 even under mixed precision.
        self.logits = keras.layers.Dense(self.num_experts, name="logits", dtype=self.dtype_policy)
        self.softmax = keras.layers.Softmax(dtype="float32")

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.logits.build(self.hidden.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return self.softmax(self.logits(self.hidden(inputs, training=training)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_experts,)

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "hidden_units": list(self.hidden.units)}


class ExpertMixture(SharingLayer):
    """Shared experts (`self.experts`) and one gate per task (`self.task_gates`, each mapping the input to weights
    over the experts): each task receives its gate's mix of the experts' outputs. MMoE and DSelect-k differ only in
    their gates."""

    def build(self, input_shape):
        for layer in [*self.experts, *self.task_gates.values()]:
            if not layer.built:  # a gate is built already if `gates(x)` was called first
                layer.build(input_shape)

    def gates(self, inputs, training=None) -> dict:
        """Each task's gate values over the experts, `{task: (batch, num_experts)}`."""
        return {name: gate(inputs, training=training) for name, gate in self.task_gates.items()}

    def call(self, inputs, training=None):
        expert_outputs = [expert(inputs, training=training) for expert in self.experts]
        return {name: mix_experts(gate, expert_outputs) for name, gate in self.gates(inputs, training).items()}

    def compute_output_shape(self, input_shape):
        return {name: tuple(input_shape[:-1]) + (self.expert_units[-1],) for name in self.task_names}


@keras.saving.register_keras_serializable(package="mtl_keras")
class MMoE(ExpertMixture):
    """Experts shared by all tasks, and one softmax gate per task.

    Args:
        task_names: the tasks, in order.
        num_experts: K, the number of experts.
        expert_units: widths of each expert's dense layers.
        gate_hidden_units: widths of hidden layers in each gate (the paper's gates are linear: none).
        activation: activation of the expert layers.
        dropout: dropout after each expert layer.
    """

    def __init__(self, task_names: Sequence[str], num_experts: int = 4, expert_units: Sequence[int] = (64,),
                 gate_hidden_units: Sequence[int] = (), activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(task_names, **kwargs)
        if int(num_experts) < 1:
            raise ValueError(f"MMoE: num_experts must be >= 1, got {num_experts}.")
        self.num_experts = int(num_experts)
        self.expert_units = check_units(expert_units, "MMoE expert_units", allow_empty=False)
        self.gate_hidden_units = check_units(gate_hidden_units, "MMoE gate_hidden_units")
        self.activation = activation
        self.dropout = float(dropout)
        self.experts = [DenseStack(self.expert_units, activation, dropout, name=f"expert_{k}",
                                   dtype=self.dtype_policy)
                        for k in range(self.num_experts)]
        self.task_gates = {name: Gate(self.num_experts, self.gate_hidden_units, name=f"gate_{name}",
                                      dtype=self.dtype_policy)
                           for name in self.task_names}

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "expert_units": list(self.expert_units),
                "gate_hidden_units": list(self.gate_hidden_units), "activation": self.activation,
                "dropout": self.dropout}
