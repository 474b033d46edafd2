"""Streaming metrics Keras lacks, or has only in a batch-averaged form, and cheaper updates for Keras' own.

Each accumulates exact sufficient statistics over an epoch, honours `sample_weight` (which is how missing labels
are left out), and round-trips through `get_config`.

Updates are written with `tf.*` ops rather than `keras.ops` on purpose: Keras traces every metric three times per
`fit` (the symbolic build, the train function, the test function), and for small models that Python-side graph
building, not the arithmetic, was most of a short `fit` (a `keras.ops` call with a dynamic batch dimension costs
milliseconds to trace, Keras' AUC update maps a segment sum over the labels with `vectorized_map`). `HistogramAUC`,
`ThresholdPrecision`, `ThresholdRecall` and `ThresholdF1Score` are Keras' `AUC`, `Precision`, `Recall` and
`F1Score` (their variables, `result()`, `reset_state` and config) with an update that builds a few ops and gives the
same numbers.

Example:

>>> m = PearsonR()
>>> m.update_state([[1.0], [2.0], [3.0]], [[2.0], [4.0], [7.0]])
>>> round(float(m.result()), 4)
0.9934
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from mtl_keras import keras_compat


def _same_rank(x1, x2, expand_rank_1: bool = True):
    """Keras' rule for matching labels to predictions (and weights to labels), decided on static ranks: a trailing
    axis of 1 is squeezed, or a rank-1 tensor expanded, when the ranks differ by one."""
    rank1, rank2 = x1.shape.rank, x2.shape.rank
    if rank1 == rank2 + 1 and x1.shape[-1] == 1:
        return (x1, tf.expand_dims(x2, -1)) if rank2 == 1 and expand_rank_1 else (tf.squeeze(x1, -1), x2)
    if rank2 == rank1 + 1 and x2.shape[-1] == 1:
        return (tf.expand_dims(x1, -1), x2) if rank1 == 1 and expand_rank_1 else (x1, tf.squeeze(x2, -1))
    return x1, x2


def _confusion_inputs(y_true, y_pred, sample_weight, dtype):
    """`(is_positive, y_pred, weights)` as Keras' `update_confusion_matrix_variables` sees them: labels and
    predictions cast to the metric's dtype and matched in rank, labels positive where non-zero, and the sample weights
    broadcast to the predictions' shape (ones without them)."""
    y_true = tf.cast(y_true, dtype)
    y_pred = tf.cast(y_pred, dtype)
    y_pred, y_true = _same_rank(y_pred, y_true)
    if sample_weight is None:
        weights = tf.ones_like(y_pred)
    else:
        weights = tf.expand_dims(tf.cast(sample_weight, dtype), -1)
        _, weights = _same_rank(y_true, weights, expand_rank_1=False)
        weights = tf.broadcast_to(weights, tf.shape(y_pred))
    return tf.cast(y_true, tf.bool), y_pred, weights


