"""What a task is: its name, its kind, and everything the kind decides.

One table, `KINDS`, says for each kind the head's activation, the default loss, the default metrics, the shape of
its labels, what a SavedModel adds and how a prediction reads in words; one table, `HIGHER_IS_BETTER`, says each
metric's direction (which makes the multi-task gain Δm computable). Nothing else in the library branches on a
task's kind.

Example:

>>> topic = Task("topic", "multiclass", num_classes=4)
>>> topic.output_units, topic.activation, topic.metric_names
(4, 'softmax', ('accuracy', 'precision', 'recall', 'f1', 'auc'))
>>> Task.from_config(topic.get_config()) == topic
True
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from mtl_keras import losses as mtl_losses
from mtl_keras import metrics as mtl_metrics

MetricFactory = Callable[["Task"], keras.metrics.Metric]
MISSING = -1  # the label value that marks an example without a label (`mtl_keras.labels`)


@dataclasses.dataclass(frozen=True)
class KindSpec:
    """What a kind of task implies."""

    activation: str
    default_loss: Callable[[], keras.losses.Loss]
    metrics: dict[str, MetricFactory]  # name -> factory, in report order; the defaults of the kind
    sparse_labels: bool  # labels are class indices (one per example, or per pixel) rather than vectors
    label_description: str
    extra_metrics: dict[str, MetricFactory] = dataclasses.field(default_factory=dict)  # on request only
    pixel_labels: bool = False  # one label per pixel: a label map of the image's height and width
    # One example's label shape (for labels not per pixel): a 1-D array of labels is read as one per example.
    label_shape: Callable[[Task], tuple[int, ...]] = lambda task: (1,)
    # Real-valued targets: any finite value, missing only through a mask (never by the value -1).
    continuous_labels: bool = False
    label_dtype: str = "float32"  # what the model's loss reads (class indices for sparse categorical losses: int32)
    # Test metrics beyond the Keras metrics, from the labels, predictions and sample weights (NumPy arrays).
    evaluation_extras: Callable[[Task, np.ndarray, np.ndarray, np.ndarray], dict] | None = None
    # Outputs a SavedModel adds beside the task's own, as `<task>_<suffix>`: suffix -> function of the output.
    export_extras: dict[str, Callable[[Any], Any]] = dataclasses.field(default_factory=dict)
    # One example's output (a NumPy array) in words, for `mtl-keras predict`.
    describe: Callable[[Task, np.ndarray], str] = lambda task, output: str(output)
    # What `Task(class_weight=...)` weighs: "class", each example's (pixel's) loss by its class index; "positive",
    # each label's positive term of a binary cross-entropy (0/1 label vectors); None: no class weights.
    class_weighting: str | None = None
    # Losses asked for by a short name, `Task(loss="focal")`: name -> a fresh Keras loss.
    named_losses: dict[str, Callable[[], keras.losses.Loss]] = dataclasses.field(default_factory=dict)

    @property
    def all_metrics(self) -> dict[str, MetricFactory]:
        return {**self.metrics, **self.extra_metrics}


def _class_name(task: Task, index: int) -> str:
    return str(task.class_names[index]) if task.class_names else str(index)


def _describe_binary(task: Task, output: np.ndarray) -> str:
    probability = float(output.reshape(-1)[0])
    return f"{_class_name(task, int(probability >= 0.5))} (p(positive class)={probability:.3f})"


def _describe_multiclass(task: Task, output: np.ndarray) -> str:
    best = int(np.argmax(output))
    return f"{_class_name(task, best)} (p={float(output[best]):.3f})"


def _describe_multilabel(task: Task, output: np.ndarray) -> str:
    return ", ".join(_class_name(task, int(i)) for i in np.flatnonzero(output >= 0.5)) or "(none)"


def _describe_regression(task: Task, output: np.ndarray) -> str:
    return ", ".join(f"{float(v):.3f}" for v in output.reshape(-1))


def _describe_segmentation(task: Task, output: np.ndarray) -> str:
    """The classes of the predicted mask (per-pixel probabilities, (H, W, classes)), by share of pixels."""
    ids, counts = np.unique(np.argmax(output, axis=-1), return_counts=True)
    shares = sorted(zip(ids, counts, strict=True), key=lambda pair: -pair[1])
    return ", ".join(f"{_class_name(task, int(i))} {c / counts.sum():.0%}" for i, c in shares)


def _iou_per_class(task: Task, labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray) -> dict:
    iou = mtl_metrics.SegmentationIoU(task.num_classes)
    iou.update_state(labels, predictions, sample_weight=weights)
    names = task.class_names or [str(c) for c in range(task.num_classes)]
    return {"iou_per_class": {names[c]: float(v) for c, v in enumerate(np.asarray(iou.per_class()))}}


# Keras' AUC integrates over evenly spaced thresholds. Its default 200 lumps together the many confident negatives of
# a rare positive class: 0.9494 against an exact 0.9512 for census income (6% positive); 10,000 gives 0.95117, at no
# measurable cost per step (the even spacing lets `HistogramAUC` bucket the predictions in one segment sum).
AUC_THRESHOLDS = 10_000

# Metrics of sigmoid outputs thresholded at 0.5 (binary, and multilabel where they are micro-averaged over labels).
# Keras' Precision, Recall, F1Score and AUC give these numbers too; ours build far fewer ops, which is most of a
# short fit's cost for a small model (benchmarks/metric_trace_cost.py).
_THRESHOLDED: dict[str, MetricFactory] = {
    "accuracy": lambda t: keras.metrics.BinaryAccuracy(name="accuracy"),
    "precision": lambda t: mtl_metrics.ThresholdPrecision(name="precision"),
    "recall": lambda t: mtl_metrics.ThresholdRecall(name="recall"),
}

KINDS: dict[str, KindSpec] = {
    "binary": KindSpec(
        activation="sigmoid",
        default_loss=keras.losses.BinaryCrossentropy,
        metrics={
            **_THRESHOLDED,
            "f1": lambda t: mtl_metrics.ThresholdF1Score(average="micro", threshold=0.5, name="f1"),
            "auc": lambda t: mtl_metrics.HistogramAUC(num_thresholds=AUC_THRESHOLDS, name="auc"),
        },
        sparse_labels=True,
        label_description="0 or 1 per example (-1 = missing)",
        describe=_describe_binary,
        class_weighting="class",
        named_losses={"focal": lambda: keras.losses.BinaryFocalCrossentropy(gamma=2.0)},
    ),
    "multiclass": KindSpec(
        activation="softmax",
        default_loss=keras.losses.SparseCategoricalCrossentropy,
        metrics={
            "accuracy": lambda t: keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            "precision": lambda t: mtl_metrics.MacroPrecision(t.num_classes, name="precision"),
            "recall": lambda t: mtl_metrics.MacroRecall(t.num_classes, name="recall"),
            "f1": lambda t: mtl_metrics.MacroF1(t.num_classes, name="f1"),
            "auc": lambda t: mtl_metrics.SparseMacroAUC(t.num_classes, num_thresholds=AUC_THRESHOLDS, name="auc"),
        },
        sparse_labels=True,
        label_description="a class index in [0, num_classes) per example (-1 = missing)",
        label_dtype="int32",
        describe=_describe_multiclass,
        class_weighting="class",
        named_losses={"focal": lambda: mtl_losses.SparseCategoricalFocalCrossentropy(gamma=2.0)},
    ),
    "multilabel": KindSpec(
        activation="sigmoid",
        default_loss=keras.losses.BinaryCrossentropy,
        metrics={
            **_THRESHOLDED,
            "f1": lambda t: mtl_metrics.ThresholdF1Score(average="macro", threshold=0.5, name="f1"),
            "f1_micro": lambda t: mtl_metrics.ThresholdF1Score(average="micro", threshold=0.5, name="f1_micro"),
            "auc": lambda t: mtl_metrics.HistogramAUC(num_thresholds=AUC_THRESHOLDS, multi_label=True,
                                                      num_labels=t.num_classes, name="auc"),
        },
        sparse_labels=False,
        label_description="a 0/1 vector of length num_classes per example (a row of -1 = missing)",
        label_shape=lambda task: (task.num_classes,),
        describe=_describe_multilabel,
        class_weighting="positive",
        named_losses={"focal": lambda: keras.losses.BinaryFocalCrossentropy(gamma=2.0)},
    ),
    "regression": KindSpec(
        activation="linear",
        default_loss=keras.losses.MeanSquaredError,
        metrics={
            "mae": lambda t: keras.metrics.MeanAbsoluteError(name="mae"),
            "rmse": lambda t: keras.metrics.RootMeanSquaredError(name="rmse"),
            "pearson_r": lambda t: mtl_metrics.PearsonR(name="pearson_r"),
        },
        extra_metrics={
            "exact_match": lambda t: mtl_metrics.ExactMatch(name="exact_match"),
            "box_iou": lambda t: mtl_metrics.BoxIoU(name="box_iou"),
        },
        sparse_labels=False,
        label_description="a finite float (or a vector of `units` floats) per example (missing only through a mask)",
        label_shape=lambda task: (task.output_units,),
        continuous_labels=True,
        describe=_describe_regression,
    ),
    "segmentation": KindSpec(
        activation="softmax",
        default_loss=keras.losses.SparseCategoricalCrossentropy,
        metrics={
            "pixel_accuracy": lambda t: mtl_metrics.PixelAccuracy(t.num_classes, name="pixel_accuracy"),
            # Over the classes other than the background (all classes if the task has none).
            "mean_iou": lambda t: mtl_metrics.SegmentationIoU(t.num_classes, class_ids=t.foreground_classes,
                                                              name="mean_iou"),
        },
        extra_metrics={
            "background_iou": lambda t: mtl_metrics.SegmentationIoU(
                t.num_classes, class_ids=[t.background_class or 0], name="background_iou"),
        },
        sparse_labels=True,
        label_description="an (H, W) map of class indices in [0, num_classes) per example (all -1 = missing)",
        pixel_labels=True,
        label_dtype="int32",
        describe=_describe_segmentation,
        class_weighting="class",
        named_losses={"focal": lambda: mtl_losses.SparseCategoricalFocalCrossentropy(gamma=2.0)},
        evaluation_extras=_iou_per_class,
        # The class on top at each pixel, what a user draws (int32, (batch, H, W)).
        export_extras={"mask": lambda probabilities: keras.ops.cast(keras.ops.argmax(probabilities, axis=-1),
                                                                    "int32")},
    ),
}

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "f1_micro": True,
    "auc": True,
    "pixel_accuracy": True,
    "mean_iou": True,
    "background_iou": True,
    "exact_match": True,
    "box_iou": True,
    "pearson_r": True,
    "mae": False,
    "rmse": False,
    "mse": False,
    "loss": False,
}

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NAMED_LOSSES = {name for spec in KINDS.values() for name in spec.named_losses}


def _is_binary_crossentropy(loss) -> bool:
    """Whether a task's `loss` is the binary cross-entropy (its default for 0/1 label vectors, or given)."""
    return (loss is None or loss in ("binary_crossentropy", "bce")
            or isinstance(loss, keras.losses.BinaryCrossentropy))


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of a multi-task model.

    Args:
        name: the task's name; names the model output, the labels, the loss weight and the logged metrics.
        kind: one of `binary`, `multiclass`, `multilabel`, `regression`, `segmentation`.
        num_classes: number of classes (multiclass, multilabel, segmentation; binary implies 2).
        loss: `None` for the kind's default, `"focal"` for the focal cross-entropy (gamma 2; binary, multiclass,
            multilabel, segmentation), or a Keras loss name, class instance or function. Whatever is given is
            reduced as a mean over the examples that have a label (see `mtl_keras.losses.MaskedLoss`).
        metrics: `None` for the kind's defaults, or a list of metric names from the kind's table and/or Keras metric
            instances (give the direction of a custom metric in `higher_is_better`).
        weight: the task's default loss weight.
        units: output size of a regression task (default 1).
        class_names: optional names of the classes, for reports.
        higher_is_better: direction of metrics that `HIGHER_IS_BETTER` does not know.
        background_class: for segmentation, the class id of the background: `mean_iou` then averages the other
            classes, and `background_iou` (a default metric then) reports the background's IoU apart.
        class_weight: for tasks whose labels are class indices (binary, multiclass, segmentation): `{class: weight}`
            (classes left out weigh 1) or `"balanced"` (n / (k n_c) from the training labels, computed when `fit`
            starts; until then the loss is unweighted); each example's loss (each pixel's) is multiplied by its
            class's weight (`mtl_keras.losses.MaskedLoss`). For multilabel tasks, positive weights per label:
            `{label: weight}` multiplies the label's positive term of the binary cross-entropy, and `"balanced"` is
            n_negative / n_positive per label (positives then weigh as much as negatives, as PyTorch's `pos_weight`
            is advised). Keras' own `class_weight` does not work for multi-output models.
        standardize_target: for regression tasks: `True` trains on the target standardized by its mean and spread
            over the training labels (computed when `fit` starts), while the model's outputs, its metrics and its
            SavedModel stay in the user's units (the head undoes the scaling: `TaskHead`). Equal loss weights then
            mean what they say for a target in large units (hours, dollars). The resolved form is
            `{"mean": [...], "std": [...]}`, one entry per output unit.
    """

    name: str
    kind: str
    num_classes: int | None = None
    loss: Any = None
    metrics: Sequence[Any] | None = None
    weight: float = 1.0
    units: int | None = None
    class_names: Sequence[str] | None = None
    higher_is_better: dict[str, bool] | None = None
    background_class: int | None = None
    class_weight: Mapping[int, float] | str | None = None
    standardize_target: bool | Mapping[str, Sequence[float]] = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"Task name must be an identifier (letters, digits, _), got {self.name!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"Task {self.name!r}: kind must be one of {sorted(KINDS)}, got {self.kind!r}.")
        if self.kind == "binary" and self.num_classes not in (None, 2):
            raise ValueError(f"Task {self.name!r}: a binary task has 2 classes, got num_classes={self.num_classes}.")
        if self.kind in ("multiclass", "multilabel", "segmentation"):
            if not isinstance(self.num_classes, int) or self.num_classes < 2:
                raise ValueError(
                    f"Task {self.name!r}: kind {self.kind!r} needs num_classes >= 2, got {self.num_classes!r}."
                )
        if self.kind == "regression" and self.num_classes is not None:
            raise ValueError(f"Task {self.name!r}: a regression task has no num_classes (use units=).")
        if self.units is not None and (self.kind != "regression" or int(self.units) < 1):
            raise ValueError(f"Task {self.name!r}: units= applies to regression tasks only, as a positive int.")
        if not float(self.weight) >= 0.0:
            raise ValueError(f"Task {self.name!r}: weight must be >= 0, got {self.weight!r}.")
        if self.class_names is not None and len(self.class_names) != self.num_classes_or_two:
            raise ValueError(
                f"Task {self.name!r}: {len(self.class_names)} class_names for {self.num_classes_or_two} classes."
            )
        if self.background_class is not None and (
            self.kind != "segmentation" or not 0 <= int(self.background_class) < self.num_classes
        ):
            raise ValueError(f"Task {self.name!r}: background_class applies to segmentation tasks only, as a class "
                             f"id in [0, num_classes), got {self.background_class!r}.")
        if isinstance(self.loss, str) and self.loss in _NAMED_LOSSES and self.loss not in self.spec.named_losses:
            raise ValueError(f"Task {self.name!r}: loss {self.loss!r} is for kinds "
                             f"{sorted(k for k, s in KINDS.items() if self.loss in s.named_losses)}, not {self.kind}.")
        object.__setattr__(self, "class_weight", self._checked_class_weight())
        object.__setattr__(self, "standardize_target", self._checked_standardize_target())
        object.__setattr__(self, "metrics", None if self.metrics is None else tuple(self.metrics))
        object.__setattr__(self, "class_names", None if self.class_names is None else tuple(self.class_names))
        for metric in self.metrics or ():
            if isinstance(metric, str) and metric not in self.spec.all_metrics:
                raise ValueError(
                    f"Task {self.name!r}: unknown metric {metric!r} for kind {self.kind!r}; "
                    f"known: {sorted(self.spec.all_metrics)}, or pass a keras.metrics.Metric."
                )

    def _checked_class_weight(self):
        weights = self.class_weight
        if weights is None:
            return None
        if self.spec.class_weighting is None:
            raise ValueError(f"Task {self.name!r}: class_weight applies to tasks whose labels are classes "
                             f"({', '.join(k for k, s in KINDS.items() if s.class_weighting)}), not {self.kind}.")
        if self.spec.class_weighting == "positive" and not _is_binary_crossentropy(self.loss):
            raise ValueError(f"Task {self.name!r}: class_weight on a {self.kind} task weighs each label's positive "
                             f"term of the binary cross-entropy; it does not apply to loss {self.loss!r}.")
        if isinstance(weights, str):
            if weights != "balanced":
                raise ValueError(f"Task {self.name!r}: class_weight must be 'balanced' or {{class: weight}}, got "
                                 f"{weights!r}.")
            return weights
        try:
            weights = {int(c): float(w) for c, w in dict(weights).items()}  # JSON turns class ids into strings
        except (TypeError, ValueError):
            raise ValueError(f"Task {self.name!r}: class_weight must be 'balanced' or {{class id: weight}}, got "
                             f"{self.class_weight!r}.") from None
        bad = {c: w for c, w in weights.items()
               if not 0 <= c < self.num_classes_or_two or not (w > 0 and math.isfinite(w))}
        if bad:
            raise ValueError(f"Task {self.name!r}: class_weight needs class ids in [0, {self.num_classes_or_two}) "
                             f"and finite weights > 0; got {bad}.")
        return weights

    def _checked_standardize_target(self):
        given = self.standardize_target
        if given is None or given is False:
            return False
        if not self.spec.continuous_labels:
            raise ValueError(f"Task {self.name!r}: standardize_target applies to real-valued targets "
                             f"({', '.join(k for k, s in KINDS.items() if s.continuous_labels)}), not {self.kind}.")
        if given is True:
            return True
        try:
            mean, std = [float(v) for v in given["mean"]], [float(v) for v in given["std"]]
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"Task {self.name!r}: standardize_target must be True, False or "
                             f"{{'mean': [...], 'std': [...]}}, got {given!r}.") from None
        if len(mean) != self.output_units or len(std) != self.output_units or not all(
                math.isfinite(m) and math.isfinite(s) and s > 0 for m, s in zip(mean, std, strict=True)):
            raise ValueError(f"Task {self.name!r}: standardize_target needs {self.output_units} finite means and "
                             f"{self.output_units} finite spreads > 0; got {given!r}.")
        return {"mean": mean, "std": std}

    @property
    def target_statistics(self) -> tuple[list[float], list[float]] | None:
        """The standardized target's (mean, std) per output unit; None if not standardized or not yet computed."""
        if isinstance(self.standardize_target, Mapping):
            return list(self.standardize_target["mean"]), list(self.standardize_target["std"])
        return None

    def with_target_statistics(self, labels, mask=None) -> Task:
        """This task with `standardize_target=True` replaced by the mean and spread of `labels` (its training
        targets; a False `mask` entry for missing ones), per output unit; a constant target gets spread 1. Other
        tasks come back unchanged.

        >>> Task("hours", "regression", standardize_target=True).with_target_statistics([30, 50, 1e6],
        ...                                                                              [1, 1, 0]).standardize_target
        {'mean': [40.0], 'std': [10.0]}
        """
        if self.standardize_target is not True:
            return self
        values = np.asarray(labels, "float64").reshape(-1, self.output_units)
        if mask is not None:
            values = values[np.asarray(mask, bool).reshape(-1)]
        if len(values) == 0:
            raise ValueError(f"Task {self.name!r}: standardize_target=True needs labelled training examples; none.")
        std = values.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(values.mean(axis=0))), std, 1.0)
        return dataclasses.replace(self, standardize_target={
            "mean": [float(np.float32(m)) for m in values.mean(axis=0)], "std": [float(np.float32(s)) for s in std]})

    def loss_options(self) -> dict[str, Any]:
        """What `MaskedLoss` takes from this task beyond its base loss: class weights (per class, or per label as
        positive weights) and the standardized target's statistics; None for what is absent or not yet computed
        from the training labels."""
        weights = None if self.class_weight in (None, "balanced") else self.class_weight_vector
        statistics = self.target_statistics
        return {"class_weight": weights if self.spec.class_weighting == "class" else None,
                "positive_weight": weights if self.spec.class_weighting == "positive" else None,
                "target_mean": None if statistics is None else statistics[0],
                "target_std": None if statistics is None else statistics[1]}

    @property
    def class_weight_vector(self) -> list[float] | None:
        """One weight per class (1 for a class `class_weight` leaves out); None without class weights."""
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            raise ValueError(f"Task {self.name!r}: class_weight='balanced' is computed from the training labels when "
                             f"training starts (`fit`), or by `with_balanced_class_weight(labels)`.")
        return [self.class_weight.get(c, 1.0) for c in range(self.num_classes_or_two)]

    def with_balanced_class_weight(self, labels, mask=None) -> Task:
        """This task with `class_weight="balanced"` replaced by weights from `labels` (its training labels, `-1` or
        a False `mask` entry for missing ones): n / (k n_c) for the n labelled examples (pixels, for segmentation)
        of k classes, n_c of class c, as scikit-learn's `compute_class_weight("balanced")`; 1 for a class with no
        example. For 0/1 label vectors (multilabel; a row of -1 missing), n_negative / n_positive per label (1 for a
        label without positives or without negatives). Other tasks come back unchanged.

        >>> Task("mood", "multiclass", num_classes=3, class_weight="balanced").with_balanced_class_weight(
        ...     [0, 0, 0, 1, -1, 2]).class_weight
        {0: 0.5556, 1: 1.6667, 2: 1.6667}
        >>> Task("tags", "multilabel", num_classes=2, class_weight="balanced").with_balanced_class_weight(
        ...     [[1, 0], [0, 0], [0, 1], [0, 0], [-1, -1]]).class_weight
        {0: 3.0, 1: 3.0}
        """
        if self.class_weight != "balanced":
            return self
        values = np.asarray(labels)
        if self.spec.class_weighting == "positive":
            rows = values.reshape(len(values), -1)
            present = np.all(rows != MISSING, axis=1)
            if mask is not None:
                present &= np.asarray(mask, bool).reshape(-1)
            if not present.any():
                raise ValueError(f"Task {self.name!r}: class_weight='balanced' needs labelled training examples; "
                                 f"none.")
            positives = (rows[present] == 1).sum(axis=0)
            negatives = present.sum() - positives
            weights = {c: round(float(negatives[c] / positives[c]), 4) if positives[c] and negatives[c] else 1.0
                       for c in range(self.num_classes)}
            return dataclasses.replace(self, class_weight=weights)
        present = values != MISSING
        if mask is not None:
            present &= np.asarray(mask, bool).reshape((-1,) + (1,) * (values.ndim - 1))
        counts = np.bincount(values[present].astype(np.int64).ravel(), minlength=self.num_classes_or_two)
        if counts.sum() == 0:
            raise ValueError(f"Task {self.name!r}: class_weight='balanced' needs labelled training examples; none.")
        weights = {c: round(float(counts.sum() / (len(counts) * n)), 4) if n else 1.0 for c, n in enumerate(counts)}
        return dataclasses.replace(self, class_weight=weights)

    @property
    def spec(self) -> KindSpec:
        return KINDS[self.kind]

    @property
    def activation(self) -> str:
        return self.spec.activation

    @property
    def num_classes_or_two(self) -> int | None:
        return 2 if self.kind == "binary" else self.num_classes

    @property
    def output_units(self) -> int:
        """Width of the head's last layer."""
        if self.kind == "binary":
            return 1
        if self.kind == "regression":
            return int(self.units or 1)
        return int(self.num_classes)

    def build_loss(self) -> keras.losses.Loss:
        """A fresh loss for this task, reduced over the examples that carry a label."""
        if self.loss is None:
            base = self.spec.default_loss()
        elif isinstance(self.loss, str) and self.loss in self.spec.named_losses:
            base = self.spec.named_losses[self.loss]()
        else:
            base = self.loss
        # "balanced" weights and target statistics are set once fit has read the training labels
        # (`training/label_statistics.py`).
        return mtl_losses.MaskedLoss(base, name=f"{self.name}_loss", **self.loss_options())

    def build_metrics(self) -> list[keras.metrics.Metric]:
        """Fresh metric objects for this task (names as in the logs, without the task prefix)."""
        chosen = self.metrics if self.metrics is not None else self.default_metric_names
        built = []
        for metric in chosen:
            if isinstance(metric, str):
                built.append(self.spec.all_metrics[metric](self))
            else:
                built.append(keras.metrics.deserialize(keras.metrics.serialize(metric)))
        return built

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m if isinstance(m, str) else m.name for m in (self.metrics or self.default_metric_names))

    @property
    def headline_metric(self) -> str:
        """The one metric the progress bar shows for this task: the first of its metrics (the kind's first by
        default, in `KINDS`' order)."""
        return self.metric_names[0]

    @property
    def default_metric_names(self) -> tuple[str, ...]:
        """The kind's default metrics (and `background_iou` for a segmentation task with a background class)."""
        extra = ("background_iou",) if self.background_class is not None else ()
        return tuple(self.spec.metrics) + extra

    @property
    def foreground_classes(self) -> list[int] | None:
        """The classes other than the background (None: all of them)."""
        if self.background_class is None:
            return None
        return [c for c in range(self.num_classes) if c != self.background_class]

    def metric_higher_is_better(self, metric_name: str) -> bool:
        """Direction of a metric, for Δm and model selection."""
        directions = {**HIGHER_IS_BETTER, **(self.higher_is_better or {})}
        if metric_name not in directions:
            raise KeyError(
                f"Task {self.name!r}: direction of metric {metric_name!r} unknown; "
                f"pass higher_is_better={{{metric_name!r}: True or False}}."
            )
        return directions[metric_name]

    def get_config(self) -> dict[str, Any]:
        def encode(obj):
            return obj if obj is None or isinstance(obj, str) else keras.saving.serialize_keras_object(obj)

        config = dataclasses.asdict(self)
        config["loss"] = encode(self.loss)
        config["metrics"] = None if self.metrics is None else [encode(m) for m in self.metrics]
        config["class_names"] = None if self.class_names is None else list(self.class_names)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Task:
        config = dict(config)

        def decode(obj):
            return obj if obj is None or isinstance(obj, str) else keras.saving.deserialize_keras_object(obj)

        config["loss"] = decode(config.get("loss"))
        if config.get("metrics") is not None:
            config["metrics"] = [decode(m) for m in config["metrics"]]
        return cls(**config)


