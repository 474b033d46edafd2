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


def _crossentropy_settings(loss) -> tuple[bool, float] | None:
    """(from_logits, label_smoothing) of a binary cross-entropy (the class, or Keras' function by its name); None
    for any other loss."""
    if isinstance(loss, keras.losses.BinaryCrossentropy):
        config = loss.get_config()
        return bool(config.get("from_logits", False)), float(config.get("label_smoothing", 0.0))
    if isinstance(loss, FunctionLoss) and loss.fn is keras.losses.binary_crossentropy:
        return False, 0.0
    return None


def _floats(values) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


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

        positive_weight: for 0/1 label vectors (multilabel) under a binary cross-entropy, one weight per label: each
            label's positive term is multiplied by it (`-(w y log p + (1 - y) log(1 - p))`, PyTorch's `pos_weight`),
            before the mean over labels and examples.
        target_mean, target_std: for real-valued targets, one mean and one spread per output unit: labels and
            predictions (both in the user's units) are standardized, `(v - mean) / std`, before the inner loss, so
            a target in large units trains as a unit-scale one does (`Task(standardize_target=True)`).

    Example with class weights (class 1 counts 3 times):

    >>> loss = MaskedLoss("sparse_categorical_crossentropy", class_weight=[1.0, 3.0])
    >>> import numpy as np
    >>> unweighted = MaskedLoss("sparse_categorical_crossentropy")
    >>> y, p = np.array([[0], [1]]), np.array([[0.8, 0.2], [0.4, 0.6]])
    >>> round(float(loss(y, p)), 4), round(float((-np.log(0.8) + 3 * -np.log(0.6)) / 2), 4)
    (0.8778, 0.8778)

    A standardized target (mean 40, spread 10): an error of 10 hours costs what an error of 1 does in unit scale.

    >>> float(MaskedLoss("mse", target_mean=[40.0], target_std=[10.0])([[50.0]], [[40.0]]))
    1.0
    """

    def __init__(self, loss="mse", name: str | None = None, dtype=None, class_weight=None, positive_weight=None,
                 target_mean=None, target_std=None):
        super().__init__(name=name or "masked_loss", reduction="mean_with_sample_weight", dtype=dtype)
        self.inner = _per_element(loss)
        self.class_weight = _floats(class_weight)
        self.positive_weight = _floats(positive_weight)
        self.target_mean, self.target_std = _floats(target_mean), _floats(target_std)
        if (self.target_mean is None) != (self.target_std is None):
            raise ValueError("MaskedLoss standardizes a target with both target_mean and target_std, or neither.")
        if self.positive_weight is not None and _crossentropy_settings(self.inner) is None:
            raise ValueError(f"positive_weight weighs a binary cross-entropy's positive term; the loss is "
                             f"{type(self.inner).__name__}.")

    def call(self, y_true, y_pred):
        if self.target_mean is not None:
            y_pred = ops.convert_to_tensor(y_pred)
            mean = ops.convert_to_tensor(self.target_mean, y_pred.dtype)
            std = ops.convert_to_tensor(self.target_std, y_pred.dtype)
            y_true = (ops.cast(y_true, y_pred.dtype) - mean) / std
            y_pred = (y_pred - mean) / std
        if self.positive_weight is not None:
            values = self._positive_weighted_crossentropy(y_true, y_pred)
        else:
            values = self.inner(y_true, y_pred)
        if self.class_weight is not None:
            classes = ops.cast(y_true, "int32")
            if len(classes.shape) == len(values.shape) + 1:  # (batch, 1) class indices, (batch,) losses
                classes = ops.squeeze(classes, axis=-1)
            values = values * ops.take(ops.convert_to_tensor(self.class_weight, values.dtype), classes)
        if len(values.shape) > 1:
            values = ops.mean(values, axis=tuple(range(1, len(values.shape))))
        return values

    def _positive_weighted_crossentropy(self, y_true, y_pred):
        """Elementwise `-(w y log p + (1 - y) log(1 - p))`, with the inner cross-entropy's label smoothing and logits
        setting (Keras' own clipping of p)."""
        from_logits, smoothing = _crossentropy_settings(self.inner)
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        if smoothing:
            y_true = y_true * (1.0 - smoothing) + 0.5 * smoothing
        positive = ops.binary_crossentropy(ops.ones_like(y_pred), y_pred, from_logits=from_logits)  # -log p
        negative = ops.binary_crossentropy(ops.zeros_like(y_pred), y_pred, from_logits=from_logits)  # -log(1 - p)
        weight = ops.convert_to_tensor(self.positive_weight, y_pred.dtype)
        return weight * y_true * positive + (1.0 - y_true) * negative

    def get_config(self):
        return {"loss": keras.losses.serialize(self.inner), "name": self.name, "dtype": self.dtype,
                "class_weight": self.class_weight, "positive_weight": self.positive_weight,
                "target_mean": self.target_mean, "target_std": self.target_std}

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


@keras.saving.register_keras_serializable(package="mtl_keras")
class SparseCategoricalFocalCrossentropy(keras.losses.Loss):
    """Focal cross-entropy (Lin et al. 2017) for class-index labels: `-alpha (1 - p_t)^gamma log p_t`, with `p_t`
    the predicted probability of the true class; unreduced per example (per pixel for label maps). Keras has the
    focal loss for one-hot labels only (`CategoricalFocalCrossentropy`); this is it for the sparse labels of
    multiclass and segmentation tasks (`Task(loss="focal")`). `gamma=0`, `alpha=1` is the plain cross-entropy.

    >>> import numpy as np
    >>> loss = SparseCategoricalFocalCrossentropy(gamma=2.0)
    >>> round(float(loss([[0]], [[0.8, 0.2]])[0]), 4), round(float(-(1 - 0.8) ** 2 * np.log(0.8)), 4)
    (0.0089, 0.0089)
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 1.0, from_logits: bool = False,
                 name: str = "sparse_categorical_focal_crossentropy", reduction=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma, self.alpha, self.from_logits = float(gamma), float(alpha), bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        classes = ops.cast(y_true, "int32")
        if len(classes.shape) == len(y_pred.shape):  # (batch, 1) labels for (batch, classes) outputs
            classes = ops.squeeze(classes, axis=-1)
        crossentropy = ops.sparse_categorical_crossentropy(classes, y_pred, from_logits=self.from_logits)
        probability_of_truth = ops.exp(-crossentropy)
        return self.alpha * ops.power(1.0 - probability_of_truth, self.gamma) * crossentropy

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha, "from_logits": self.from_logits}
