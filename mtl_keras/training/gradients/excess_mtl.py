"""ExcessMTL: robust multi-task learning by excess risks (He et al., ICML 2024).

"Robust Multi-Task Learning with Excess Risks". Weights go to the tasks that are farthest from their best, measured
not by the loss (which a noisy task keeps high forever) but by an estimate of its *excess risk*: the decrease a
Newton-like step could still make, with the Hessian diagonal approximated by AdaGrad's accumulated squared
gradients H_t = diag(sqrt(sum_steps g_t^2 + 1e-7)):

    e_t = g_t^T H_t^{-1} g_t
    first step: e0_t = e_t (the weights stay at 1)
    later:      w_t <- w_t exp(eta e_t / e0_t),  then w <- T w / sum(w)   (computed as T softmax(log w + eta e / e0),
                                                    which cannot overflow)
    update      = sum_t w_t g_t

(the paper's Algorithm 1, in the official code's form, as LibMTL has it; eta = `robust_step_size`, 1e-2). The
accumulated squares (T x P), e0 and w are state: saved, backed up, mirrored. As for every gradient method here, the
weights act on the shared parameters; each head keeps its own task's gradient, where LibMTL's code also weights it.
Its update is a combination of the step's own gradients, so `update_every` reuses the weights.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_keras.training.gradients.base import VectorGradientMethod, register

# Under AdaGrad's square root, as in the official code.
EPSILON = 1e-7


@register
class ExcessMTL(VectorGradientMethod):
    """ExcessMTL (He et al. 2024): weights grow with each task's excess risk relative to its first.

    Example (two steps on the same gradients g1 = (1, 0), g2 = (0, 2); e_t = ||g_t||^2 / sqrt(k ||g_t||^2) per
    coordinate, so e2 / e0 = 1/sqrt(2) for both tasks and the weights stay equal):

    >>> import tensorflow as tf
    >>> method = ExcessMTL()
    >>> _ = method.build_for_tasks(2, num_parameters=2)
    >>> gradients, losses = tf.constant([[1.0, 0.0], [0.0, 2.0]]), tf.constant([1.0, 1.0])
    >>> for step in range(2):
    ...     update, weights, state = method.update_and_state(gradients, losses, tf.constant(step, tf.int64))
    ...     for variable, value in zip(method.state_variables, state):
    ...         _ = variable.assign(value)
    >>> [round(float(w), 3) for w in weights]
    [1.0, 1.0]
    """

    name = "excess_mtl"
    reusable = True

    def __init__(self, space: str | None = None, robust_step_size: float = 1e-2, update_every: int = 1):
        super().__init__(space, update_every)
        if self.space != "parameters":
            raise ValueError("ExcessMTL: only space='parameters' (its accumulated squares outlive a batch's "
                             "representation).")
        if not robust_step_size > 0:
            raise ValueError(f"ExcessMTL: robust_step_size must be > 0, got {robust_step_size}.")
        self.robust_step_size = float(robust_step_size)

    def create_state(self, num_tasks):
        self.squared_sums = self.vector_state_variable("squared_gradient_sums", num_tasks)
        self.first_excess = self.state_variable("first_excess", (num_tasks,))
        self.started = self.state_variable("started", ())
        self.task_weights = self.state_variable("task_weights", (num_tasks,), keras.initializers.Constant(1.0))

    def excess(self, gradients, squared_sums):
        """e_t = g_t^T diag(sqrt(squared_sums_t + 1e-7))^-1 g_t, [T]."""
        return tf.reduce_sum(gradients**2 / tf.sqrt(squared_sums + EPSILON), axis=1)

    def update(self, gradients, losses, step):
        squared_sums = tf.convert_to_tensor(self.squared_sums) + gradients**2
        excess = self.excess(gradients, squared_sums)
        started = tf.convert_to_tensor(self.started) > 0
        first = tf.where(started, tf.convert_to_tensor(self.first_excess), excess)
        weights = tf.convert_to_tensor(self.task_weights)
        # w exp(eta e / e0), renormalised to sum T, as a softmax of log-weights: the same numbers, but e / e0 can
        # reach thousands (e0 is the first step's, often tiny) and exp of it would overflow to inf, then NaN.
        logits = tf.math.log(tf.maximum(weights, 1e-30)) + self.robust_step_size * tf.math.divide_no_nan(excess, first)
        grown = tf.nn.softmax(logits) * gradients.shape[0]
        weights = tf.where(started, grown, weights)
        self.stage(self.squared_sums, squared_sums)
        self.stage(self.first_excess, first)
        self.stage(self.started, tf.ones([]))
        self.stage(self.task_weights, weights)
        return tf.linalg.matvec(gradients, weights, transpose_a=True), weights

    def get_config(self):
        return {**super().get_config(), "robust_step_size": self.robust_step_size}