@keras.saving.register_keras_serializable(package="mtl_keras")
class HistogramAUC(keras.metrics.AUC):
    """`keras.metrics.AUC` whose update is one weighted histogram of the predictions over the thresholds.

    The same arguments, variables, `result()` and config as Keras' AUC, and the same numbers: a prediction counts
    as positive at a threshold when strictly greater than it (thresholds evenly spaced from `-epsilon` to
    `1 + epsilon`), predictions are clipped to [0, 1], labels are positive where non-zero. Each update buckets the
    predictions, sums the weights of positives and negatives per bucket (per label with `multi_label`) in one
    `unsorted_segment_sum`, and turns the buckets into counts above each threshold with a reversed cumulative sum.
    Thresholds given explicitly and not evenly spaced take Keras' own update.

    >>> auc = HistogramAUC(num_thresholds=201)
    >>> auc.update_state([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    >>> round(float(auc.result()), 4)  # 3 of the 4 positive-negative pairs ranked right
    0.75
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not keras_compat.thresholds_evenly_spaced(self):
            return super().update_state(y_true, y_pred, sample_weight)
        if not keras_compat.metric_built(self):
            keras_compat.build_metric(self, y_pred.shape)
        if keras_compat.auc_from_logits(self):
            y_pred = tf.sigmoid(y_pred)
        is_positive, y_pred, weights = self._positives_and_weights(y_true, y_pred, sample_weight)
        if self.label_weights is not None and not self.multi_label:
            weights = weights * tf.cast(self.label_weights, weights.dtype)
        self._accumulate(is_positive, y_pred, weights)

    def _positives_and_weights(self, y_true, y_pred, sample_weight):
        return _confusion_inputs(y_true, y_pred, sample_weight, self.dtype)

    def _accumulate(self, is_positive, y_pred, weights):
        thresholds = self.num_thresholds
        # Keras' bucket arithmetic, op for op, so that a prediction on a threshold lands where Keras puts it: the
        # bucket of the highest threshold it is strictly above (all of [0, 1] is above -epsilon).
        y_pred = tf.clip_by_value(y_pred, 0.0, 1.0)
        bucket = tf.cast(tf.nn.relu(tf.math.ceil(y_pred * (thresholds - 1.0)) - 1.0), tf.int32)
        segment = bucket + thresholds * tf.cast(is_positive, tf.int32)  # negatives first, then positives
        shape = [2, thresholds]
        if self.multi_label:
            labels = keras_compat.auc_num_labels(self)
            segment = segment * labels + tf.range(labels)
            shape.append(labels)
        histogram = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), tf.reshape(segment, [-1]),
                                                 2 * thresholds * (labels if self.multi_label else 1))
        above = tf.math.cumsum(tf.reshape(histogram, shape), axis=1, reverse=True)
        false_positives, true_positives = tf.unstack(above)  # (unstack: one op where indexing builds four)
        # Every example is above the first threshold (-epsilon): the counts there are the totals.
        total_negatives, total_positives = tf.unstack(above[:, :1])
        self.true_positives.assign_add(true_positives)
        self.false_positives.assign_add(false_positives)
        self.true_negatives.assign_add(total_negatives - false_positives)
        self.false_negatives.assign_add(total_positives - true_positives)


def _threshold_counts(y_true, y_pred, sample_weight, thresholds, dtype, counts):
    """The weighted counts named in `counts` ("tp", "fp", "fn") at each threshold, as Keras' confusion-matrix update
    without evenly spaced thresholds computes them (a prediction strictly above a threshold is positive; no
    clipping)."""
    is_positive, y_pred, weights = _confusion_inputs(y_true, y_pred, sample_weight, dtype)
    thresholds = tf.constant(thresholds, dtype=dtype)[:, None]
    predicted = tf.reshape(y_pred, [1, -1]) > thresholds  # (thresholds, predictions)
    actual = tf.reshape(is_positive, [1, -1])
    weights = tf.reshape(weights, [1, -1])
    cells = {"tp": lambda: actual & predicted, "fp": lambda: ~actual & predicted, "fn": lambda: actual & ~predicted}
    return [tf.reduce_sum(tf.where(cells[count](), weights, 0.0), axis=1) for count in counts]


def _has_threshold_fast_path(metric) -> bool:
    # Keras takes its bucketed path for evenly spaced thresholds (with other rules at 0 and 1), and top_k / class_id
    # select predictions first: those keep Keras' own update.
    return metric.top_k is None and metric.class_id is None and not keras_compat.thresholds_evenly_spaced(metric)


class _ThresholdCountsUpdate:
    """The update of `ThresholdPrecision` and `ThresholdRecall`: the counts they keep (`COUNTS`: count name ->
    variable), from `_threshold_counts`, where Keras' own rules do not take another path."""

    COUNTS: dict[str, str] = {}

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not _has_threshold_fast_path(self):
            return super().update_state(y_true, y_pred, sample_weight)
        counts = _threshold_counts(y_true, y_pred, sample_weight, self.thresholds, self.dtype, tuple(self.COUNTS))
        for variable, value in zip(self.COUNTS.values(), counts, strict=True):
            getattr(self, variable).assign_add(value)


@keras.saving.register_keras_serializable(package="mtl_keras")
class ThresholdPrecision(_ThresholdCountsUpdate, keras.metrics.Precision):
    """`keras.metrics.Precision` (default threshold 0.5) with an update of a few ops and the same numbers.

    >>> m = ThresholdPrecision()
    >>> m.update_state([0, 1, 1, 0], [0.7, 0.9, 0.2, 0.4])
    >>> float(m.result())  # predicted positive: 0.7 (wrong) and 0.9 (right)
    0.5
    """

    COUNTS = {"tp": "true_positives", "fp": "false_positives"}


