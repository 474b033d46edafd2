"""IMTL-G: the combination whose projection on every task's unit gradient is the same.

Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 (the gradient part, IMTL-G).

Update rule: with u_t = g_t / ||g_t||, find alpha (summing to 1) such that g . u_1 = g . u_t for every t, where
g = sum_t alpha_t g_t. With D = [g_1 - g_t]_{t>=2} and U = [u_1 - u_t]_{t>=2}:
alpha_{2..T} = g_1 U^T (D U^T)^{-1}, alpha_1 = 1 - sum alpha_{2..T}. Every product is a Gram entry divided by norms.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, register


def imtl_g_coefficients(gram: tf.Tensor) -> tf.Tensor:
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 1e-20))
    # products[i, j] = g_i . u_j
    products = gram / norms[None, :]
    first = products[0]  # g_1 . u_j
    # (D U^T)[i, j] = (g_1 - g_i) . (u_1 - u_j), for i, j >= 2
    du = (products[0, 0] - products[0, 1:][None, :] - products[1:, 0][:, None] + products[1:, 1:])
    gu = first[0] - first[1:]  # g_1 . (u_1 - u_j)
    num_tasks = gram.shape[0]
    rest = tf.linalg.solve(tf.transpose(du) + 1e-9 * tf.eye(num_tasks - 1), gu[:, None])[:, 0]
    return tf.concat([[1.0 - tf.reduce_sum(rest)], rest], axis=0)


@register
class IMTLG(GradientMethod):
    """IMTL-G (Liu et al. 2021): equal projections on every task's gradient direction.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 4.0]])  # g1 = (1, 0), g2 = (0, 2)
    >>> [round(float(a), 3) for a in IMTLG().coefficients(gram, tf.constant(0, tf.int64))]
    [0.667, 0.333]
    """

    name = "imtl_g"

    def coefficients(self, gram, step):
        if gram.shape[0] == 1:
            return tf.ones([1])
        return imtl_g_coefficients(gram)
