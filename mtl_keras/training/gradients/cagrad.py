"""CAGrad: the update that maximises the worst task's improvement within a ball around the average gradient.

Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.

Update rule: g0 = mean_t g_t, phi = c^2 ||g0||^2;
w* = argmin_{w in simplex} g_w . g0 + sqrt(phi) ||g_w||   with g_w = sum_t w_t g_t;
d = (g0 + sqrt(phi) / ||g_w*|| g_w*) / (1 + c^2)   (the paper's code rescales by 1 + c^2; `rescale=False` drops it).
With c = 0 it is plain averaging. The inner problem is T-dimensional: solved here by mirror descent on the simplex
(exponentiated gradient), all on the Gram matrix.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, iterate, register


def cagrad_coefficients(gram: tf.Tensor, c: float, iterations: int = 100, rescale: bool = True) -> tf.Tensor:
    num_tasks = gram.shape[0]
    mean = tf.fill([num_tasks], 1.0 / num_tasks)
    scale = tf.maximum(tf.reduce_max(tf.abs(tf.linalg.diag_part(gram))), 1e-30)
    unit_gram = gram / scale  # the argmin does not depend on the gradients' scale
    g0_norm = tf.sqrt(tf.maximum(tf.tensordot(mean, tf.linalg.matvec(unit_gram, mean), 1), 0.0))
    radius = c * g0_norm

    def mirror_step(logits):
        w = tf.nn.softmax(logits)
        gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(unit_gram, w), 1), 1e-20))
        gradient = tf.linalg.matvec(unit_gram, mean) + radius * tf.linalg.matvec(unit_gram, w) / gw_norm
        return logits - 0.5 * gradient / tf.maximum(tf.reduce_max(tf.abs(gradient)), 1e-20)

    w = tf.nn.softmax(iterate(mirror_step, tf.zeros([num_tasks]), iterations))
    gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(unit_gram, w), 1), 0.0))
    alpha = mean + tf.math.divide_no_nan(radius, gw_norm) * w
    return alpha / (1.0 + c**2) if rescale else alpha


@register
class CAGrad(GradientMethod):
    """CAGrad (Liu et al. 2021). `c` (default 0.5, the paper's usual value) sets the radius of the ball.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 1.0]])  # orthogonal, equal norms: w = (0.5, 0.5)
    >>> [round(float(a), 3) for a in CAGrad(c=0.5).coefficients(gram, tf.constant(0, tf.int64))]
    [0.6, 0.6]
    """

    name = "cagrad"

    def __init__(self, space: str | None = None, c: float = 0.5, iterations: int = 100, rescale: bool = True,
                 update_every: int = 1):
        super().__init__(space, update_every)
        if c < 0:
            raise ValueError(f"CAGrad: c must be >= 0, got {c}.")
        self.c, self.iterations, self.rescale = float(c), iterations, rescale

    def coefficients(self, gram, step):
        return cagrad_coefficients(gram, self.c, self.iterations, self.rescale)

    def get_config(self):
        return {**super().get_config(), "c": self.c, "iterations": self.iterations, "rescale": self.rescale}
