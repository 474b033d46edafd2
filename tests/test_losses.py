import keras
import numpy as np
import pytest

from mtl_keras import MaskedLoss


def test_mean_over_labelled_examples_only():
    y_true = np.array([[1.0], [0.0], [1.0], [0.0]])
    y_pred = np.array([[0.9], [0.2], [0.4], [0.7]])
    present = np.array([1.0, 0.0, 1.0, 1.0])
    bce = -(np.log(0.9) + np.log(0.4) + np.log(0.3)) / 3  # example 1 is unlabelled
    value = MaskedLoss(keras.losses.BinaryCrossentropy())(y_true, y_pred, sample_weight=present)
    assert float(value) == pytest.approx(bce, rel=1e-5)


def test_batch_without_labels_contributes_zero_not_nan():
    value = MaskedLoss("mse")(np.ones((3, 1)), np.zeros((3, 1)), sample_weight=np.zeros(3))
    assert float(value) == 0.0


def test_per_pixel_losses_average_within_each_example_first():
    y_true = np.zeros((2, 2, 2), "int32")
    probabilities = np.full((2, 2, 2, 2), 0.5, "float32")
    probabilities[0, ..., 0] = 0.8
    probabilities[0, ..., 1] = 0.2
    value = MaskedLoss(keras.losses.SparseCategoricalCrossentropy())(y_true, probabilities,
                                                                     sample_weight=np.array([1.0, 0.0]))
    assert float(value) == pytest.approx(-np.log(0.8), rel=1e-5)


def test_serialization_keeps_the_inner_loss():
    loss = MaskedLoss(keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone.inner, keras.losses.CategoricalCrossentropy)
    assert clone.inner.get_config()["label_smoothing"] == pytest.approx(0.1)
    assert float(clone([[0.0, 1.0]], [[0.3, 0.7]])) == pytest.approx(float(loss([[0.0, 1.0]], [[0.3, 0.7]])))


def test_function_losses_are_accepted():
    def absolute(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)

    value = MaskedLoss(absolute)([[1.0], [3.0]], [[0.0], [0.0]], sample_weight=[0.0, 1.0])
    assert float(value) == pytest.approx(3.0)
