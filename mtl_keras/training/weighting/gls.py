"""Geometric loss strategy: train on the geometric mean of the task losses.

Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss Strategy
for Multi-Task Learning", CVPR Workshops 2019.

Update rule: the objective is G = (prod_t L_t)^(1/T). Its gradient is sum_t dG/dL_t grad L_t with
dG/dL_t = G / (T L_t), so the step uses the weights w_t = G / (T L_t), computed from the (global) losses of the step
and held constant in the backward pass: the same update as differentiating G itself, and the weighted sum the step
logs as `loss` is G. A task whose loss is small gets a large weight: the geometric mean is scale-free, a task's
loss multiplied by a constant changes no weight's ratio to another's.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.weighting.base import Weighting, register


@register
class GeometricLossWeighting(Weighting):
    """GLS (Chennupati et al. 2019): the gradient of the geometric mean of the losses.

    Args:
        epsilon: added to each loss before its logarithm, so that a loss of 0 gives a finite weight.

    Example:

    >>> import tensorflow as tf
    >>> weighting = GeometricLossWeighting()
    >>> weighting.build_for_tasks(["a", "b"], [1.0, 1.0])
    >>> [round(x, 4) for x in weighting.task_weights(tf.constant([1.0, 4.0]), 0).numpy().tolist()]  # G = 2
    [1.0, 0.25]
    """

    method_name = "gls"

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        if epsilon < 0:
            raise ValueError(f"GLS: epsilon must be >= 0, got {epsilon}.")
        self.epsilon = float(epsilon)

    def task_weights(self, losses, step):
        losses = tf.convert_to_tensor(losses, tf.float32) + self.epsilon
        geometric_mean = tf.exp(tf.reduce_mean(tf.math.log(losses)))  # in log space: no product under/overflow
        return geometric_mean / (self.num_tasks * losses)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
