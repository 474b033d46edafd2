"""Random loss weighting: fresh random weights at every step.

Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022
(arXiv 2111.10603, 2021).

Update rule: w = softmax(z), z ~ N(0, I_T) drawn anew at every step (the paper's normal-softmax variant), so the
weights sum to 1. The draw is stateless, from (seed, step): every replica draws the same weights.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.training.weighting.base import Weighting, register


@register
class RandomLossWeighting(Weighting):
    """RLW (Lin et al. 2021): softmax of standard normal draws, new at every step.

    Example:

    >>> import tensorflow as tf
    >>> weighting = RandomLossWeighting(seed=1)
    >>> weighting.build_for_tasks(["a", "b", "c"], [1.0, 1.0, 1.0])
    >>> weights = weighting.task_weights(None, step=tf.constant(5, tf.int64))
    >>> round(float(tf.reduce_sum(weights)), 6), bool(tf.reduce_all(weights > 0))
    (1.0, True)
    """

    method_name = "rlw"

    def __init__(self, seed: int = DEFAULT_SEED, **kwargs):
        super().__init__(**kwargs)
        self.seed = int(seed)

    def task_weights(self, losses, step):
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        return tf.nn.softmax(tf.random.stateless_normal([self.num_tasks], seed=seed))

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
