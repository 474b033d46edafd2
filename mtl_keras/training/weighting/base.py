"""The base of every loss-weighting method: per-task losses in, per-task weights out.

A weighting is a Keras layer so that its state (uncertainty's log-variances, GradNorm's weights, DWA's epoch losses)
lives in variables: saved in `.keras` files and checkpoints, mirrored under tf.distribute, restored by
BackupAndRestore. It is created by `MultiTaskModel.compile`, which calls `build_for_tasks`.

The training step calls, every step:
- `task_weights(losses, step)`: the weights of this step, given the *global* per-task losses (all-reduced over the
  replicas, so every replica computes the same weights). The result may depend differentiably on trainable variables
  of the weighting (uncertainty weighting); it must not depend on the model's weights.
- `penalty()`: a term added to the loss (uncertainty's log-variance regulariser), 0 by default.
- `update(losses, step, gradient_norms)`: state updates after the step (GradNorm, FAMO); `gradient_norms` is given
  when `needs_gradient_norms` is set: each task's weighted-loss gradient norm on `norm_variables`, all-reduced.
- `on_epoch_end()`: epoch-level updates (DWA), called by a callback that `MultiTaskModel.fit` adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import keras
import tensorflow as tf


class Weighting(keras.layers.Layer):
    """Maps per-task losses to per-task loss weights. Subclasses set `method_name` and override what they need."""

    method_name: ClassVar[str]
    needs_gradient_norms: ClassVar[bool] = False

    def __init__(self, **kwargs):
        kwargs.setdefault("name", f"{self.method_name}_weighting")
        super().__init__(**kwargs)
        self.task_names: list[str] = []
        self.loss_weights = None

    def build_for_tasks(self, task_names: Sequence[str], loss_weights: Sequence[float]) -> None:
        """Creates the state for these tasks; `loss_weights` are the static weights the user compiled with."""
        self.task_names = list(task_names)
        self.loss_weights = tf.constant(list(loss_weights), tf.float32)
        self.create_state(len(self.task_names))
        self.built = True

    def create_state(self, num_tasks: int) -> None:
        """Adds the method's variables (none by default)."""

    def state_variable(self, name: str, shape, initializer="zeros", dtype="float32") -> keras.Variable:
        """A non-trainable variable that every replica updates with the same value."""
        return self.add_weight(name=name, shape=shape, initializer=initializer, dtype=dtype, trainable=False,
                               aggregation="only_first_replica")

    def task_weights(self, losses: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def penalty(self) -> tf.Tensor:
        return tf.constant(0.0)

    def update(self, losses: tf.Tensor, step: tf.Tensor, gradient_norms: tf.Tensor | None = None) -> None:
        """State updates after a step (none by default)."""

    def on_epoch_end(self) -> None:
        """Epoch-level updates (none by default)."""

    def call(self, losses):
        return self.task_weights(losses, tf.constant(0, tf.int64))

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


def register(cls):
    """Registers a weighting for `.keras` round trips of a compiled model."""
    return keras.saving.register_keras_serializable(package="mtl_keras")(cls)
