"""MGDA-UB: the minimum-norm point of the convex hull of the task gradients.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.

Update rule: alpha = argmin_{alpha in simplex} || sum_t alpha_t g_t ||^2 (the MGDA direction, which decreases every
task's loss unless the point is Pareto-stationary, where it is 0). The "UB" variant takes g_t as the gradient of
task t on the shared representation Z instead of the shared parameters (an upper bound of the same problem), so it
costs T backward passes through the heads plus one ordinary backward pass: this is the default here
(`space="representation"`).

The minimum is found exactly: the optimum's support S satisfies G_S alpha_S = lambda * 1, so for up to
`exact_up_to` tasks every support is solved and the best feasible one kept; beyond, Frank-Wolfe iterations (the
paper's solver) run on the Gram matrix.
"""

from __future__ import annotations

import itertools

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, iterate, register


def _supports(num_tasks: int) -> tf.Tensor:
    masks = [[1.0 if t in subset else 0.0 for t in range(num_tasks)]
             for size in range(1, num_tasks + 1) for subset in itertools.combinations(range(num_tasks), size)]
    return tf.constant(masks, tf.float32)


def min_norm_exact(gram: tf.Tensor) -> tf.Tensor:
    """The min-norm simplex point, by solving every support (2^T - 1 small linear systems)."""
    num_tasks = gram.shape[0]
    masks = _supports(num_tasks)  # [S, T]
    scale = tf.maximum(tf.reduce_max(tf.abs(tf.linalg.diag_part(gram))), 1e-30)
    unit_gram = gram / scale
    outside = 1.0 - masks
    # Restrict G to each support; identity outside it so the system stays square and solvable. Solved in float64:
    # in float32 the 1e-9 ridge rounds away, and two parallel or opposite gradients (a singular G_S) made it raise.
    restricted = masks[:, :, None] * masks[:, None, :] * unit_gram[None] + tf.linalg.diag(outside)
    restricted = tf.cast(restricted, tf.float64) + tf.eye(num_tasks, dtype=tf.float64)[None] * 1e-9
    solution = tf.linalg.solve(restricted, tf.cast(masks[:, :, None], tf.float64))[:, :, 0]
    solution = tf.cast(solution, unit_gram.dtype) * masks
    total = tf.reduce_sum(solution, axis=1, keepdims=True)
    alpha = tf.math.divide_no_nan(solution, total)
    # total != 0, not > 0: near a Pareto-stationary point a float32 Gram can have an eigenvalue of -1e-8, which flips
    # the sign of both `solution` and `total` but not of `alpha`.
    feasible = tf.logical_and(tf.reduce_all(alpha >= -1e-7, axis=1), tf.squeeze(total, 1) != 0)
    alpha = tf.maximum(alpha, 0.0)
    alpha = alpha / tf.maximum(tf.reduce_sum(alpha, axis=1, keepdims=True), 1e-30)
    values = tf.einsum("si,ij,sj->s", alpha, unit_gram, alpha)
    values = tf.where(feasible, values, tf.fill(tf.shape(values), float("inf")))
    return tf.gather(alpha, tf.argmin(values))


def min_norm_frank_wolfe(gram: tf.Tensor, iterations: int = 250) -> tf.Tensor:
    """The min-norm simplex point by Frank-Wolfe with exact line search on the Gram matrix."""
    num_tasks = gram.shape[0]

    def frank_wolfe_step(alpha):
        gradient = tf.linalg.matvec(gram, alpha)
        direction = tf.one_hot(tf.argmin(gradient), num_tasks) - alpha
        curvature = tf.tensordot(direction, tf.linalg.matvec(gram, direction), 1)
        slope = tf.tensordot(direction, gradient, 1)
        return alpha + tf.clip_by_value(tf.math.divide_no_nan(-slope, curvature), 0.0, 1.0) * direction

    return iterate(frank_wolfe_step, tf.fill([num_tasks], 1.0 / num_tasks), iterations)


def min_norm(gram: tf.Tensor, exact_up_to: int = 6) -> tf.Tensor:
    """The min-norm point of the simplex under `gram`: exact up to `exact_up_to` tasks, Frank-Wolfe beyond."""
    return min_norm_exact(gram) if gram.shape[0] <= exact_up_to else min_norm_frank_wolfe(gram)


@register
class MGDA(GradientMethod):
    """MGDA-UB (Sener & Koltun 2018): the min-norm combination of the task gradients.

    Args:
        space: `"representation"` (default, MGDA-UB) or `"parameters"` (plain MGDA on the shared weights).
        exact_up_to: solve exactly up to this many tasks, Frank-Wolfe beyond.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 4.0]])  # g1 = (1, 0), g2 = (0, 2)
    >>> [round(float(a), 3) for a in MGDA().coefficients(gram, step=tf.constant(0, tf.int64))]
    [0.8, 0.2]
    """

    name = "mgda"
    default_space = "representation"

    def __init__(self, space: str | None = None, exact_up_to: int = 6, update_every: int = 1):
        super().__init__(space, update_every)
        self.exact_up_to = exact_up_to

    def coefficients(self, gram, step):
        return min_norm(gram, self.exact_up_to)

    def get_config(self):
        return {**super().get_config(), "exact_up_to": self.exact_up_to}
