"""SDMGrad: MGDA's direction pulled towards the average gradient.

Xiao et al., "Direction-oriented Multi-objective Learning: Simple and Provable Stochastic Algorithms", NeurIPS 2023.

Update rule: w* = argmin_{w in simplex} || g_w + lambda g0 ||^2 with g_w = sum_t w_t g_t and g0 = mean_t g_t; the
update is (g_w* + lambda g0) / (1 + lambda). lambda = 0 is MGDA; a large lambda approaches plain averaging. Since
the weights sum to 1, g_w + lambda g0 = sum_t w_t (g_t + lambda g0): w* is MGDA's min-norm point of the shifted
gradients, whose Gram matrix is A G A^T with A = I + lambda 1 u^T (u = 1/T), solved exactly by MGDA's solver; the
coefficients are (w* + lambda u) / (1 + lambda).

Two differences from the paper's algorithm, both of the single-batch step: the paper estimates G from two
independent mini-batches and the update from a third (double sampling, for its convergence proof), where here all
come from the step's one batch; and its code runs 20 steps of projected SGD on w, where this solves for w exactly.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, register
from mtl_keras.training.gradients.mgda import min_norm


def sdmgrad_coefficients(gram: tf.Tensor, lam: float, exact_up_to: int = 6) -> tf.Tensor:
    num_tasks = gram.shape[0]
    mean = tf.fill([num_tasks], 1.0 / num_tasks)
    shift = tf.eye(num_tasks) + lam * tf.ones([num_tasks, 1]) * mean[None, :]
    weights = min_norm(tf.matmul(tf.matmul(shift, gram), shift, transpose_b=True), exact_up_to)
    return (weights + lam * mean) / (1.0 + lam)


@register
class SDMGrad(GradientMethod):
    """SDMGrad (Xiao et al. 2023), deterministic on the step's batch; `lam` (default 0.3, the paper's code's
    default) pulls MGDA's direction towards the average gradient.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 4.0]])  # g1 = (1, 0), g2 = (0, 2)
    >>> [round(float(a), 3) for a in SDMGrad(lam=0.0).coefficients(gram, tf.constant(0, tf.int64))]  # = MGDA
    [0.8, 0.2]
    """

    name = "sdmgrad"

    def __init__(self, space: str | None = None, lam: float = 0.3, exact_up_to: int = 6, update_every: int = 1):
        super().__init__(space, update_every)
        if lam < 0:
            raise ValueError(f"SDMGrad: lam must be >= 0, got {lam}.")
        self.lam, self.exact_up_to = float(lam), exact_up_to

    def coefficients(self, gram, step):
        return sdmgrad_coefficients(gram, self.lam, self.exact_up_to)

    def get_config(self):
        return {**super().get_config(), "lam": self.lam, "exact_up_to": self.exact_up_to}
