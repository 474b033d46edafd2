"""Aligned-MTL: align the task gradients so that their matrix has condition number 1.

Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023.

Update rule: with G the T x P matrix of task gradients and G G^T = V diag(lambda) V^T (its Gram matrix), keep the
eigenvalues above a relative tolerance, B = sqrt(lambda_min) V diag(lambda^-1/2) V^T, and the aligned gradients are
B G (equal singular values, sqrt(lambda_min)). The update is their sum, so alpha = B 1.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, register


def aligned_coefficients(gram: tf.Tensor, tolerance: float = 1e-6) -> tf.Tensor:
    eigenvalues, vectors = tf.linalg.eigh(gram)
    kept = eigenvalues > tolerance * tf.maximum(tf.reduce_max(eigenvalues), 1e-30)
    inverse_root = tf.where(kept, tf.math.rsqrt(tf.maximum(eigenvalues, 1e-30)), 0.0)
    smallest = tf.reduce_min(tf.where(kept, eigenvalues, float("inf")))
    smallest = tf.where(tf.math.is_finite(smallest), smallest, 0.0)
    balance = tf.sqrt(smallest) * (vectors * inverse_root[None, :]) @ tf.transpose(vectors)
    return tf.reduce_sum(balance, axis=1)


@register
class AlignedMTL(GradientMethod):
    """Aligned-MTL (Senushkin et al. 2023): gradients aligned to equal singular values, then summed.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 4.0]])  # orthogonal: each aligned gradient gets the smallest norm
    >>> [round(float(a), 3) for a in AlignedMTL().coefficients(gram, tf.constant(0, tf.int64))]
    [1.0, 0.5]
    """

    name = "aligned_mtl"

    def __init__(self, space: str | None = None, tolerance: float = 1e-6, update_every: int = 1):
        super().__init__(space, update_every)
        self.tolerance = tolerance

    def coefficients(self, gram, step):
        return aligned_coefficients(gram, self.tolerance)

    def get_config(self):
        return {**super().get_config(), "tolerance": self.tolerance}
