"""Streaming metrics Keras lacks, or has only in a batch-averaged form.

Each accumulates exact sufficient statistics over an epoch, honours `sample_weight` (which is how missing labels
are left out), and round-trips through `get_config`.

Example:

>>> m = PearsonR()
>>> m.update_state([[1.0], [2.0], [3.0]], [[2.0], [4.0], [7.0]])
>>> round(float(m.result()), 4)
0.9934
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class PearsonR(keras.metrics.Metric):
    """Pearson correlation between targets and predictions over every example seen (not a mean of batch values).

    For outputs with several units, the units are flattened together.
    """

    def __init__(self, name: str = "pearson_r", dtype: str = "float64"):
        super().__init__(name=name, dtype=dtype)
        self._sums = {
            key: self.add_variable(shape=(), initializer="zeros", name=key, dtype=dtype)
            for key in ("n", "x", "y", "xx", "yy", "xy")
        }

    def update_state(self, y_true, y_pred, sample_weight=None):
        x = ops.reshape(ops.cast(y_true, self.dtype), (ops.shape(y_true)[0], -1))
        y = ops.reshape(ops.cast(y_pred, self.dtype), (ops.shape(y_pred)[0], -1))
        w = ops.ones_like(x) if sample_weight is None else ops.broadcast_to(
            ops.reshape(ops.cast(sample_weight, self.dtype), (-1, 1)), ops.shape(x)
        )
        terms = {"n": w, "x": w * x, "y": w * y, "xx": w * x * x, "yy": w * y * y, "xy": w * x * y}
        for key, value in terms.items():
            self._sums[key].assign_add(ops.sum(value))

    def result(self):
        s = self._sums
        n = ops.maximum(s["n"], 1e-12)
        covariance = s["xy"] / n - (s["x"] / n) * (s["y"] / n)
        variance_x = ops.maximum(s["xx"] / n - (s["x"] / n) ** 2, 0.0)
        variance_y = ops.maximum(s["yy"] / n - (s["y"] / n) ** 2, 0.0)
        return ops.divide_no_nan(covariance, ops.sqrt(variance_x * variance_y))

    def reset_state(self):
        for variable in self._sums.values():
            variable.assign(0.0)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


class _SparseConfusionMetric(keras.metrics.Metric):
    """Accumulates a (true class, predicted class) confusion matrix from integer labels and class probabilities."""

    def __init__(self, num_classes: int, name: str, dtype: str = "float64"):
        super().__init__(name=name, dtype=dtype)
        if int(num_classes) < 2:
            raise ValueError(f"{type(self).__name__}: num_classes must be >= 2, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", name="confusion", dtype=dtype
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predicted = ops.reshape(ops.argmax(y_pred, axis=-1), (-1,))
        weights = ops.ones_like(labels, dtype=self.dtype) if sample_weight is None else ops.reshape(
            ops.cast(sample_weight, self.dtype), (-1,)
        )
        true_one_hot = ops.one_hot(labels, self.num_classes, dtype=self.dtype) * weights[:, None]
        predicted_one_hot = ops.one_hot(predicted, self.num_classes, dtype=self.dtype)
        self.confusion.assign_add(ops.matmul(ops.transpose(true_one_hot), predicted_one_hot))

    def _per_class(self):
        true_positives = ops.diagonal(self.confusion)
        precision = ops.divide_no_nan(true_positives, ops.sum(self.confusion, axis=0))
        recall = ops.divide_no_nan(true_positives, ops.sum(self.confusion, axis=1))
        return precision, recall

    def reset_state(self):
        self.confusion.assign(ops.zeros_like(self.confusion))

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="mtl_keras")
class MacroPrecision(_SparseConfusionMetric):
    """Unweighted mean over classes of per-class precision (a class never predicted counts 0)."""

    def __init__(self, num_classes: int, name: str = "precision", dtype: str = "float64"):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        return ops.mean(self._per_class()[0])


@keras.saving.register_keras_serializable(package="mtl_keras")
class MacroRecall(_SparseConfusionMetric):
    """Unweighted mean over classes of per-class recall."""

    def __init__(self, num_classes: int, name: str = "recall", dtype: str = "float64"):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        return ops.mean(self._per_class()[1])


@keras.saving.register_keras_serializable(package="mtl_keras")
class MacroF1(_SparseConfusionMetric):
    """Unweighted mean over classes of per-class F1 (scikit-learn's `f1_score(average="macro")`).

    >>> f1 = MacroF1(num_classes=2)
    >>> f1.update_state([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> round(float(f1.result()), 4)
    0.6667
    """

    def __init__(self, num_classes: int, name: str = "f1", dtype: str = "float64"):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        precision, recall = self._per_class()
        return ops.mean(ops.divide_no_nan(2.0 * precision * recall, precision + recall))


@keras.saving.register_keras_serializable(package="mtl_keras")
class SparseMacroAUC(keras.metrics.AUC):
    """One-vs-rest ROC AUC averaged over classes, from integer labels and class probabilities."""

    def __init__(self, num_classes: int, name: str = "auc", num_thresholds: int = 200, dtype=None):
        super().__init__(name=name, num_thresholds=num_thresholds, multi_label=True, num_labels=int(num_classes),
                         dtype=dtype)
        self.num_classes = int(num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        if sample_weight is not None:
            sample_weight = ops.reshape(sample_weight, (-1, 1))
        return super().update_state(ops.one_hot(labels, self.num_classes), y_pred, sample_weight)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "num_thresholds": self.num_thresholds,
                "dtype": self.dtype}