@keras.saving.register_keras_serializable(package="mtl_keras")
class ThresholdRecall(_ThresholdCountsUpdate, keras.metrics.Recall):
    """`keras.metrics.Recall` (default threshold 0.5) with an update of a few ops and the same numbers.

    >>> m = ThresholdRecall()
    >>> m.update_state([0, 1, 1, 0], [0.7, 0.9, 0.2, 0.4])
    >>> float(m.result())  # of the positives, 0.9 is found and 0.2 missed
    0.5
    """

    COUNTS = {"tp": "true_positives", "fn": "false_negatives"}


@keras.saving.register_keras_serializable(package="mtl_keras")
class ThresholdF1Score(keras.metrics.F1Score):
    """`keras.metrics.F1Score` with a fixed `threshold`, its update and `result()` in a few ops with the same
    numbers (Keras' formula: epsilon in each denominator; labels taken as they are, not cast to bool).

    >>> m = ThresholdF1Score(average="micro", threshold=0.5)
    >>> m.update_state([[0], [1], [1], [0]], [[0.7], [0.9], [0.2], [0.4]])
    >>> round(float(m.result()), 4)  # precision 1/2, recall 1/2
    0.5
    """

    def __init__(self, average=None, threshold: float = 0.5, name: str = "f1_score", dtype=None):
        if threshold is None:
            raise ValueError("ThresholdF1Score needs a threshold in (0, 1]; for the arg-max rule use "
                             "keras.metrics.F1Score(threshold=None).")
        super().__init__(average=average, threshold=threshold, name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = tf.convert_to_tensor(y_pred, dtype=self.dtype)
        if not keras_compat.metric_built(self):
            keras_compat.build_metric(self, y_true.shape, y_pred.shape)
        predicted = tf.cast(y_pred > self.threshold, self.dtype)
        if sample_weight is not None:
            weights = tf.expand_dims(tf.convert_to_tensor(sample_weight, dtype=self.dtype), 1)
            y_true_weighted, predicted_weighted = y_true * weights, predicted * weights
        else:
            y_true_weighted, predicted_weighted = y_true, predicted
        terms = tf.stack([predicted_weighted * y_true, predicted_weighted * (1 - y_true),
                          (1 - predicted) * y_true_weighted, y_true_weighted])
        sums = tf.reduce_sum(terms, axis=[1, 2] if self.axis is None else 1)
        for variable, value in zip((self.true_positives, self.false_positives, self.false_negatives,
                                    self.intermediate_weights), tf.unstack(sums), strict=True):
            variable.assign_add(value)

    def result(self):
        epsilon = keras.config.epsilon()
        true_positives = tf.convert_to_tensor(self.true_positives)
        precision = true_positives / (true_positives + self.false_positives + epsilon)
        recall = true_positives / (true_positives + self.false_negatives + epsilon)
        beta_squared = self.beta ** 2
        f_score = precision * recall / (beta_squared * precision + recall + epsilon) * (1 + beta_squared)
        if self.average == "weighted":
            weights = tf.convert_to_tensor(self.intermediate_weights)
            return tf.reduce_sum(f_score * weights / (tf.reduce_sum(weights) + epsilon))
        return f_score if self.average is None else tf.reduce_mean(f_score)


@keras.saving.register_keras_serializable(package="mtl_keras")
class PearsonR(keras.metrics.Metric):
    """Pearson correlation between targets and predictions over every example seen (not a mean of batch values).

    For outputs with several units, the units are flattened together.
    """

    _SUMS = ("n", "x", "y", "xx", "yy", "xy")

    def __init__(self, name: str = "pearson_r", dtype: str = "float64"):
        super().__init__(name=name, dtype=dtype)
        self._sums = {key: self.add_variable(shape=(), initializer="zeros", name=key, dtype=dtype)
                      for key in self._SUMS}

    def update_state(self, y_true, y_pred, sample_weight=None):
        x = tf.cast(y_true, self.dtype)
        y = tf.cast(y_pred, self.dtype)
        if sample_weight is None:
            w = tf.ones_like(x)
        else:  # one weight per example, over all of its units
            w = tf.cast(sample_weight, self.dtype)
            w = tf.broadcast_to(tf.reshape(w, [-1] + [1] * (x.shape.rank - 1)), tf.shape(x))
        wx, wy = w * x, w * y
        sums = tf.reduce_sum(tf.reshape(tf.stack([w, wx, wy, wx * x, wy * y, wx * y]), [6, -1]), axis=1)
        for key, value in zip(self._SUMS, tf.unstack(sums), strict=True):
            self._sums[key].assign_add(value)

    def result(self):
        n, x, y, xx, yy, xy = (tf.convert_to_tensor(self._sums[key]) for key in self._SUMS)
        n = tf.maximum(n, 1e-12)
        covariance = xy / n - (x / n) * (y / n)
        variance_x = tf.maximum(xx / n - (x / n) ** 2, 0.0)
        variance_y = tf.maximum(yy / n - (y / n) ** 2, 0.0)
        return tf.math.divide_no_nan(covariance, tf.sqrt(variance_x * variance_y))

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
        labels = tf.cast(y_true, tf.int32)
        predicted = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        cells = tf.reshape(labels, [-1]) * self.num_classes + tf.reshape(predicted, [-1])
        if sample_weight is None:
            weights = tf.ones_like(cells, dtype=self.dtype)
        else:  # a weight per example (or per pixel), spread over the example's pixels
            per_example = tf.reshape(tf.cast(sample_weight, self.dtype), [tf.shape(labels)[0], -1])
            weights = tf.reshape(tf.broadcast_to(per_example, tf.shape(tf.reshape(labels, [tf.shape(labels)[0], -1]))),
                                 [-1])
        counts = tf.math.unsorted_segment_sum(weights, cells, self.num_classes ** 2)
        self.confusion.assign_add(tf.reshape(counts, (self.num_classes, self.num_classes)))

    def _per_class(self):
        confusion = tf.convert_to_tensor(self.confusion)
        true_positives = tf.linalg.diag_part(confusion)
        precision = tf.math.divide_no_nan(true_positives, tf.reduce_sum(confusion, axis=0))
        recall = tf.math.divide_no_nan(true_positives, tf.reduce_sum(confusion, axis=1))
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
        return tf.reduce_mean(self._per_class()[0])


@keras.saving.register_keras_serializable(package="mtl_keras")
class MacroRecall(_SparseConfusionMetric):
    """Unweighted mean over classes of per-class recall."""

    def __init__(self, num_classes: int, name: str = "recall", dtype: str = "float64"):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        return tf.reduce_mean(self._per_class()[1])


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
        return tf.reduce_mean(tf.math.divide_no_nan(2.0 * precision * recall, precision + recall))


@keras.saving.register_keras_serializable(package="mtl_keras")
class SparseMacroAUC(HistogramAUC):
    """One-vs-rest ROC AUC averaged over classes, from integer labels and class probabilities: Keras' multi-label
    AUC of the one-hot labels (a label outside [0, num_classes) is negative for every class).

    >>> auc = SparseMacroAUC(num_classes=3, num_thresholds=201)
    >>> auc.update_state([0, 1, 2, 2], [[.8, .1, .1], [.3, .4, .3], [.2, .2, .6], [.6, .1, .3]])
    >>> round(float(auc.result()), 4)  # classes 0 and 1: 1; class 2: 3 pairs right and a tie (0.3) of 4
    0.9583
    """

    def __init__(self, num_classes: int, name: str = "auc", num_thresholds: int = 200, dtype=None):
        super().__init__(name=name, num_thresholds=num_thresholds, multi_label=True, num_labels=int(num_classes),
                         dtype=dtype)
        self.num_classes = int(num_classes)

    def _positives_and_weights(self, y_true, y_pred, sample_weight):
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1, 1])
        y_pred = tf.cast(y_pred, self.dtype)
        weights = (tf.ones_like(y_pred) if sample_weight is None else
                   tf.broadcast_to(tf.reshape(tf.cast(sample_weight, self.dtype), [-1, 1]), tf.shape(y_pred)))
        return tf.equal(labels, tf.range(self.num_classes)), y_pred, weights

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
