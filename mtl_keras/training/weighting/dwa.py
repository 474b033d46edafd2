"""Dynamic Weight Average: weight each task by how slowly its loss fell over the last two epochs.

Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.

Update rule: with Lbar_t(e) the mean training loss of task t over epoch e, r_t = Lbar_t(e-1) / Lbar_t(e-2) and
w_t = T exp(r_t / tau) / sum_k exp(r_k / tau); w_t = 1 for the first two epochs. tau = 2 in the paper.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.weighting.base import Weighting, register


@register
class DWA(Weighting):
    """Dynamic Weight Average (Liu et al. 2019) with temperature `temperature` (the paper's tau).

    Example:

    >>> import tensorflow as tf
    >>> weighting = DWA(temperature=2.0)
    >>> weighting.build_for_tasks(["a", "b"], [1.0, 1.0])
    >>> for epoch_losses in ([1.0, 1.0], [0.5, 1.0]):  # task a halved its loss, task b did not move
    ...     weighting.update(tf.constant(epoch_losses), 0)
    ...     weighting.on_epoch_end()
    >>> [round(x, 3) for x in weighting.task_weights(None, 0).numpy().tolist()]
    [0.876, 1.124]
    """

    method_name = "dwa"

    def __init__(self, temperature: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"DWA: temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    def create_state(self, num_tasks):
        self.epoch_loss_sum = self.state_variable("epoch_loss_sum", (num_tasks,))
        self.epoch_steps = self.state_variable("epoch_steps", ())
        self.last_epoch = self.state_variable("last_epoch_losses", (num_tasks,))
        self.epoch_before = self.state_variable("epoch_before_losses", (num_tasks,))
        self.epochs_seen = self.state_variable("epochs_seen", ())

    def task_weights(self, losses, step):
        ratios = tf.math.divide_no_nan(tf.convert_to_tensor(self.last_epoch), self.epoch_before)
        weights = self.num_tasks * tf.nn.softmax(ratios / self.temperature)
        return tf.where(self.epochs_seen >= 2.0, weights, tf.ones_like(weights))

    def update(self, losses, step, gradient_norms=None):
        self.epoch_loss_sum.assign_add(losses)
        self.epoch_steps.assign_add(1.0)

    def on_epoch_end(self):
        if float(self.epoch_steps.numpy()) == 0.0:
            return
        self.epoch_before.assign(self.last_epoch)
        self.last_epoch.assign(self.epoch_loss_sum / self.epoch_steps)
        self.epoch_loss_sum.assign(tf.zeros_like(self.epoch_loss_sum))
        self.epoch_steps.assign(0.0)
        self.epochs_seen.assign_add(1.0)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
