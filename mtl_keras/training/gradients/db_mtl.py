"""DB-MTL: dual-balancing multi-task learning (Lin et al., 2023, "Dual-Balancing for Multi-Task Learning").

Two balances in one update. Loss scale: each task contributes the gradient of log L_t, not of L_t, so that a task
whose loss is 100 times larger does not pull 100 times harder (d log L_t = g_t / L_t). Gradient magnitude: the
log-loss gradients are tracked by an exponential moving average, and each is rescaled to the largest norm among
them, so that every task moves the shared parameters by the same amount:

    b_t    <- ghat_t + beta_k (b_t - ghat_t),   ghat_t = g_t / (L_t + 1e-8),   beta_k = beta / k^beta_sigma
    update  = sum_t (max_s ||b_s|| / (||b_t|| + 1e-8)) b_t

(the paper's and LibMTL's rule; defaults beta = 0.9, beta_sigma = 0, i.e. a constant beta; b starts at 0, and k = 1
at the first step). The paper files DB-MTL under loss weightings; here it is a gradient method because it needs the
per-task gradients. The buffers b (T x P) are state: saved, backed up, mirrored. Parameter space only: the buffers
outlive a batch's representation. Every task's loss must be positive (it is the argument of a log): training stops
with a message at the first step where one is not.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import VectorGradientMethod, register

# Inside the log of each loss and under each norm, as in the paper's code.
EPSILON = 1e-8


@register
class DBMTL(VectorGradientMethod):
    """DB-MTL (Lin et al. 2023): log-loss gradients, tracked, rescaled to the largest norm.

    Example (beta = 0: no memory; log-loss gradients (2, 0) / 2 = (1, 0) and (0, 3) / 1 = (0, 3), both rescaled to
    norm 3):

    >>> import tensorflow as tf
    >>> method = DBMTL(beta=0.0)
    >>> _ = method.build_for_tasks(2, num_parameters=2)
    >>> update, weights = method.update(tf.constant([[2.0, 0.0], [0.0, 3.0]]), tf.constant([2.0, 1.0]),
    ...                                 tf.constant(0, tf.int64))
    >>> [round(float(u), 3) for u in update], [round(float(w), 3) for w in weights]
    ([3.0, 3.0], [3.0, 1.0])
    """

    name = "db_mtl"
    reuse_note = "it rescales the tracked log-loss gradients, not the step's"

    def __init__(self, space: str | None = None, beta: float = 0.9, beta_sigma: float = 0.0, update_every: int = 1):
        super().__init__(space, update_every)
        if self.space != "parameters":
            raise ValueError("DB-MTL: only space='parameters' (its tracked gradients outlive a batch's "
                             "representation).")
        if not 0 <= beta < 1 or beta_sigma < 0:
            raise ValueError(f"DB-MTL: need 0 <= beta < 1 and beta_sigma >= 0, got beta={beta}, "
                             f"beta_sigma={beta_sigma}.")
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)

    def create_state(self, num_tasks):
        self.buffers = self.vector_state_variable("log_loss_gradients", num_tasks)

    def update(self, gradients, losses, step):
        _check_positive(losses, "DB-MTL follows the gradient of log L_t")
        beta = self.beta / (tf.cast(step, tf.float32) + 1.0) ** self.beta_sigma
        log_gradients = gradients / (losses[:, None] + EPSILON)
        buffers = log_gradients + beta * (tf.convert_to_tensor(self.buffers) - log_gradients)
        norms = tf.norm(buffers, axis=1)
        alpha = tf.reduce_max(norms) / (norms + EPSILON)
        self.stage(self.buffers, buffers)
        return tf.linalg.matvec(buffers, alpha, transpose_a=True), alpha

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "beta_sigma": self.beta_sigma}


def _check_positive(losses, why: str):
    """Stops training with a message when a task's loss is not positive, where the method would otherwise move the
    wrong way without a word (a negative log-likelihood of a density can be negative; a zero loss divides by 1e-8)."""
    tf.debugging.assert_positive(losses, message=f"{why}, so every task's loss must be positive; one is not (a "
                                 "loss that can be negative or zero needs another method, or a positive offset)")
