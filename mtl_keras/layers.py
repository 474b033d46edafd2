"""Small generic layers the other modules share (no multi-task concept in them)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class StopGradient(keras.layers.Layer):
    """The identity in the forward pass; no gradient flows back through it.

    >>> import tensorflow as tf
    >>> x = tf.Variable([1.0, 2.0])
    >>> with tf.GradientTape() as tape:
    ...     y = tf.reduce_sum(StopGradient()(x) * x)
    >>> tape.gradient(y, x).numpy().tolist()  # d/dx of (constant x) * x: the constant only
    [1.0, 2.0]
    """

    def call(self, inputs):
        return ops.stop_gradient(inputs)