# Log keys written beside the tasks' own (`<task>_loss`, `<task>_<metric>`, `<task>_weight`, `cosine_<a>_<b>`, each
# also with `val_`): Keras' total loss and the jobs' early-stopping quantity.
GLOBAL_LOG_KEYS = {"loss": "the total loss", "mean_relative_loss": "the jobs' mean relative loss"}


def log_keys(task: Task) -> list[str]:
    """The training log keys of `task`'s own values (its loss, its metrics, its loss weight), without `val_`."""
    return [f"{task.name}_loss", f"{task.name}_weight", *(f"{task.name}_{metric}" for metric in task.metric_names)]


def _check_log_keys(tasks: Sequence[Task]) -> None:
    """Refuses task names that would make two values share one log key, in training or validation logs (tasks `b`
    and `val_b` both write `val_b_loss`; a task `val` writes `val_loss`, the total validation loss)."""
    owners = {key: what for key, what in GLOBAL_LOG_KEYS.items()}
    keys = [(key, f"the {key[len(task.name) + 1:]} of task {task.name!r}") for task in tasks for key in log_keys(task)]
    names = [task.name for task in tasks]
    keys += [(f"cosine_{first}_{second}", f"the gradient cosine of tasks {first!r} and {second!r}")
             for i, first in enumerate(names) for second in names[i + 1:]]
    for key, what in list(owners.items()) + keys:
        for prefix in ("", "val_"):
            logged = prefix + key
            described = what if not prefix else f"{what} on validation data"
            if logged in owners and owners[logged] != described:
                raise ValueError(f"Task names collide in the training logs: {described} and {owners[logged]} would "
                                 f"both be logged as {logged!r}; rename one of them.")
            owners[logged] = described


