"""FairGrad: the update that gives the tasks alpha-fair shares of the loss decrease.

Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024.

Update rule: d = sum_t w_t g_t with w > 0 solving (G w)_t = w_t^(-1/alpha) for every task, the optimality condition
of max_d sum_t u_alpha(g_t . d) over a ball, with the alpha-fair utility u_alpha(x) = x^(1-alpha) / (1-alpha)
(alpha = 1: log x, proportional fairness, which is Nash-MTL's bargaining condition; alpha -> infinity approaches
max-min fairness). The paper's code solves the system with SciPy's `least_squares` from w = 1/T; here Newton's
method on h(w) = w^(1/alpha) * (G w) - 1 in float64, damped to keep w positive, from the exact solution for
orthogonal gradients. The Gram matrix is normalised by its largest diagonal entry s first; the solution for G is
then w = s^(-alpha / (1 + alpha)) times the one for G / s (the condition is homogeneous), so nothing is approximated.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, iterate, register


def fair_coefficients(gram: tf.Tensor, alpha: float, iterations: int = 30, ridge: float = 1e-10) -> tf.Tensor:
    """w > 0 with (G w)_t = w_t^(-1/alpha), by damped Newton steps (float64)."""
    # float64: near-opposite gradients make the system nearly singular, and a ridge large enough to matter in
    # float32 (1e-6) decides where the method settles instead of its condition.
    num_tasks = gram.shape[0]
    gram = tf.cast(gram, tf.float64)
    power = 1.0 / alpha
    scale = tf.maximum(tf.reduce_max(tf.linalg.diag_part(gram)), 1e-30)
    unit_gram = gram / scale + ridge * tf.eye(num_tasks, dtype=tf.float64)
    # Exact when the gradients are orthogonal: G_tt w_t = w_t^(-1/alpha).
    weights = tf.pow(tf.maximum(tf.linalg.diag_part(unit_gram), 1e-12), -alpha / (1.0 + alpha))

    def newton_step(weights):
        g_weights = tf.linalg.matvec(unit_gram, weights)
        lifted = tf.pow(weights, power)
        residual = lifted * g_weights - 1.0
        jacobian = tf.linalg.diag(power * lifted / weights * g_weights) + lifted[:, None] * unit_gram
        delta = tf.linalg.solve(jacobian, -residual[:, None])[:, 0]
        # Damp so that no weight loses more than 90 % of its value in one step.
        shrink = tf.reduce_min(tf.where(delta < 0.0, -0.9 * weights / tf.minimum(delta, -1e-300), 1.0))
        return weights + tf.minimum(tf.constant(1.0, tf.float64), shrink) * delta

    solution = iterate(newton_step, weights, iterations) * tf.pow(scale, -alpha / (1.0 + alpha))
    return tf.cast(solution, tf.float32)


@register
class FairGrad(GradientMethod):
    """FairGrad (Ban & Ji 2024): (G w)_t = w_t^(-1/alpha); `alpha` (default 1.0, the paper's usual value) sets
    how much the update favours the worst-off task.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 4.0]])  # orthogonal: w_t = ||g_t||^(-2 alpha / (1 + alpha))
    >>> [round(float(w), 3) for w in FairGrad(alpha=2.0).coefficients(gram, tf.constant(0, tf.int64))]
    [1.0, 0.397]
    """

    name = "fairgrad"

    def __init__(self, space: str | None = None, alpha: float = 1.0, iterations: int = 30, update_every: int = 1):
        super().__init__(space, update_every)
        if not alpha > 0:
            raise ValueError(f"FairGrad: alpha must be > 0, got {alpha}.")
        self.alpha, self.iterations = float(alpha), iterations

    def coefficients(self, gram, step):
        return fair_coefficients(gram, self.alpha, self.iterations)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "iterations": self.iterations}
