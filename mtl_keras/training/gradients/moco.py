"""MoCo: multi-objective gradient correction with tracked gradients (Fernando et al., ICLR 2023).

"Mitigating Gradient Bias in Multi-objective Learning: A Provably Convergent Approach". Stochastic MGDA is biased:
its weights are a non-linear function of noisy gradients. MoCo tracks each task's gradient with a moving estimate
y_t and moves the weights lambda by one step on MGDA's objective, built from the tracked gradients. At step k
(k = 1, 2, ...), with beta_k = beta / k^beta_sigma and gamma_k = gamma / k^gamma_sigma:

    y_t    <- y_t - beta_k (y_t - L_t g_t / ||g_t||)
    lambda <- softmax(lambda - gamma_k (Y Y^T + rho I) lambda)
    update  = Y^T lambda

As in the authors' code (and LibMTL's port), each gradient enters the tracking normalised and scaled by its loss
L_t, and lambda stays on the simplex through a softmax rather than the paper's Euclidean projection; lambda starts
at 1/T and y at 0. Y (T x P) and lambda are state: saved, backed up, mirrored. Not available in representation
space: Y tracks parameter gradients across steps, and a representation's gradient belongs to one batch. Every
task's loss must be >= 0 (a negative one would reverse its gradient): training stops with a message if one is not.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_keras.training.gradients.base import VectorGradientMethod, register

# Added to each gradient's norm before dividing (the authors' 1e-8): a task with a zero gradient tracks zero.
NORM_EPSILON = 1e-8


@register
class MoCo(VectorGradientMethod):
    """MoCo (Fernando et al. 2023). Defaults: LibMTL's (beta 0.5, gamma 0.1, both decaying as k^-0.5, rho 0).

    Example (the first step from y = 0: y_t = beta L_t g_t / ||g_t||; by hand: y = [[1, 0], [0, 1]] and
    lambda = softmax((0.5, 0.5) - 0.1 (0.5, 0.5)) = (0.5, 0.5)):

    >>> import tensorflow as tf
    >>> method = MoCo(beta=1.0)
    >>> _ = method.build_for_tasks(2, num_parameters=2)
    >>> update, weights = method.update(tf.constant([[3.0, 0.0], [0.0, 0.5]]), tf.constant([1.0, 1.0]),
    ...                                 tf.constant(0, tf.int64))
    >>> [round(float(u), 3) for u in update], [round(float(w), 3) for w in weights]
    ([0.5, 0.5], [0.5, 0.5])
    """

    name = "moco"
    reuse_note = "it applies its weights to the tracked gradients, not to the step's"

    def __init__(self, space: str | None = None, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1,
                 gamma_sigma: float = 0.5, rho: float = 0.0, update_every: int = 1):
        super().__init__(space, update_every)
        if self.space != "parameters":
            raise ValueError("MoCo: only space='parameters' (its tracked gradients outlive a batch's "
                             "representation).")
        if not 0 < beta <= 1 or not gamma > 0 or beta_sigma < 0 or gamma_sigma < 0 or rho < 0:
            raise ValueError(f"MoCo: need 0 < beta <= 1, gamma > 0 and beta_sigma, gamma_sigma, rho >= 0; got "
                             f"beta={beta}, gamma={gamma}, beta_sigma={beta_sigma}, gamma_sigma={gamma_sigma}, "
                             f"rho={rho}.")
        self.beta, self.beta_sigma, self.gamma, self.gamma_sigma, self.rho = (
            float(beta), float(beta_sigma), float(gamma), float(gamma_sigma), float(rho))

    def create_state(self, num_tasks):
        self.tracked = self.vector_state_variable("tracked_gradients", num_tasks)
        self.task_weights = self.state_variable("task_weights", (num_tasks,),
                                               keras.initializers.Constant(1.0 / num_tasks))

    def update(self, gradients, losses, step):
        tf.debugging.assert_non_negative(losses, message="MoCo scales each task's normalised gradient by its loss, so "
                                         "every task's loss must be >= 0; one is negative (a loss that can be "
                                         "negative needs another method, or a positive offset)")
        k = tf.cast(step, tf.float32) + 1.0
        beta = self.beta / k**self.beta_sigma
        gamma = self.gamma / k**self.gamma_sigma
        norms = tf.norm(gradients, axis=1, keepdims=True)
        target = gradients / (norms + NORM_EPSILON) * losses[:, None]
        tracked = tf.convert_to_tensor(self.tracked)
        tracked = tracked - beta * (tracked - target)
        weights = tf.convert_to_tensor(self.task_weights)
        num_tasks = gradients.shape[0]
        objective = tf.matmul(tracked, tracked, transpose_b=True) + self.rho * tf.eye(num_tasks)
        weights = tf.nn.softmax(weights - gamma * tf.linalg.matvec(objective, weights))
        self.stage(self.tracked, tracked)
        self.stage(self.task_weights, weights)
        return tf.linalg.matvec(tracked, weights, transpose_a=True), weights

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "beta_sigma": self.beta_sigma, "gamma": self.gamma,
                "gamma_sigma": self.gamma_sigma, "rho": self.rho}