def as_task_dict(tasks, input_names: Sequence[str] = ()) -> dict[str, Task]:
    """Tasks keyed by name, checking they are Task objects with distinct names that collide neither with each
    other's log keys (`val_b` beside `b`), nor with Keras' (`loss`, `val_loss`), nor with `input_names` (the model's
    inputs, e.g. `text`). `tasks` is a list of tasks, a dict of them, or a model that carries its tasks
    (`MultiTaskModel.tasks`)."""
    if hasattr(tasks, "tasks") and not isinstance(tasks, (dict, list, tuple)):
        if tasks.tasks is None:
            raise ValueError(f"Model {getattr(tasks, 'name', tasks)!r} carries no tasks; pass the tasks themselves "
                             f"or build it with mtl_keras.MultiTaskModel(inputs, outputs, tasks=tasks).")
        tasks = tasks.tasks
    task_list = list(tasks.values()) if isinstance(tasks, dict) else list(tasks)
    if not task_list:
        raise ValueError("At least one Task is needed.")
    by_name: dict[str, Task] = {}
    for task in task_list:
        if not isinstance(task, Task):
            raise TypeError(f"Expected mtl_keras.Task objects, got {type(task).__name__}: {task!r}.")
        if task.name in by_name:
            raise ValueError(f"Two tasks are named {task.name!r}; task names must be unique.")
        if task.name in input_names:
            raise ValueError(f"Task {task.name!r} has the name of the model's input {task.name!r}; an output and "
                             f"an input cannot share a name: rename the task.")
        by_name[task.name] = task
    _check_log_keys(task_list)
    return by_name
