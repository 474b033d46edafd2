"""Nash-MTL: the Nash bargaining solution between the tasks.

Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022.

Update rule: d = sum_t alpha_t g_t with alpha > 0 solving G alpha = 1 / alpha (elementwise), the first-order
condition of max_d sum_t log(g_t . d) over a ball. The paper solves it by a sequence of convex problems (cvxpy); here
Newton's method on h(alpha) = alpha * (G alpha) - 1, damped to keep alpha positive, on the T x T Gram matrix
(in float64): FairGrad's solver at alpha = 1 (`fairgrad.fair_coefficients`). The Gram matrix is normalised by its
largest diagonal entry first (as the paper's code does), which only rescales d.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, register
from mtl_keras.training.gradients.fairgrad import fair_coefficients


def nash_coefficients(gram: tf.Tensor, iterations: int = 30) -> tf.Tensor:
    """alpha > 0 with alpha * (G alpha) = 1: FairGrad's condition at alpha = 1 (proportional fairness)."""
    return fair_coefficients(gram, 1.0, iterations)


@register
class NashMTL(GradientMethod):
    """Nash-MTL (Navon et al. 2022): alpha_t (G alpha)_t = 1 for every task.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 4.0]])  # orthogonal: alpha_t = 1 / ||g_t||
    >>> [round(float(a), 3) for a in NashMTL().coefficients(gram, tf.constant(0, tf.int64))]
    [1.0, 0.5]
    """

    name = "nash_mtl"

    def __init__(self, space: str | None = None, iterations: int = 30, update_every: int = 1):
        super().__init__(space, update_every)
        self.iterations = iterations

    def coefficients(self, gram, step):
        return nash_coefficients(gram, self.iterations)

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations}
