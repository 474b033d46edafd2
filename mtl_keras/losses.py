"""Losses reduced over the examples that carry a label.

A task's loss is the mean of its per-example losses over the examples whose label is present. Missing labels reach
the loss as `sample_weight == 0` (see `mtl_keras.labels`); a batch in which no example has the label contributes 0,
not NaN. Per-pixel (or per-unit) losses are first averaged within each example, so a segmentation example weighs
as much as a classification example.

Example:

>>> loss = MaskedLoss("mse")
>>> float(loss([[1.0], [5.0], [0.0]], [[2.0], [1.0], [0.0]], sample_weight=[1.0, 0.0, 1.0]))
0.5
"""

from __future__ import annotations

import keras
from keras import ops


def _per_element(loss) -> keras.losses.Loss:
    """The given loss as a Keras Loss object that returns unreduced values."""
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, FunctionLoss):
        return loss
    if isinstance(loss, keras.losses.Loss):
        config = loss.get_config()
        config["reduction"] = None
        return type(loss).from_config(config)
    if callable(loss):
        return FunctionLoss(loss)
    raise TypeError(f"A loss must be a name, a keras.losses.Loss or a function, got {loss!r}.")


@keras.saving.register_keras_serializable(package="mtl_keras")
class MaskedLoss(keras.losses.Loss):
    """Wraps any Keras loss so that it averages over labelled examples only.

    Args:
        loss: a loss name (`"mse"`), a `keras.losses.Loss` instance or a loss function.
        name: the loss' name.
        class_weight: for labels that are class indices (one per example, or per pixel), one weight per class: each
            example's (or pixel's) loss is multiplied by its class's weight before the mean, whose denominator stays
            the count of labelled examples (as Keras' `class_weight` and scikit-learn weigh: weights of mean 1 over
            the training labels, as "balanced" ones are, keep the loss on its unweighted scale).

    Example with class weights (class 1 counts 3 times):

    >>> loss = MaskedLoss("sparse_categorical_crossentropy", class_weight=[1.0, 3.0])
    >>> import numpy as np
    >>> unweighted = MaskedLoss("sparse_categorical_crossentropy")
    >>> y, p = np.array([[0], [1]]), np.array([[0.8, 0.2], [0.4, 0.6]])
    >>> round(float(loss(y, p)), 4), round(float((-np.log(0.8) + 3 * -np.log(0.6)) / 2), 4)
    (0.8778, 0.8778)
    """

    def __init__(self, loss="mse", name: str | None = None, dtype=None, class_weight=None):
        super().__init__(name=name or "masked_loss", reduction="mean_with_sample_weight", dtype=dtype)
        self.inner = _per_element(loss)
        self.class_weight = None if class_weight is None else [float(w) for w in class_weight]

    def call(self, y_true, y_pred):
        values = self.inner(y_true, y_pred)
        if self.class_weight is not None:
            classes = ops.cast(y_true, "int32")
            if len(classes.shape) == len(values.shape) + 1:  # (batch, 1) class indices, (batch,) losses
                classes = ops.squeeze(classes, axis=-1)
            values = values * ops.take(ops.convert_to_tensor(self.class_weight, values.dtype), classes)
        if len(values.shape) > 1:
            values = ops.mean(values, axis=tuple(range(1, len(values.shape))))
        return values

    def get_config(self):
        return {"loss": keras.losses.serialize(self.inner), "name": self.name, "dtype": self.dtype,
                "class_weight": self.class_weight}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="mtl_keras")
class FunctionLoss(keras.losses.Loss):
    """A loss function `fn(y_true, y_pred) -> per-example values` as an unreduced, serializable Loss object."""

    def __init__(self, fn, name: str | None = None, dtype=None):
        super().__init__(name=name or getattr(fn, "__name__", "function_loss"), reduction=None, dtype=dtype)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred))

    def get_config(self):
        return {"fn": keras.saving.serialize_keras_object(self.fn), "name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)
