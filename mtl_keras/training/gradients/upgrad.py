"""UPGrad: the mean of every task gradient projected onto the dual cone of all of them.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv 2406.16232; torchjd's UPGrad).

Update rule: with C = {x : g_t . x >= 0 for every t}, the update is (1/T) sum_t proj_C(g_t). Each projection is
J^T w_t with w_t = argmin_{w >= e_t} w^T G w (`dual_cone.project_weights`), so alpha = (1/T) sum_t w_t. The update
lowers no task's loss to first order (it lies in C), and where the gradients do not conflict (all in C already) it
is their mean. For two conflicting gradients it is half of PCGrad's update.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, register
from mtl_keras.training.gradients.dual_cone import check_task_count, project_weights


@register
class UPGrad(GradientMethod):
    """UPGrad (Quinton & Rey 2024): the mean of the task gradients, each projected onto the dual cone.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, -1.0], [-1.0, 2.0]])  # g1 = (1, 0), g2 = (-1, 1): they conflict
    >>> [round(float(a), 3) for a in UPGrad().coefficients(gram, tf.constant(0, tf.int64))]  # (g1' + g2') / 2
    [1.0, 0.75]
    """

    name = "upgrad"

    def coefficients(self, gram, step):
        num_tasks = gram.shape[0]
        check_task_count("UPGrad", num_tasks)
        return tf.reduce_mean(project_weights(gram, tf.eye(num_tasks)), axis=0)
