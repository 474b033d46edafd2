"""Progressive Layered Extraction, PLE, and its one-level form CGC (Tang et al., RecSys 2020).

Each level has shared experts and experts of each task. A task's gate weighs its own experts and the shared ones;
below the last level a shared gate weighs every expert to feed the next level's shared experts:

    h_t^l = sum g_t^l(h_t^{l-1}) * [E_t^l(h_t^{l-1}), S^l(s^{l-1})]
    s^l   = sum g_s^l(s^{l-1}) * [E_1^l(h_1^{l-1}), ..., E_T^l(h_T^{l-1}), S^l(s^{l-1})]

with h_t^0 = s^0 = the input. Task-owned experts keep what only one task needs out of the shared ones, which is
how PLE reduces the "seesaw" between tasks that MMoE can show. `num_levels=1` is CGC.

`gates(x)` returns the last level's task gates keyed by task name (over the task's experts first, then the shared
ones), and for deeper models the earlier levels' gates as `level{l}_{task}` and `level{l}_shared`.

Example:

>>> import numpy as np
>>> layer = PLE(["a", "b"], num_levels=2, num_shared_experts=2, num_task_experts=1, expert_units=(4,))
>>> x = np.ones((3, 5), "float32")
>>> tuple(layer(x)["a"].shape), sorted(layer.gates(x))
((3, 4), ['a', 'b', 'level1_a', 'level1_b', 'level1_shared'])
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mtl_keras.sharing.base import DenseStack, SharingLayer, check_units
from mtl_keras.sharing.mmoe import Gate, mix_experts


@keras.saving.register_keras_serializable(package="mtl_keras")
class PLE(SharingLayer):
    """Levels of shared and task-specific experts with gates (CGC when `num_levels=1`).

    Args:
        task_names: the tasks, in order.
        num_levels: how many extraction levels are stacked.
        num_shared_experts: shared experts per level.
        num_task_experts: experts of each task per level.
        expert_units: widths of each expert's dense layers.
        gate_hidden_units: widths of hidden layers in each gate.
        activation: activation of the expert layers.
        dropout: dropout after each expert layer.
    """

    def __init__(self, task_names: Sequence[str], num_levels: int = 1, num_shared_experts: int = 2,
                 num_task_experts: int = 2, expert_units: Sequence[int] = (64,),
                 gate_hidden_units: Sequence[int] = (), activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(task_names, **kwargs)
        if int(num_levels) < 1 or int(num_shared_experts) < 0 or int(num_task_experts) < 0:
            raise ValueError(f"PLE: needs num_levels >= 1 and expert counts >= 0, got {num_levels}, "
                             f"{num_shared_experts}, {num_task_experts}.")
        if int(num_shared_experts) + int(num_task_experts) < 1:
            raise ValueError("PLE: each task's gate needs at least one expert (shared or its own).")
        self.num_levels = int(num_levels)
        self.num_shared_experts = int(num_shared_experts)
        self.num_task_experts = int(num_task_experts)
        self.expert_units = check_units(expert_units, "PLE expert_units", allow_empty=False)
        self.gate_hidden_units = check_units(gate_hidden_units, "PLE gate_hidden_units")
        self.activation = activation
        self.dropout = float(dropout)

        def experts(owner, level, count):
            return [DenseStack(self.expert_units, activation, dropout, name=f"level{level}_{owner}_expert_{k}",
                               dtype=self.dtype_policy)
                    for k in range(count)]

        per_task_gate = self.num_task_experts + self.num_shared_experts
        all_experts = self.num_task_experts * len(self.task_names) + self.num_shared_experts
        self.levels = []
        for level in range(1, self.num_levels + 1):
            last = level == self.num_levels
            self.levels.append({
                "shared_experts": experts("shared", level, self.num_shared_experts),
                "task_experts": {name: experts(name, level, self.num_task_experts) for name in self.task_names},
                "task_gates": {name: Gate(per_task_gate, self.gate_hidden_units, name=f"level{level}_gate_{name}",
                                          dtype=self.dtype_policy)
                               for name in self.task_names},
                "shared_gate": None if last else Gate(all_experts, self.gate_hidden_units,
                                                      name=f"level{level}_gate_shared", dtype=self.dtype_policy),
            })

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        for index, level in enumerate(self.levels):
            shape = input_shape if index == 0 else input_shape[:-1] + (self.expert_units[-1],)
            for expert in level["shared_experts"] + [e for es in level["task_experts"].values() for e in es]:
                expert.build(shape)
            for gate in list(level["task_gates"].values()) + ([level["shared_gate"]] if level["shared_gate"] else []):
                gate.build(shape)

    def _forward(self, inputs, training):
        task_inputs = {name: inputs for name in self.task_names}
        shared_input = inputs
        gate_values = {}
        for number, level in enumerate(self.levels, start=1):
            shared_outputs = [expert(shared_input, training=training) for expert in level["shared_experts"]]
            task_outputs = {name: [expert(task_inputs[name], training=training)
                                   for expert in level["task_experts"][name]] for name in self.task_names}
            prefix = "" if number == self.num_levels else f"level{number}_"
            next_inputs = {}
            for name in self.task_names:
                gate = level["task_gates"][name](task_inputs[name], training=training)
                gate_values[f"{prefix}{name}"] = gate
                next_inputs[name] = mix_experts(gate, task_outputs[name] + shared_outputs)
            if level["shared_gate"] is not None:
                gate = level["shared_gate"](shared_input, training=training)
                gate_values[f"{prefix}shared"] = gate
                everything = [out for name in self.task_names for out in task_outputs[name]] + shared_outputs
                shared_input = mix_experts(gate, everything)
            task_inputs = next_inputs
        return task_inputs, gate_values

    def gates(self, inputs, training=None) -> dict:
        """Gate values: last level's per task, earlier levels' as `level{l}_{task}` / `level{l}_shared`."""
        return self._forward(inputs, training)[1]

    def call(self, inputs, training=None):
        return self._forward(inputs, training)[0]

    def compute_output_shape(self, input_shape):
        return {name: tuple(input_shape[:-1]) + (self.expert_units[-1],) for name in self.task_names}

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels,
                "num_shared_experts": self.num_shared_experts, "num_task_experts": self.num_task_experts,
                "expert_units": list(self.expert_units), "gate_hidden_units": list(self.gate_hidden_units),
                "activation": self.activation, "dropout": self.dropout}
