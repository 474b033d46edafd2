"""FAMO: fast adaptive multitask optimisation, balancing the tasks' rates of loss decrease at O(1) cost.

Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.

Update rule: z = softmax(xi); the step descends sum_t c z_t / (L_t - m_t) * L_t, i.e. weights
w_t = z_t / (c (L_t - m_t)) with c = 1 / sum_k z_k / (L_k - m_k) (m_t: a lower bound on L_t, 0 by default), which
is the gradient of sum_t z_t log(L_t - m_t) rescaled. Then xi moves by one Adam step (lr `learning_rate`, decay
`gamma`) along J_z(xi)^T d, with d_t = log(L_t - m_t) before the step - after it, so that tasks whose loss fell
least gain weight.

One deviation, to keep the cost at one forward and one backward pass: the paper re-evaluates the losses on the same
batch after the update; here "after" is the next step's batch (the losses the next step computes anyway).
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.weighting.base import Weighting, register


@register
class FAMO(Weighting):
    """FAMO (Liu et al. 2023), with the next batch's losses standing in for the re-evaluated ones.

    Example:

    >>> import tensorflow as tf
    >>> weighting = FAMO()
    >>> weighting.build_for_tasks(["a", "b"], [1.0, 1.0])
    >>> [round(x, 3) for x in weighting.task_weights(tf.constant([1.0, 3.0]), 0).numpy().tolist()]
    [0.75, 0.25]
    """

    method_name = "famo"

    def __init__(self, learning_rate: float = 0.025, gamma: float = 0.001, min_losses: float = 0.0,
                 epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.learning_rate, self.gamma = float(learning_rate), float(gamma)
        self.min_losses, self.epsilon = float(min_losses), float(epsilon)

    def create_state(self, num_tasks):
        self.logits = self.state_variable("logits", (num_tasks,))
        self.previous_losses = self.state_variable("previous_losses", (num_tasks,))
        self.adam_m = self.state_variable("adam_m", (num_tasks,))
        self.adam_v = self.state_variable("adam_v", (num_tasks,))
        self.updates = self.state_variable("updates", ())

    def _gaps(self, losses):
        return tf.maximum(losses - self.min_losses, 0.0) + self.epsilon

    def task_weights(self, losses, step):
        z = tf.nn.softmax(tf.convert_to_tensor(self.logits))
        gaps = self._gaps(losses)
        return z / gaps / tf.reduce_sum(z / gaps)

    def update(self, losses, step, gradient_norms=None):
        have_previous = tf.reduce_any(self.previous_losses > 0.0)
        decrease = tf.math.log(self._gaps(self.previous_losses)) - tf.math.log(self._gaps(losses))
        z = tf.nn.softmax(tf.convert_to_tensor(self.logits))
        gradient = z * (decrease - tf.reduce_sum(z * decrease)) + self.gamma * self.logits
        # One Adam step on the logits (beta1 0.9, beta2 0.999), as the paper's code does.
        count = self.updates + 1.0
        m = 0.9 * self.adam_m + 0.1 * gradient
        v = 0.999 * self.adam_v + 0.001 * tf.square(gradient)
        step_size = self.learning_rate * tf.sqrt(1.0 - 0.999**count) / (1.0 - 0.9**count)
        logits = self.logits - step_size * m / (tf.sqrt(v) + 1e-8)
        self.logits.assign(tf.where(have_previous, logits, self.logits))
        self.adam_m.assign(tf.where(have_previous, m, self.adam_m))
        self.adam_v.assign(tf.where(have_previous, v, self.adam_v))
        self.updates.assign(tf.where(have_previous, count, self.updates))
        self.previous_losses.assign(losses)

    def get_config(self):
        return {**super().get_config(), "learning_rate": self.learning_rate, "gamma": self.gamma,
                "min_losses": self.min_losses, "epsilon": self.epsilon}
