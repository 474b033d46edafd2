"""GradNorm: weights that equalise the tasks' gradient norms, pushed towards slow-learning tasks.

Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.

Update rule: with G_t = || grad_W (w_t L_t) || on the chosen shared weights W (by default the last shared layer),
L_t(0) the initial losses (the mean over the first `initial_steps` steps), r_t = (L_t / L_t(0)) / mean_k(L_k / L_k(0))
and the target T_t = mean_k(G_k) * r_t^alpha held constant (detached), the weights take a gradient step on
L_grad = sum_t |G_t - T_t|, i.e. w_t -= lr * sign(G_t - T_t) * G_t / w_t, and are then renormalised to sum to T.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from mtl_keras.training.weighting.base import Weighting, register


@register
class GradNorm(Weighting):
    """GradNorm (Chen et al. 2018).

    Args:
        alpha: the restoring force towards slow tasks (the paper uses 0.12 to 3; 1.5 is common).
        learning_rate: step size of the weights' own update.
        initial_steps: how many first steps average into L_t(0).
        layers: names of the layers whose trainable weights W the norms are taken on; None picks the last shared
            layer (the shared layers nearest the heads that have weights).

    Example:

    >>> import tensorflow as tf
    >>> weighting = GradNorm(alpha=1.0, learning_rate=0.1, initial_steps=1)
    >>> weighting.build_for_tasks(["a", "b"], [1.0, 1.0])
    >>> weighting.update(tf.constant([1.0, 1.0]), 0, tf.constant([1.0, 1.0]))  # records L(0)
    >>> weighting.update(tf.constant([1.0, 1.0]), 1, tf.constant([3.0, 1.0]))  # task a's gradient is too large
    >>> [round(x, 3) for x in weighting.task_weights(None, 2).numpy().tolist()]
    [0.778, 1.222]
    """

    method_name = "gradnorm"
    needs_gradient_norms = True

    def __init__(self, alpha: float = 1.5, learning_rate: float = 0.025, initial_steps: int = 1,
                 layers: Sequence[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        if initial_steps < 1:
            raise ValueError(f"GradNorm: initial_steps must be >= 1, got {initial_steps}.")
        self.alpha, self.learning_rate, self.initial_steps = float(alpha), float(learning_rate), int(initial_steps)
        self.layers = list(layers) if layers else None

    def create_state(self, num_tasks):
        self.weights_ = self.state_variable("task_weights", (num_tasks,), "ones")
        self.initial_losses = self.state_variable("initial_losses", (num_tasks,))
        self.steps_seen = self.state_variable("steps_seen", (), dtype="float32")

    def task_weights(self, losses, step):
        return tf.convert_to_tensor(self.weights_)

    def update(self, losses, step, gradient_norms=None):
        count = tf.convert_to_tensor(self.steps_seen)
        warming = count < self.initial_steps
        self.initial_losses.assign(tf.where(warming, (self.initial_losses * count + losses) / (count + 1.0),
                                            self.initial_losses))
        self.steps_seen.assign(count + 1.0)
        weights = tf.convert_to_tensor(self.weights_)
        ratios = tf.math.divide_no_nan(losses, self.initial_losses)
        relative = tf.math.divide_no_nan(ratios, tf.reduce_mean(ratios))
        target = tf.reduce_mean(gradient_norms) * tf.pow(relative, self.alpha)
        gradient = tf.sign(gradient_norms - target) * tf.math.divide_no_nan(gradient_norms, weights)
        updated = tf.maximum(weights - self.learning_rate * gradient, 1e-3)
        updated = updated * self.num_tasks / tf.reduce_sum(updated)
        self.weights_.assign(tf.where(warming, weights, updated))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "learning_rate": self.learning_rate,
                "initial_steps": self.initial_steps, "layers": self.layers}
