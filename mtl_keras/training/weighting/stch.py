"""Smooth Tchebycheff scalarization: descend a smooth maximum of the tasks' normalised log-losses.

Lin, Zhang, Yang, Zhang & Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective Optimization", ICML 2024.

Update rule, in the paper's multi-task form: with a nadir point n_t (each task's mean training loss over the last
warm-up epoch) and smoothing mu, the objective is T mu log sum_t exp(log(L_t / n_t) / mu), a smooth stand-in for
T max_t log(L_t / n_t) (the worst task relative to where it started). Its gradient is sum_t w_t grad L_t with
w_t = T p_t / L_t, p = softmax(log(L / n) / mu): the step uses these weights, computed from the step's global losses
and held constant in the backward pass. During the `warmup_epochs` epochs the objective is sum_t log L_t
(w_t = 1 / L_t), and the last of them measures the nadir point. Small mu approaches the hard maximum (only the
worst task trains); large mu approaches the mean of the log-losses (w_t -> 1 / L_t).

The weighted sum the step logs as `loss` is then T at every step (sum_t T p_t): follow the per-task losses
instead.

LibMTL's STCH counts its warm-up differently: its `STCH_warmup_epoch=k` (log-losses for epochs 0..k, the nadir from
epoch k) is `warmup_epochs=k + 1` here.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.training.weighting.base import Weighting, register


@register
class SmoothTchebycheff(Weighting):
    """STCH (Lin et al. 2024) on log-losses normalised by a nadir point measured in the warm-up.

    Args:
        mu: the smoothing (> 0).
        warmup_epochs: epochs of plain log-loss training; the nadir point is the mean loss of the last of them.
            0: no warm-up, the nadir point is 1 for every task.
        epsilon: added to each loss before its logarithm.

    Example:

    >>> import tensorflow as tf
    >>> weighting = SmoothTchebycheff(mu=1.0, warmup_epochs=1)
    >>> weighting.build_for_tasks(["a", "b"], [1.0, 1.0])
    >>> [round(x, 3) for x in weighting.task_weights(tf.constant([2.0, 4.0]), 0).numpy().tolist()]  # warm-up: 1/L
    [0.5, 0.25]
    >>> weighting.update(tf.constant([2.0, 4.0]), 0)
    >>> weighting.on_epoch_end()  # the nadir point: [2, 4]
    >>> [round(x, 3) for x in weighting.task_weights(tf.constant([1.0, 4.0]), 1).numpy().tolist()]  # b is worse off
    [0.667, 0.333]
    """

    method_name = "stch"

    def __init__(self, mu: float = 1.0, warmup_epochs: int = 1, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        if mu <= 0:
            raise ValueError(f"STCH: mu must be > 0, got {mu}.")
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise ValueError(f"STCH: warmup_epochs must be a whole number >= 0, got {warmup_epochs}.")
        self.mu, self.warmup_epochs, self.epsilon = float(mu), int(warmup_epochs), float(epsilon)

    def create_state(self, num_tasks):
        self.nadir = self.state_variable("nadir", (num_tasks,), initializer="ones")
        self.warmup_loss_sum = self.state_variable("warmup_loss_sum", (num_tasks,))
        self.warmup_steps = self.state_variable("warmup_steps", ())
        self.epochs_done = self.state_variable("epochs_done", ())

    def _warming_up(self):
        return self.epochs_done < float(self.warmup_epochs)

    def task_weights(self, losses, step):
        losses = tf.convert_to_tensor(losses, tf.float32) + self.epsilon
        relative = tf.math.log(losses / tf.convert_to_tensor(self.nadir))
        smooth_max = self.num_tasks * tf.nn.softmax(relative / self.mu) / losses
        return tf.where(self._warming_up(), 1.0 / losses, smooth_max)

    def update(self, losses, step, gradient_norms=None):
        last_warmup_epoch = tf.equal(self.epochs_done, float(self.warmup_epochs - 1))
        self.warmup_loss_sum.assign(tf.where(last_warmup_epoch, self.warmup_loss_sum + losses,
                                             self.warmup_loss_sum))
        self.warmup_steps.assign(tf.where(last_warmup_epoch, self.warmup_steps + 1.0, self.warmup_steps))

    def on_epoch_end(self):
        self.epochs_done.assign_add(1.0)
        if float(self.epochs_done.numpy()) == self.warmup_epochs and float(self.warmup_steps.numpy()) > 0:
            self.nadir.assign(self.warmup_loss_sum / self.warmup_steps + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "mu": self.mu, "warmup_epochs": self.warmup_epochs, "epsilon": self.epsilon}
