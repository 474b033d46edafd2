"""PCGrad: project each task gradient off the gradients it conflicts with.

Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.

Update rule: for each task i, start from g_i' = g_i and, for every other task j in a random order,
if g_i' . g_j < 0 then g_i' -= (g_i' . g_j / ||g_j||^2) g_j (the projection is onto the *original* g_j); the
update is sum_i g_i'. Every g_i' stays a combination of the original gradients, so the rule runs on their Gram
matrix: g_i' = sum_k c_ik g_k and g_i' . g_j = (c_i G)_j. The random order is drawn statelessly from
(seed, step): every replica draws the same one.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.training.gradients.base import GradientMethod, register


def pcgrad_coefficients(gram: tf.Tensor, orders: tf.Tensor) -> tf.Tensor:
    """PCGrad's `alpha` given, for each task i, the order `orders[i]` (a permutation of all tasks) to visit."""
    num_tasks = gram.shape[0]
    squared_norms = tf.linalg.diag_part(gram)
    rows = []
    for i in range(num_tasks):
        coefficients = tf.one_hot(i, num_tasks, dtype=gram.dtype)
        for k in range(num_tasks):
            j = orders[i, k]
            dot = tf.tensordot(coefficients, tf.gather(gram, j, axis=1), 1)
            conflict = tf.logical_and(dot < 0.0, tf.not_equal(j, i))
            shift = tf.math.divide_no_nan(dot, tf.gather(squared_norms, j))
            coefficients -= tf.where(conflict, shift, 0.0) * tf.one_hot(j, num_tasks, dtype=gram.dtype)
        rows.append(coefficients)
    return tf.add_n(rows)


def random_orders(num_tasks: int, seed: int, step) -> tf.Tensor:
    """For each task, a random order of all tasks ([T, T]), drawn statelessly from (seed, step)."""
    noise = tf.random.stateless_uniform([num_tasks, num_tasks],
                                        seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)]))
    return tf.argsort(noise, axis=1)


@register
class PCGrad(GradientMethod):
    """PCGrad (Yu et al. 2020): gradient surgery, random order, projections on the original gradients.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, -1.0], [-1.0, 2.0]])  # g1 = (1, 0), g2 = (-1, 1) conflict: g1 + g2/2, g2 + g1
    >>> [round(float(a), 3) for a in PCGrad().coefficients(gram, tf.constant(0, tf.int64))]
    [2.0, 1.5]
    """

    name = "pcgrad"

    def __init__(self, space: str | None = None, seed: int = DEFAULT_SEED, update_every: int = 1):
        super().__init__(space, update_every)
        self.seed = seed

    def coefficients(self, gram, step):
        return pcgrad_coefficients(gram, random_orders(gram.shape[0], self.seed, step))

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
