import numpy as np
import pytest

from mtl_keras import LabelError, Task, prepare_labels


def test_missing_sentinel_becomes_zero_weight_and_a_safe_fill(text_tasks, tiny_labels):
    labels, weights = prepare_labels(text_tasks, tiny_labels)
    assert weights["sentiment"].tolist() == [1, 1, 0, 1, 1, 0, 1, 1]
    assert labels["sentiment"].shape == (8, 1)
    assert labels["sentiment"][2, 0] == 0  # filled, never -1, so no loss sees it
    assert weights["intensity"].tolist() == [1] * 8
    assert labels["domain"].dtype == np.int32


def test_explicit_mask_marks_missing_regression_targets():
    targets = np.array([1.0, np.nan, 2.0])
    labels, weights = prepare_labels([Task("r", "regression")], {"r": targets},
                                     masks={"r": np.array([True, False, True])})
    assert weights["r"].tolist() == [1, 0, 1]
    assert np.isfinite(labels["r"]).all()


def test_multilabel_missing_rows():
    task = Task("tags", "multilabel", num_classes=3)
    _, weights = prepare_labels([task], {"tags": np.array([[1, 0, 1], [-1, -1, -1]])})
    assert weights["tags"].tolist() == [1, 0]


@pytest.mark.parametrize(
    "task, labels, message",
    [
        (Task("s", "binary"), {"t": [1, 0]}, r"unknown task\(s\) \['t'\]"),
        (Task("s", "binary"), {"s": [[1, 0], [0, 1]]}, r"Task 's' \(binary\) expects labels of shape \(1,\)"),
        (Task("s", "binary"), {"s": ["pos", "neg"]}, "Task 's' expects numeric labels"),
        (Task("s", "binary"), {"s": [1, 2]}, "Task 's': label 2 is out of range"),
        (Task("d", "multiclass", num_classes=4), {"d": [0, 4]}, "Task 'd': label 4 is out of range"),
        (Task("d", "multiclass", num_classes=4), {"d": [0.5, 1]}, "integer class indices"),
        (Task("d", "multiclass", num_classes=4), {"d": [-2, 1]}, "out of range"),
        (Task("r", "regression"), {"r": [1.0, np.nan]}, "Task 'r': regression target of example 1 is not finite"),
        (Task("r", "regression", units=2), {"r": [1.0, 2.0]}, r"expects labels of shape \(2,\)"),
        (Task("m", "multilabel", num_classes=2), {"m": [[1, -1]]}, "only partly missing"),
        (Task("m", "multilabel", num_classes=2), {"m": [[1, 3]]}, "out of range"),
        (Task("g", "segmentation", num_classes=3), {"g": np.zeros((2, 4))}, r"\(examples, height, width\)"),
        (Task("g", "segmentation", num_classes=3), {"g": np.full((1, 2, 2), 3)}, "out of range"),
        (Task("s", "binary"), {"s": []}, "no labels"),
    ],
)
def test_bad_labels_are_named_and_explained(task, labels, message):
    with pytest.raises(LabelError, match=message):
        prepare_labels([task], labels)


def test_every_task_needs_labels_and_counts_must_agree(text_tasks, tiny_labels):
    with pytest.raises(LabelError, match=r"No labels for task\(s\) \['domain'\]"):
        prepare_labels(text_tasks, {k: v for k, v in tiny_labels.items() if k != "domain"})
    with pytest.raises(LabelError, match="Task 'sentiment' has 8 labels for 5 examples"):
        prepare_labels(text_tasks, tiny_labels, num_examples=5)


def test_masks_must_name_known_tasks_and_be_boolean(text_tasks, tiny_labels):
    with pytest.raises(LabelError, match="masks name unknown task"):
        prepare_labels(text_tasks, tiny_labels, masks={"topic": np.ones(8, bool)})
    with pytest.raises(LabelError, match="boolean array"):
        prepare_labels(text_tasks, tiny_labels, masks={"intensity": np.ones(8)})
