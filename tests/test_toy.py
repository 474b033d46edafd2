"""The two-objective toy problem (mtl_keras.datasets.toy) and the benchmark's descent loop on it."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.datasets.toy import TOY_STARTS, distance_to_pareto_set, pareto_x2, toy_losses, toy_pareto_set
from mtl_keras.training.gradients import MGDA
from mtl_keras.training.gradients.mgda import min_norm_exact


def _losses_by_hand(x1, x2):
    f1 = np.log(max(abs(0.5 * (-x1 - 7) - np.tanh(-x2)), 5e-6)) + 6
    f2 = np.log(max(abs(0.5 * (-x1 + 3) + np.tanh(-x2) + 2), 5e-6)) + 6
    c1, c2 = max(np.tanh(x2 / 2), 0.0), max(np.tanh(-x2 / 2), 0.0)
    bowl1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    bowl2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    return [0.1 * (c1 * f1 + c2 * bowl1), c1 * f2 + c2 * bowl2]


def test_toy_losses_match_the_formula_by_hand():
    points = [(0.0, -8.0), (1.0, 2.0), (-3.0, 0.5), (9.0, -1.0)]
    for point in points:
        np.testing.assert_allclose(toy_losses(tf.constant(point)).numpy(), _losses_by_hand(*point), rtol=1e-5,
                                   atol=1e-6)
    batched = toy_losses(tf.constant(points)).numpy()  # [..., 2] in, [..., 2] out
    np.testing.assert_allclose(batched, [_losses_by_hand(*point) for point in points], rtol=1e-5, atol=1e-6)
    assert len(TOY_STARTS) == 5


def _stationarity(point) -> float:
    """|MGDA min-norm combination of the two gradients| / the larger gradient's norm."""
    x = tf.constant(point, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        losses = toy_losses(x)
        first, second = losses[0], losses[1]
    gradients = tf.stack([tape.gradient(first, x), tape.gradient(second, x)])
    alpha = min_norm_exact(tf.matmul(gradients, gradients, transpose_b=True))
    combined = tf.linalg.matvec(gradients, alpha, transpose_a=True)
    return float(tf.norm(combined) / tf.reduce_max(tf.norm(gradients, axis=1)))


def test_pareto_set_is_where_the_two_gradients_cancel():
    for point in toy_pareto_set(15):  # x1 from -7 to 7
        assert _stationarity(point) < 1e-4, point
    assert -8.44 < pareto_x2(7.0) < pareto_x2(0.0) < -8.35  # near, but not on, the line x2 = -8
    off_the_set = [(0.0, -8.0), (0.0, -9.0), (8.0, float(pareto_x2(7.0))), (-8.0, float(pareto_x2(-7.0))),
                   (0.0, -5.0), (3.0, 2.0)]
    for point in off_the_set:
        assert _stationarity(point) > 1e-3, point
    assert distance_to_pareto_set([0.0, pareto_x2(0.0)]) < 1e-6
    np.testing.assert_allclose(distance_to_pareto_set([[9.0, float(pareto_x2(7.0))], [0.0, -7.0]]),
                               [2.0, -7.0 - pareto_x2(0.0)], atol=1e-3)
    with pytest.raises(ValueError, match=r"\[-7, 7\]"):
        pareto_x2(7.5)


def _benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "toy_pareto.py"
    spec = importlib.util.spec_from_file_location("toy_pareto", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mgda_descent_moves_towards_the_front():
    start = (-7.5, -0.5)
    trajectory = _benchmark().make_descent(MGDA(space="parameters"), steps=4000, record_every=1000)(start)
    assert trajectory.shape == (5, 2)
    distances = distance_to_pareto_set(trajectory)
    assert distances[-1] < distances[0] - 2.0, distances
