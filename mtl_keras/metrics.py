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
    """Accumulates a (true class, predicted class) confusion matrix from integer labels and class probabilities.

    Labels may be one per example `(batch,)`/`(batch, 1)` or one per pixel `(batch, H, W)`; a sample weight per
    example applies to all of its pixels.
    """

    def __init__(self, num_classes: int, name: str, dtype: str = "float64"):
        super().__init__(name=name, dtype=dtype)
        if int(num_classes) < 2:
            raise ValueError(f"{type(self).__name__}: num_classes must be >= 2, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", name="confusion", dtype=dtype
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(y_true, "int32")
        batch = ops.shape(labels)[0]
        labels = ops.reshape(labels, (batch, -1))
        predicted = ops.reshape(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), (batch, -1))
        if sample_weight is None:
            weights = ops.ones_like(labels, dtype=self.dtype)
        else:
            weights = ops.broadcast_to(ops.reshape(ops.cast(sample_weight, self.dtype), (batch, -1)),
                                       ops.shape(labels))
        cells = ops.reshape(labels * self.num_classes + predicted, (-1,))
        counts = ops.bincount(cells, weights=ops.reshape(weights, (-1,)), minlength=self.num_classes ** 2)
        self.confusion.assign_add(ops.reshape(ops.cast(counts, self.dtype), (self.num_classes, self.num_classes)))

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


@keras.saving.register_keras_serializable(package="mtl_keras")
class PixelAccuracy(_SparseConfusionMetric):
    """Share of pixels (or examples) whose most probable class is the true one, over all pixels seen.

    >>> m = PixelAccuracy(num_classes=2)
    >>> m.update_state([[[0, 1]], [[1, 1]]], [[[[.9, .1], [.8, .2]]], [[[.1, .9], [.3, .7]]]], sample_weight=[1, 0])
    >>> float(m.result())  # the second example is unlabelled (weight 0)
    0.5
    """

    def __init__(self, num_classes: int, name: str = "pixel_accuracy", dtype: str = "float64"):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        return ops.divide_no_nan(ops.sum(ops.diagonal(self.confusion)), ops.sum(self.confusion))


@keras.saving.register_keras_serializable(package="mtl_keras")
class SegmentationIoU(_SparseConfusionMetric):
    """Intersection over union per class, `TP / (TP + FP + FN)`, over every pixel seen; `result()` is the mean over
    `class_ids` (default: all classes) of the classes that occur in the labels or the predictions.

    Giving the item classes as `class_ids` reports their mean IoU apart from the background's, while background
    pixels predicted as an item still count as that item's false positives.

    >>> iou = SegmentationIoU(num_classes=3, class_ids=[1, 2])
    >>> iou.update_state([[[0, 1], [2, 2]]], [[[[.9, .1, 0], [0, 1, 0]], [[0, 1, 0], [0, 0, 1]]]])
    >>> [round(float(v), 4) for v in iou.per_class()], round(float(iou.result()), 4)  # class 1: 1/2, class 2: 1/2
    ([1.0, 0.5, 0.5], 0.5)
    """

    def __init__(self, num_classes: int, class_ids=None, name: str = "mean_iou", dtype: str = "float64"):
        super().__init__(num_classes, name=name, dtype=dtype)
        self.class_ids = list(range(self.num_classes)) if class_ids is None else [int(c) for c in class_ids]
        if not self.class_ids or not all(0 <= c < self.num_classes for c in self.class_ids):
            raise ValueError(f"SegmentationIoU: class_ids must be a non-empty list in [0, {self.num_classes}), "
                             f"got {class_ids}.")

    def per_class(self):
        """IoU of every class (0 for a class neither present nor predicted)."""
        true_positives = ops.diagonal(self.confusion)
        union = ops.sum(self.confusion, axis=0) + ops.sum(self.confusion, axis=1) - true_positives
        return ops.divide_no_nan(true_positives, union)

    def result(self):
        true_positives = ops.diagonal(self.confusion)
        union = ops.sum(self.confusion, axis=0) + ops.sum(self.confusion, axis=1) - true_positives
        chosen = ops.take(ops.divide_no_nan(true_positives, union), self.class_ids)
        seen = ops.cast(ops.take(union, self.class_ids) > 0, self.dtype)
        return ops.divide_no_nan(ops.sum(chosen * seen), ops.sum(seen))

    def get_config(self):
        return {**super().get_config(), "class_ids": list(self.class_ids)}


class _ExampleMean(keras.metrics.Metric):
    """The weighted mean over examples of a per-example score (`score(y_true, y_pred)` of shape `(batch,)`)."""

    def __init__(self, name: str, dtype: str = "float64"):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype=dtype)
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", dtype=dtype)

    def score(self, y_true, y_pred):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        values = ops.cast(self.score(y_true, y_pred), self.dtype)
        weights = ops.ones_like(values) if sample_weight is None else ops.reshape(
            ops.cast(sample_weight, self.dtype), ops.shape(values))
        self.total.assign_add(ops.sum(values * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="mtl_keras")
class ExactMatch(_ExampleMean):
    """Share of examples whose prediction, rounded to the nearest integer, equals the target in every unit (e.g. a
    count regressed as a number).

    >>> m = ExactMatch()
    >>> m.update_state([[1.0], [2.0], [3.0]], [[1.2], [2.6], [2.5]])
    >>> round(float(m.result()), 4)  # 1.2 -> 1 right, 2.6 -> 3 wrong, 2.5 -> 2 (half to even) wrong
    0.3333
    """

    def __init__(self, name: str = "exact_match", dtype: str = "float64"):
        super().__init__(name=name, dtype=dtype)

    def score(self, y_true, y_pred):
        batch = ops.shape(y_true)[0]
        equal = ops.equal(ops.round(ops.reshape(y_pred, (batch, -1))), ops.reshape(y_true, (batch, -1)))
        return ops.all(equal, axis=-1)


@keras.saving.register_keras_serializable(package="mtl_keras")
class BoxIoU(_ExampleMean):
    """Mean intersection over union of predicted and true boxes `(y_min, x_min, y_max, x_max)` (a predicted box
    with max < min is empty, IoU 0).

    >>> m = BoxIoU()
    >>> m.update_state([[0.0, 0.0, 0.5, 0.5]], [[0.0, 0.25, 0.5, 0.75]])  # half of each box overlaps: 1/3
    >>> round(float(m.result()), 4)
    0.3333
    """

    def __init__(self, name: str = "box_iou", dtype: str = "float64"):
        super().__init__(name=name, dtype=dtype)

    def score(self, y_true, y_pred):
        def area(box):
            return ops.relu(box[:, 2] - box[:, 0]) * ops.relu(box[:, 3] - box[:, 1])

        top_left = ops.maximum(y_true[:, :2], y_pred[:, :2])
        bottom_right = ops.minimum(y_true[:, 2:], y_pred[:, 2:])
        intersection = ops.prod(ops.relu(bottom_right - top_left), axis=-1)
        return ops.divide_no_nan(intersection, area(y_true) + area(y_pred) - intersection)
