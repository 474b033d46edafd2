"""CAGrad: the update that maximises the worst task's improvement within a ball around the average gradient.

Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.

Update rule: g0 = mean_t g_t, phi = c^2 ||g0||^2;
w* = argmin_{w in simplex} g_w . g0 + sqrt(phi) ||g_w||   with g_w = sum_t w_t g_t;
d = (g0 + sqrt(phi) / ||g_w*|| g_w*) / (1 + c^2)   (the paper's code rescales by 1 + c^2; `rescale=False` drops it).
With c = 0 it is plain averaging. The inner problem is T-dimensional and convex, and depends on the gradients only
through their Gram matrix. Up to `EXACT_MAX_TASKS` tasks it is solved exactly: on each face S of the simplex the
stationarity conditions b_S + r G_S w_S / ||g_w|| = lambda 1 (b = G w0, r = sqrt(phi)) give w_S proportional to
G_S^-1 (lambda 1 - b_S) with lambda the root of one quadratic, so every face has at most two candidates, and the
feasible candidate of lowest objective over all 2^T - 1 faces is the minimum (a convex function's minimum over a
simplex is a stationary point of the face it lies in). That is exact to float64 rounding (a 1e-9 ridge keeps
singular faces solvable), agrees with SciPy's SLSQP, LibMTL and torchjd to cosine 1.0000000 (benchmarks/results/
peer_agreement.md), and costs about 1-4 ms per step for T <= 10. Above that, mirror descent on the simplex
(exponentiated gradient, `iterations` steps) approximates it; the earlier default of 100 such steps for every T fell
short of the peers at T = 5 (cosine 0.99995, norm 0.1 % off).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, iterate, register

# 2^10 - 1 = 1,023 faces: a few milliseconds. Beyond that the enumeration grows faster than it pays.
EXACT_MAX_TASKS = 10
# Relative to the largest squared gradient norm: keeps a face whose gradients are linearly dependent solvable.
RIDGE = 1e-9
# A candidate's weights may dip this far below 0 by rounding and still count as on the simplex.
FEASIBILITY_TOLERANCE = 1e-7


def face_masks(num_tasks: int) -> np.ndarray:
    """Every non-empty face of the simplex as a 0/1 row over the tasks: (2^T - 1, T)."""
    return np.array([[float((k >> i) & 1) for i in range(num_tasks)] for k in range(1, 2**num_tasks)])


def cagrad_weights_exact(unit_gram: tf.Tensor, b: tf.Tensor, radius: tf.Tensor) -> tf.Tensor:
    """argmin over the simplex of w.b + radius ||g_w|| (float64, by enumerating the faces; see the module)."""
    num_tasks = unit_gram.shape[0]
    masks = tf.constant(face_masks(num_tasks))
    # On face S: solve G_S a = 1_S and G_S c = b_S (the identity off the face keeps the systems square).
    systems = (masks[:, :, None] * unit_gram[None] * masks[:, None, :] + tf.linalg.diag(1.0 - masks)
               + RIDGE * tf.linalg.diag(masks))
    solved = tf.linalg.solve(systems, tf.stack([masks, masks * b[None]], axis=-1))
    a, c = solved[..., 0] * masks, solved[..., 1] * masks
    # v = (lambda a - c) / radius must satisfy v' G v = 1: lambda^2 1'a - 2 lambda 1'c + b'c - radius^2 = 0.
    quadratic, linear = tf.reduce_sum(a, -1), tf.reduce_sum(c, -1)
    constant = tf.reduce_sum(b[None] * c, -1) - radius**2
    discriminant = linear**2 - quadratic * constant
    root = tf.sqrt(tf.maximum(discriminant, 0.0))
    lam = tf.stack([(linear + root) / quadratic, (linear - root) / quadratic], axis=1)  # (faces, 2)
    v = (lam[..., None] * a[:, None] - c[:, None]) / radius
    total = tf.reduce_sum(v, -1)  # 1 / ||g_w||: must be positive
    w = v / total[..., None]
    feasible = ((discriminant >= 0.0)[:, None] & (total > 0.0) & tf.reduce_all(w >= -FEASIBILITY_TOLERANCE, -1)
                & tf.reduce_all(tf.math.is_finite(w), -1))
    w = tf.maximum(tf.where(feasible[..., None], w, 0.0), 0.0)
    w = tf.math.divide_no_nan(w, tf.reduce_sum(w, -1, keepdims=True))
    norms = tf.sqrt(tf.maximum(tf.einsum("fkt,tu,fku->fk", w, unit_gram, w), 0.0))
    objective = tf.where(feasible, tf.reduce_sum(w * b, -1) + radius * norms, np.inf)
    return tf.gather(tf.reshape(w, [-1, num_tasks]), tf.argmin(tf.reshape(objective, [-1])))  # vectorizable


def cagrad_weights_mirror_descent(unit_gram, b, radius, iterations: int) -> tf.Tensor:
    """The same argmin, approximately: `iterations` exponentiated-gradient steps of normalised size 0.5."""
    num_tasks = unit_gram.shape[0]

    def mirror_step(logits):
        w = tf.nn.softmax(logits)
        gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(unit_gram, w), 1), 1e-20))
        gradient = b + radius * tf.linalg.matvec(unit_gram, w) / gw_norm
        return logits - 0.5 * gradient / tf.maximum(tf.reduce_max(tf.abs(gradient)), 1e-20)

    return tf.nn.softmax(iterate(mirror_step, tf.zeros([num_tasks], unit_gram.dtype), iterations))


def cagrad_coefficients(gram: tf.Tensor, c: float, iterations: int = 100, rescale: bool = True) -> tf.Tensor:
    num_tasks = gram.shape[0]
    gram = tf.cast(gram, tf.float64)
    mean = tf.fill([num_tasks], tf.constant(1.0 / num_tasks, tf.float64))
    scale = tf.maximum(tf.reduce_max(tf.abs(tf.linalg.diag_part(gram))), 1e-300)
    unit_gram = gram / scale  # the argmin does not depend on the gradients' scale
    b = tf.linalg.matvec(unit_gram, mean)
    radius = c * tf.sqrt(tf.maximum(tf.tensordot(mean, b, 1), 0.0))
    if c == 0:
        return tf.cast(mean, tf.float32)  # radius 0: the average, whatever w
    if num_tasks <= EXACT_MAX_TASKS:
        w = cagrad_weights_exact(unit_gram, b, radius)
    else:
        w = cagrad_weights_mirror_descent(unit_gram, b, radius, iterations)
    gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(unit_gram, w), 1), 0.0))
    # g0 = 0 (radius 0) or g_w = 0 (a zero-gradient task's vertex): d = g0, the average.
    alpha = mean + tf.where(gw_norm > 0, tf.math.divide_no_nan(radius, gw_norm), 0.0) * w
    return tf.cast(alpha / (1.0 + c**2) if rescale else alpha, tf.float32)


@register
class CAGrad(GradientMethod):
    """CAGrad (Liu et al. 2021). `c` (default 0.5, the paper's usual value) sets the radius of the ball;
    `iterations`: mirror-descent steps, used only above `EXACT_MAX_TASKS` tasks (exact below).

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
