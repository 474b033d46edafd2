"""`MultiTaskModel`: the functional Keras model every builder returns.

It is a `keras.Model` built from inputs and dict outputs, as `keras.Model(inputs, outputs)` would be, registered so
that `.keras` files load back as it. What it adds now is training under tf.distribute with string inputs (raw text,
categorical columns): before the first step Keras averages one batch over the replicas to build the model's
metrics, and tf.distribute cannot add strings (`AddN` of string fails). A functional model needs no averaged
batch, so this model builds from the first replica's part of the batch instead.

Example:

>>> import keras
>>> inputs = keras.Input((3,))
>>> model = MultiTaskModel(inputs, {"task": keras.layers.Dense(1, name="task")(inputs)})
>>> type(model).__name__, sorted(model.output)
('MultiTaskModel', ['task'])
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _first_replica(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return tf.distribute.get_strategy().experimental_local_results(value)[0]
    return value


@keras.saving.register_keras_serializable(package="mtl_keras")
class MultiTaskModel(keras.Model):
    """A functional multi-task model: one named output per task."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.x, TF backend) reduces the first distributed batch with "MEAN" here, which fails on strings.
        if iterator is None or getattr(self, "_distribute_strategy", None) is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            with self.distribute_strategy.scope():
                data_batch = tf.nest.map_structure(_first_replica, next(batches))
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)
