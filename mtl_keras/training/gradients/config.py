"""ConFIG: the conflict-free direction, equally aligned with every task's gradient.

Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks", ICLR 2025 (arXiv
2408.11104, 2024).

Update rule: with u_t = g_t / ||g_t|| the unit gradients (rows of U), the direction is the minimum-norm solution of
U x = 1 (every unit gradient has the same positive projection on it), x = U^+ 1, normalised to d_u = x / ||x||;
the update is (sum_t g_t . d_u) d_u (the paper's default length: the sum of the gradients' projections). In Gram
space, with D = diag ||g_t|| and C = D^-1 G D^-1 the cosine matrix, x = J^T D^-1 C^+ 1, so x is a combination of
the gradients with weights v = D^-1 C^+ 1, and the update's coefficients are (1^T G v / v^T G v) v. A zero gradient
has no direction: it gets weight 0 (as a zero row of U would give in the pseudo-inverse).
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, register


def config_coefficients(gram: tf.Tensor, rcond: float = 1e-6) -> tf.Tensor:
    gram = tf.cast(gram, tf.float64)
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
    inverse_norms = tf.math.divide_no_nan(tf.ones_like(norms), norms)
    cosines = gram * inverse_norms[:, None] * inverse_norms[None, :]
    # The pseudo-inverse (what the paper's least-squares solve gives for parallel gradients, a singular C), from
    # the eigendecomposition of the symmetric C: eigenvalues below `rcond` of the largest count as 0.
    values, vectors = tf.linalg.eigh(cosines)
    kept = values > rcond * tf.maximum(tf.reduce_max(values), 1e-300)
    inverse_values = tf.where(kept, 1.0 / tf.where(kept, values, 1.0), 0.0)
    ones = tf.cast(norms > 0.0, tf.float64)
    weights = inverse_norms * tf.linalg.matvec(vectors, inverse_values * tf.linalg.matvec(vectors, ones,
                                                                                           transpose_a=True))
    g_weights = tf.linalg.matvec(gram, weights)
    length = tf.math.divide_no_nan(tf.reduce_sum(g_weights), tf.tensordot(weights, g_weights, 1))
    return tf.cast(length * weights, tf.float32)


@register
class ConFIG(GradientMethod):
    """ConFIG (Liu et al. 2024): the direction with equal cosine to every task gradient, its length the sum of their
    projections on it.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 4.0]])  # g1 = (1, 0), g2 = (0, 2): d = (1, 1) / sqrt(2)
    >>> [round(float(a), 3) for a in ConFIG().coefficients(gram, tf.constant(0, tf.int64))]  # (1.5, 1.5)
    [1.5, 0.75]
    """

    name = "config"

    def coefficients(self, gram, step):
        return config_coefficients(gram)
