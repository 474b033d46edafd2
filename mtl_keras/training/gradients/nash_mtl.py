"""Nash-MTL: the Nash bargaining solution between the tasks.

Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022.

Update rule: d = sum_t alpha_t g_t with alpha > 0 solving G alpha = 1 / alpha (elementwise), the first-order
condition of max_d sum_t log(g_t . d) over a ball. The paper solves it by a sequence of convex problems (cvxpy); here
Newton's method on h(alpha) = alpha * (G alpha) - 1, damped to keep alpha positive, on the T x T Gram matrix
(in float64). The
Gram matrix is normalised by its largest diagonal entry first (as the paper's code does), which only rescales d.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, iterate, register


def nash_coefficients(gram: tf.Tensor, iterations: int = 30, ridge: float = 1e-10) -> tf.Tensor:
    # float64: near-opposite gradients make the system nearly singular, and a ridge large enough to matter in
    # float32 (1e-6) decides where the method settles on the Pareto front instead of the bargaining condition.
    num_tasks = gram.shape[0]
    gram = tf.cast(gram, tf.float64)
    scale = tf.maximum(tf.reduce_max(tf.linalg.diag_part(gram)), 1e-30)
    unit_gram = gram / scale + ridge * tf.eye(num_tasks, dtype=tf.float64)
    alpha = 1.0 / tf.sqrt(tf.maximum(tf.linalg.diag_part(unit_gram), 1e-12))  # exact when gradients are orthogonal

    def newton_step(alpha):
        g_alpha = tf.linalg.matvec(unit_gram, alpha)
        residual = alpha * g_alpha - 1.0
        jacobian = tf.linalg.diag(g_alpha) + alpha[:, None] * unit_gram
        delta = tf.linalg.solve(jacobian, -residual[:, None])[:, 0]
        # Damp so that no coefficient loses more than 90 % of its value in one step.
        shrink = tf.reduce_min(tf.where(delta < 0.0, -0.9 * alpha / tf.minimum(delta, -1e-300), 1.0))
        return alpha + tf.minimum(tf.constant(1.0, tf.float64), shrink) * delta

    return tf.cast(iterate(newton_step, alpha, iterations) / tf.sqrt(scale), tf.float32)


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

    def __init__(self, space: str | None = None, iterations: int = 30):
        super().__init__(space)
        self.iterations = iterations

    def coefficients(self, gram, step):
        return nash_coefficients(gram, self.iterations)

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations}
