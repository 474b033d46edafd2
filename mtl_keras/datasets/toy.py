"""The two-objective toy problem of CAGrad (Liu et al. 2021) and Nash-MTL (Navon et al. 2022), x in R^2.

    f1 = log(max(|0.5(-x1 - 7) - tanh(-x2)|, 5e-6)) + 6,   f2 = log(max(|0.5(-x1 + 3) + tanh(-x2) + 2|, 5e-6)) + 6,
    c1 = max(tanh(x2 / 2), 0),   c2 = max(tanh(-x2 / 2), 0),
    L1 = scale * (c1 f1 + c2 (((-x1 + 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20)),
    L2 =          c1 f2 + c2 (((-x1 - 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20),

with scale = 0.1 (Nash-MTL's imbalanced version). The "- 20" sits inside the c2 term, as in both papers' code
(`f1_sq = (...) / 10 - 20; f1 = f1 * c1 + f1_sq * c2`); it matters, because c2 depends on x2.

Above x2 = 0 the objectives are two log valleys that trap plain gradient descent; below, two quadratic bowls centred
at x1 = 7 and x1 = -7. The Pareto set is the curve {(x1, x2*(x1)) : -7 <= x1 <= 7}, x2* going from -8.355 at x1 = 0
to -8.434 at x1 = +-7 (the papers' plot draws it at x2 = -8.3552): there the convex combination of the two gradients
with weights proportional to (x1 + 7, 7 - x1) cancels the x1 components, and x2* is where it also cancels the x2
components,

    -0.5 sech^2(x2 / 2) ((49 - x1^2 + 0.1 (x2 + 8)^2) / 10 - 20) + 0.02 tanh(-x2 / 2) (x2 + 8) = 0,

the single root in (-10, -8) (below -10 the residual is negative, above -8 positive) found by `pareto_x2`. It is
not x2 = -8: the derivative of c2 times the bowls' "- 20" pulls it down. No point above x2 = 0 dominates the curve:
there L1 >= 0.1 (log 5e-6 + 6) = -0.62 and L2 >= -6.2, while along the curve L1 < -0.62 wherever L2 >= -6.2.

Example:

>>> import tensorflow as tf
>>> [round(float(v), 3) for v in toy_losses(tf.constant([0.0, -8.0]))]  # c1 = 0, c2 = tanh(4), bowls -15.1
[-1.509, -15.09]
>>> round(float(pareto_x2(0.0)), 3), round(float(distance_to_pareto_set([9.0, pareto_x2(7.0)])), 3)
(-8.355, 2.0)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

TOY_STARTS = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))
"""The five starting points of the papers' figures."""

FIRST_LOSS_SCALE = 0.1
_FLOOR = 5e-6  # the log's floor: the valleys are flat at the bottom


def toy_losses(x: tf.Tensor, first_loss_scale: float = FIRST_LOSS_SCALE) -> tf.Tensor:
    """[L1, L2] at x (shape [2], or [..., 2] for many points at once), differentiable in x; the formula is in the
    module docstring."""
    x1, x2 = x[..., 0], x[..., 1]
    f1 = tf.math.log(tf.maximum(tf.abs(0.5 * (-x1 - 7.0) - tf.tanh(-x2)), _FLOOR)) + 6.0
    f2 = tf.math.log(tf.maximum(tf.abs(0.5 * (-x1 + 3.0) + tf.tanh(-x2) + 2.0), _FLOOR)) + 6.0
    c1 = tf.maximum(tf.tanh(0.5 * x2), 0.0)
    c2 = tf.maximum(tf.tanh(-0.5 * x2), 0.0)
    bowl1 = ((-x1 + 7.0) ** 2 + 0.1 * (-x2 - 8.0) ** 2) / 10.0 - 20.0
    bowl2 = ((-x1 - 7.0) ** 2 + 0.1 * (-x2 - 8.0) ** 2) / 10.0 - 20.0
    return tf.stack([first_loss_scale * (c1 * f1 + c2 * bowl1), c1 * f2 + c2 * bowl2], axis=-1)


def pareto_x2(x1) -> np.ndarray:
    """x2 of the Pareto set above each x1 in [-7, 7] (bisection on the stationarity equation of the docstring)."""
    x1 = np.asarray(x1, dtype=np.float64)
    if np.any(np.abs(x1) > 7.0):
        raise ValueError(f"The Pareto set spans x1 in [-7, 7]; got x1 = {x1}.")

    def residual(x2):
        mixed_bowl = (49.0 - x1**2 + 0.1 * (x2 + 8.0) ** 2) / 10.0 - 20.0
        return -0.5 / np.cosh(0.5 * x2) ** 2 * mixed_bowl + 0.02 * np.tanh(-0.5 * x2) * (x2 + 8.0)

    low, high = np.full_like(x1, -10.0), np.full_like(x1, -8.0)  # residual(low) < 0 < residual(high)
    for _ in range(60):
        middle = 0.5 * (low + high)
        below = residual(middle) < 0.0
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return 0.5 * (low + high)


def toy_pareto_set(num_points: int = 281) -> np.ndarray:
    """Points [num_points, 2] along the Pareto set, x1 evenly spaced over [-7, 7]."""
    x1 = np.linspace(-7.0, 7.0, num_points)
    return np.stack([x1, pareto_x2(x1)], axis=1)


def distance_to_pareto_set(points) -> np.ndarray:
    """Euclidean distance from each point (shape [..., 2]) to the Pareto set, taken as a polyline through
    `toy_pareto_set()` (the curve bends by less than 1e-4 between its vertices)."""
    points = np.asarray(points, dtype=np.float64)
    curve = toy_pareto_set()
    starts, edges = curve[:-1], np.diff(curve, axis=0)
    offsets = points[..., None, :] - starts  # [..., segments, 2]
    along = np.clip((offsets * edges).sum(axis=-1) / (edges * edges).sum(axis=-1), 0.0, 1.0)
    return np.sqrt(((offsets - along[..., None] * edges) ** 2).sum(axis=-1)).min(axis=-1)
