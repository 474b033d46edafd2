"""Static weighting: the fixed per-task weights given to compile (`loss_weights`), 1 for each task by default.

The baseline of every comparison: total loss = sum_t w_t L_t with w_t constant.
"""

from __future__ import annotations

from mtl_keras.training.weighting.base import Weighting, register


@register
class StaticWeighting(Weighting):
    """The compiled `loss_weights`, unchanged during training.

    Example:

    >>> import tensorflow as tf
    >>> weighting = StaticWeighting()
    >>> weighting.build_for_tasks(["a", "b"], [1.0, 0.5])
    >>> weighting.task_weights(tf.constant([2.0, 4.0]), step=0).numpy().tolist()
    [1.0, 0.5]
    """

    method_name = "static"

    def task_weights(self, losses, step):
        return self.loss_weights
