"""DualProj: the mean task gradient projected onto the dual cone of the task gradients.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv 2406.16232; torchjd's DualProj).

Update rule: with C = {x : g_t . x >= 0 for every t}, the update is proj_C((1/T) sum_t g_t) = J^T w with
w = argmin_{w >= 1/T} w^T G w (`dual_cone.project_weights`). Like UPGrad it lowers no task's loss to first order;
it projects once (the mean) rather than T times.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, register
from mtl_keras.training.gradients.dual_cone import check_task_count, project_weights


@register
class DualProj(GradientMethod):
    """DualProj (Quinton & Rey 2024): the mean gradient, projected onto the dual cone.

    Example:

    >>> import tensorflow as tf
    >>> gram = tf.constant([[1.0, -1.0], [-1.0, 2.0]])  # g1 = (1, 0), g2 = (-1, 1); mean (0, 0.5) has g1 . m = 0
    >>> [round(float(a), 3) for a in DualProj().coefficients(gram, tf.constant(0, tf.int64))]
    [0.5, 0.5]
    """

    name = "dualproj"

    def coefficients(self, gram, step):
        num_tasks = gram.shape[0]
        check_task_count("DualProj", num_tasks)
        return project_weights(gram, tf.fill([1, num_tasks], 1.0 / num_tasks))[0]
