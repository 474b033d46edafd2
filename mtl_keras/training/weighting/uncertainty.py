"""Uncertainty weighting: each task's weight is learned through a homoscedastic log-variance.

Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics",
CVPR 2018.

Update rule: with s_t = log sigma_t^2 a trainable variable (0 at start), the loss is
sum_t 0.5 exp(-s_t) L_t + 0.5 s_t (the paper's regression form, used for every task as most implementations do),
so d/ds_t = 0.5 (1 - exp(-s_t) L_t): s_t settles where exp(s_t) = L_t and each task's weight is 1 / (2 L_t).
The log-variances are ordinary trainable weights: the optimizer updates them, checkpoints and exports keep them.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.weighting.base import Weighting, register


@register
class UncertaintyWeighting(Weighting):
    """Learned log-variances `s_t`: weight 0.5 exp(-s_t), penalty 0.5 s_t.

    Args:
        initial_log_variance: the starting s_t (0: every weight starts at 0.5).

    Example:

    >>> import tensorflow as tf
    >>> weighting = UncertaintyWeighting()
    >>> weighting.build_for_tasks(["a", "b"], [1.0, 1.0])
    >>> weighting.task_weights(tf.constant([2.0, 4.0]), step=0).numpy().tolist(), float(weighting.penalty())
    ([0.5, 0.5], 0.0)
    """

    method_name = "uncertainty"

    def __init__(self, initial_log_variance: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_log_variance = float(initial_log_variance)

    def create_state(self, num_tasks):
        self.log_variance = self.add_weight(
            name="log_variance", shape=(num_tasks,), trainable=True,
            initializer=lambda shape, dtype: tf.fill(shape, tf.cast(self.initial_log_variance, dtype)))

    def task_weights(self, losses, step):
        return 0.5 * tf.exp(-tf.cast(self.log_variance, tf.float32))

    def penalty(self):
        return 0.5 * tf.reduce_sum(tf.cast(self.log_variance, tf.float32))

    def get_config(self):
        return {**super().get_config(), "initial_log_variance": self.initial_log_variance}
