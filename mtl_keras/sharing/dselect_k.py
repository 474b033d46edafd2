"""DSelect-k, a mixture of experts whose gates learn to pick exactly k experts (Hazimeh et al., NeurIPS 2021).

As in MMoE, K expert networks see the shared input and each task receives a gate-weighted sum of their outputs,
h_t = sum_j g_t(x)_j * e_j(x). What changes is the gate. A task's gate holds k *selectors*; each selector i has
m = ceil(log2 K) logits z_i (per example, z_i = W_i x + b_i; or learned constants with `static_gates=True`), and
reads them as a soft binary code of one expert through the smooth step

    S(t) = 0                                   if t <= -gamma/2
           1                                   if t >= gamma/2
           -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2   otherwise,

    r_i(j) = prod_{l=1..m} ( S(z_il) if bit l of j is 1 else 1 - S(z_il) ),     j = 0 .. K-1,

a distribution over the experts (bit 1 is the most significant, as in the official code's `np.binary_repr`). The
gate mixes its selectors by softmax weights alpha (per example, alpha = V x + c; or constants):

    g_t(x) = sum_{i=1..k} softmax(alpha)_i * r_i.

Gradient descent moves z and alpha as it moves any weight. Unlike a softmax, S reaches 0 and 1 exactly, so once a
selector's logits leave (-gamma/2, gamma/2) it picks exactly one expert and its gradient stops: training ends with
at most k experts per task (per example), which top-k gating gets only by a non-differentiable cut. In training the
layer adds, through `add_loss`,

    entropy_regularization * mean over examples of sum_{tasks, selectors} H(r_i),  H(r) = -sum_j r_j log(r_j + 1e-6),

which pushes each selector towards a one-hot choice (the paper's entropy regulariser; its official code's
`EntropyRegularizer` defaults to a constant 1e-6, our default too). `gates(x)` returns each task's g_t (summing to 1
over the experts); `mtl_keras.expert_gates(model, inputs)` does it for a whole model.

Example:

>>> import numpy as np
>>> layer = DSelectK(["income", "marital"], num_experts=3, k=2, expert_units=(8,))
>>> x = np.ones((2, 5), "float32")
>>> gates = layer.gates(x)
>>> tuple(layer(x)["income"].shape), tuple(gates["marital"].shape)
((2, 8), (2, 3))
>>> bool(np.allclose(np.asarray(gates["income"]).sum(axis=1), 1.0))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from mtl_keras.sharing.base import DenseStack, check_units
from mtl_keras.sharing.mmoe import ExpertMixture

# Inside the entropy's log, as in the official code: 0 * log(0 + eps) = 0 for an expert a selector has dropped.
EPSILON = 1e-6


def smooth_step(t, gamma: float = 1.0):
    """The smooth step S(t): 0 below -gamma/2, 1 above gamma/2, a cubic with S(0) = 1/2 between (exactly 0 and 1
    outside, unlike a sigmoid).

    >>> [float(v) for v in smooth_step(np.array([-1.0, 0.0, 0.25, 1.0], "float32"))]
    [0.0, 0.5, 0.84375, 1.0]
    """
    t = ops.convert_to_tensor(t)
    cubic = (-2.0 / gamma**3) * t**3 + (3.0 / (2.0 * gamma)) * t + 0.5
    return ops.where(t <= -gamma / 2, ops.zeros_like(t), ops.where(t >= gamma / 2, ops.ones_like(t), cubic))


def binary_codes(num_experts: int) -> np.ndarray:
    """(num_experts, ceil(log2 num_experts)) booleans: row j is j in binary, most significant bit first.

    >>> binary_codes(3).astype(int).tolist()
    [[0, 0], [0, 1], [1, 0]]
    """
    width = math.ceil(math.log2(num_experts))
    return np.array([[bit == "1" for bit in np.binary_repr(j, width=width)] for j in range(num_experts)])


def selector_distribution(z, num_experts: int, gamma: float = 1.0):
    """A selector's distribution over the experts from its logits: z (..., m) -> (r (..., K), reachable (...,)).

    `reachable` is the mass r puts on the K experts' codes before the unused ones (there are 2^m - K when K is not a
    power of two) are accounted for: the official code leaves that mass out, so its gates then sum to less than 1,
    and adds a penalty 1/reachable to keep it small. We keep that penalty (see `DSelectGate`), and spread the
    unused codes' mass evenly over the K experts so that every gate sums to 1, as MMoE's do. We do not divide by
    `reachable` instead: a selector can saturate on an unused code (an input far from the training data can put it
    there), and then the mass is exactly 0 and the division gives NaN, where spreading gives a uniform gate.
    """
    codes = ops.convert_to_tensor(binary_codes(num_experts))
    steps = ops.expand_dims(smooth_step(ops.cast(z, "float32"), gamma), -2)  # (..., 1, m)
    r = ops.prod(ops.where(codes, steps, 1.0 - steps), axis=-1)  # (..., K)
    reachable = ops.sum(r, axis=-1)
    if num_experts < 2 ** codes.shape[-1]:
        r = r + ops.expand_dims(1.0 - reachable, -1) / num_experts
    return r, reachable


def entropy(distribution):
    """-sum_j p_j log(p_j + 1e-6) over the last axis."""
    return -ops.sum(distribution * ops.log(distribution + EPSILON), axis=-1)


def check_gate_arguments(owner: str, num_experts, k, gamma, entropy_regularization) -> tuple[int, int, float, float]:
    """num_experts, k, gamma and entropy_regularization as numbers; raises naming the one that is out of range."""
    if int(num_experts) < 2:
        raise ValueError(f"{owner}: num_experts must be >= 2 (a selector chooses between experts), got "
                         f"num_experts={num_experts!r}.")
    if not 1 <= int(k) <= int(num_experts):
        raise ValueError(f"{owner}: k must be between 1 and num_experts={num_experts}, got k={k!r}.")
    if not float(gamma) > 0:
        raise ValueError(f"{owner}: gamma must be > 0, got gamma={gamma!r}.")
    if not float(entropy_regularization) >= 0:
        raise ValueError(f"{owner}: entropy_regularization must be >= 0, got "
                         f"entropy_regularization={entropy_regularization!r}.")
    return int(num_experts), int(k), float(gamma), float(entropy_regularization)


@keras.saving.register_keras_serializable(package="mtl_keras")
class DSelectGate(keras.layers.Layer):
    """One task's DSelect-k gate: k binary-code selectors over `num_experts` experts, mixed by softmax weights.

    >>> values = np.asarray(DSelectGate(num_experts=4, k=2)(np.ones((2, 3), "float32")))
    >>> values.shape, bool(np.allclose(values.sum(axis=1), 1.0))
    ((2, 4), True)

    In training it adds the entropy regulariser of its selectors and, when `num_experts` is not a power of two, the
    official code's penalty on the mass its selectors put on unused codes, mean over examples of
    sum_i (1 / reachable_i - 1) (the official 1 / reachable less its minimum 1: the same gradient, and no constant
    in the reported loss).

    Args:
        num_experts: K, how many experts the gate weighs (at least 2).
        k: how many experts it selects (1 <= k <= num_experts).
        gamma: width of the smooth step's cubic part.
        entropy_regularization: weight of the selectors' entropy in the loss.
        static: learned constant logits, the same for every example, instead of linear functions of the input.
    """

    def __init__(self, num_experts: int, k: int = 2, gamma: float = 1.0, entropy_regularization: float = 1e-6,
                 static: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_experts, self.k, self.gamma, self.entropy_regularization = check_gate_arguments(
            type(self).__name__, num_experts, k, gamma, entropy_regularization)
        self.static = bool(static)
        self.num_bits = math.ceil(math.log2(self.num_experts))
        # The official code's initialisers: every z near 0, inside (-gamma/2, gamma/2) where S has a gradient, so
        # each selector starts close to uniform over the experts; alpha near 0, the selectors weighed equally.
        self.z_initializer = keras.initializers.RandomUniform(-self.gamma / 100, self.gamma / 100)
        self.alpha_initializer = keras.initializers.RandomUniform(-0.05, 0.05)
        if not self.static:
            self.z_logits = keras.layers.Dense(self.k * self.num_bits, kernel_initializer=self.z_initializer,
                                               bias_initializer=self.z_initializer, name="z_logits",
                                               dtype=self.dtype_policy)
            if self.k > 1:  # with one selector there is nothing to weigh
                self.alpha_logits = keras.layers.Dense(self.k, kernel_initializer=self.alpha_initializer,
                                                       bias_initializer=self.alpha_initializer, name="alpha_logits",
                                                       dtype=self.dtype_policy)

    def build(self, input_shape):
        if self.static:
            self.z = self.add_weight(shape=(self.k, self.num_bits), initializer=self.z_initializer, name="z")
            if self.k > 1:
                self.alpha = self.add_weight(shape=(self.k,), initializer=self.alpha_initializer, name="alpha")
        else:
            self.z_logits.build(input_shape)
            if self.k > 1:
                self.alpha_logits.build(input_shape)

    def logits(self, inputs):
        """z (batch, k, m) and alpha (batch, k; None when k = 1), in float32: gate values must sum to 1 under mixed
        precision too."""
        if self.static:
            batch = ops.shape(inputs)[0]
            z = ops.broadcast_to(ops.cast(self.z, "float32"), (batch, self.k, self.num_bits))
            alpha = ops.broadcast_to(ops.cast(self.alpha, "float32"), (batch, self.k)) if self.k > 1 else None
            return z, alpha
        z = ops.reshape(ops.cast(self.z_logits(inputs), "float32"), (-1, self.k, self.num_bits))
        return z, ops.cast(self.alpha_logits(inputs), "float32") if self.k > 1 else None

    def call(self, inputs, training=None):
        z, alpha = self.logits(inputs)
        selectors, reachable = selector_distribution(z, self.num_experts, self.gamma)  # (batch, k, K), (batch, k)
        if training:
            if self.entropy_regularization > 0:
                self.add_loss(self.entropy_regularization * ops.mean(ops.sum(entropy(selectors), axis=-1)))
            if self.num_experts < 2**self.num_bits:
                self.add_loss(ops.mean(ops.sum(1.0 / ops.maximum(reachable, EPSILON) - 1.0, axis=-1)))
        if alpha is None:
            return selectors[:, 0]
        return ops.sum(ops.expand_dims(ops.softmax(alpha, axis=-1), -1) * selectors, axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_experts,)

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "k": self.k, "gamma": self.gamma,
                "entropy_regularization": self.entropy_regularization, "static": self.static}


@keras.saving.register_keras_serializable(package="mtl_keras")
class DSelectK(ExpertMixture):
    """Experts shared by all tasks, and one DSelect-k gate per task that learns to select k of them.

    Args:
        task_names: the tasks, in order.
        num_experts: K, the number of experts (at least 2).
        k: how many experts each task's gate selects (1 <= k <= num_experts).
        expert_units: widths of each expert's dense layers.
        gamma: width of the smooth step's cubic part (larger: selectors saturate later).
        entropy_regularization: weight of the selectors' entropy in the loss (0: none).
        static_gates: gates of learned constants, the same for every example (the paper's static variant),
            instead of linear functions of the input.
        activation: activation of the expert layers.
        dropout: dropout after each expert layer.
    """

    def __init__(self, task_names: Sequence[str], num_experts: int = 4, k: int = 2,
                 expert_units: Sequence[int] = (64,), gamma: float = 1.0, entropy_regularization: float = 1e-6,
                 static_gates: bool = False, activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(task_names, **kwargs)
        self.expert_units = check_units(expert_units, "DSelectK expert_units", allow_empty=False)
        self.static_gates = bool(static_gates)
        self.activation = activation
        self.dropout = float(dropout)
        self.num_experts, self.k, self.gamma, self.entropy_regularization = check_gate_arguments(
            type(self).__name__, num_experts, k, gamma, entropy_regularization)
        self.experts = [DenseStack(self.expert_units, activation, dropout, name=f"expert_{j}",
                                   dtype=self.dtype_policy)
                        for j in range(self.num_experts)]
        self.task_gates = {name: DSelectGate(self.num_experts, self.k, self.gamma, self.entropy_regularization,
                                             self.static_gates, name=f"gate_{name}", dtype=self.dtype_policy)
                           for name in self.task_names}

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "k": self.k,
                "expert_units": list(self.expert_units), "gamma": self.gamma,
                "entropy_regularization": self.entropy_regularization, "static_gates": self.static_gates,
                "activation": self.activation, "dropout": self.dropout}
