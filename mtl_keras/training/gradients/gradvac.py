"""GradVac: gradient vaccine, PCGrad with a learned target cosine per pair of tasks instead of 0.

Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in Massively Multilingual
Models", ICLR 2021.

Update rule: each ordered pair (i, j) keeps a target cosine phi_ij (0 at first), an exponential moving average of
the cosines seen. For each task i, start from g_i' = g_i and, for every other task j in a random order: with
phi = cos(g_i', g_j), if phi < phi_ij then
    g_i' += ||g_i'|| (phi_ij sqrt(1 - phi^2) - phi sqrt(1 - phi_ij^2)) / (||g_j|| sqrt(1 - phi_ij^2)) g_j,
which sets cos(g_i', g_j) to phi_ij; then phi_ij <- (1 - beta) phi_ij + beta phi. The update is sum_i g_i'. With every
target at 0 the correction is PCGrad's projection. As in PCGrad, every g_i' is a combination of the original
gradients (g_i' = sum_k c_ik g_k), so all of it runs on the Gram matrix; the random order is PCGrad's stateless
draw from (seed, step), the same on every replica. The targets are state (saved, backed up, mirrored).

This is the paper's "whole model" granularity (one target per pair for all shared parameters); its per-layer
variants are not built.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.training.gradients.base import GradientMethod, register
from mtl_keras.training.gradients.pcgrad import random_orders


def gradvac_coefficients(gram: tf.Tensor, orders: tf.Tensor, targets: tf.Tensor, beta: float):
    """GradVac's alpha and the new targets, given each task's visiting order and the current targets [T, T]."""
    num_tasks = gram.shape[0]
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
    rows, new_targets = [], targets
    for i in range(num_tasks):
        coefficients = tf.one_hot(i, num_tasks, dtype=gram.dtype)
        for k in range(num_tasks):
            j = orders[i, k]
            other = tf.not_equal(j, i)
            dot = tf.tensordot(coefficients, tf.gather(gram, j, axis=1), 1)
            norm = tf.sqrt(tf.maximum(tf.tensordot(coefficients, tf.linalg.matvec(gram, coefficients), 1), 0.0))
            norm_j = tf.gather(norms, j)
            cosine = tf.math.divide_no_nan(dot, norm * norm_j)
            target = new_targets[i, j]
            shift = tf.math.divide_no_nan(
                norm * (target * tf.sqrt(tf.maximum(1.0 - cosine**2, 0.0))
                        - cosine * tf.sqrt(tf.maximum(1.0 - target**2, 0.0))),
                norm_j * tf.sqrt(tf.maximum(1.0 - target**2, 0.0)))
            apply = tf.logical_and(other, cosine < target)
            coefficients += tf.where(apply, shift, 0.0) * tf.one_hot(j, num_tasks, dtype=gram.dtype)
            updated = (1.0 - beta) * target + beta * cosine
            position = tf.one_hot(i, num_tasks)[:, None] * tf.one_hot(j, num_tasks)[None, :]
            new_targets = tf.where(tf.logical_and(other, position > 0), updated, new_targets)
        rows.append(coefficients)
    return tf.add_n(rows), new_targets


@register
class GradVac(GradientMethod):
    """GradVac (Wang et al. 2021): `beta` (default 0.5, LibMTL's; the paper tunes it, e.g. 1e-2) is the rate of the
    targets' moving average.

    Example:

    >>> import tensorflow as tf
    >>> method = GradVac()
    >>> _ = method.build_for_tasks(2)
    >>> gram = tf.constant([[1.0, -1.0], [-1.0, 2.0]])  # targets 0 at first: PCGrad's update, g1 + g2/2, g2 + g1
    >>> [round(float(a), 3) for a in method.coefficients(gram, tf.constant(0, tf.int64))]
    [2.0, 1.5]
    """

    name = "gradvac"

    def __init__(self, space: str | None = None, beta: float = 0.5, seed: int = DEFAULT_SEED, update_every: int = 1):
        super().__init__(space, update_every)
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"GradVac: beta must be in (0, 1], got {beta}.")
        self.beta, self.seed = float(beta), seed

    def create_state(self, num_tasks):
        self.targets = self.state_variable("target_cosines", (num_tasks, num_tasks))

    def coefficients(self, gram, step):
        alpha, targets = gradvac_coefficients(gram, random_orders(gram.shape[0], self.seed, step),
                                              tf.convert_to_tensor(self.targets), self.beta)
        self.stage(self.targets, targets)
        return alpha

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "seed": self.seed}
