"""Each gradient method against a hand computation or an independent solver (scipy), on explicit gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import minimize, nnls

from mtl_keras.training.gradients import (
    GRADIENT_METHODS,
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    DualProj,
    NashMTL,
    PCGrad,
    UPGrad,
    get_gradient_method,
    gradient_cosines,
)
from mtl_keras.training.gradients.mgda import min_norm_exact, min_norm_frank_wolfe
from mtl_keras.training.gradients.pcgrad import pcgrad_coefficients

STEP = tf.constant(0, tf.int64)


def _update(method, gradients) -> np.ndarray:
    gradients = np.asarray(gradients, np.float32)
    alpha = method.coefficients(tf.constant(gradients @ gradients.T), STEP).numpy()
    return alpha @ gradients


def _random_gradients(seed, tasks, size=7):
    return np.random.default_rng(seed).normal(size=(tasks, size)).astype(np.float32)


def test_pcgrad_two_conflicting_gradients_by_hand():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])  # g1 . g2 = -1 < 0
    g1_projected = g1 - (g1 @ g2) / (g2 @ g2) * g2  # (0.5, 0.5), orthogonal to g2
    g2_projected = g2 - (g2 @ g1) / (g1 @ g1) * g1  # (0, 1), orthogonal to g1
    np.testing.assert_allclose(_update(PCGrad(), [g1, g2]), g1_projected + g2_projected, atol=1e-6)
    assert abs(g1_projected @ g2) < 1e-12 and abs(g2_projected @ g1) < 1e-12


def test_pcgrad_leaves_agreeing_gradients_alone():
    gradients = [[1.0, 0.2], [0.5, 1.0], [0.3, 0.3]]
    np.testing.assert_allclose(_update(PCGrad(), gradients), np.sum(gradients, axis=0), atol=1e-6)


def _pcgrad_reference(gradients, orders):
    """PCGrad written directly on the vectors, projecting onto the original gradients in the given orders."""
    result = []
    for i, g in enumerate(gradients):
        projected = g.copy()
        for j in orders[i]:
            if j != i and projected @ gradients[j] < 0:
                projected = projected - (projected @ gradients[j]) / (gradients[j] @ gradients[j]) * gradients[j]
        result.append(projected)
    return np.sum(result, axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pcgrad_gram_form_matches_vector_form_for_any_order(seed):
    gradients = _random_gradients(seed, 4).astype(np.float64)
    orders = np.stack([np.random.default_rng(seed + i).permutation(4) for i in range(4)])
    alpha = pcgrad_coefficients(tf.constant(gradients @ gradients.T, tf.float64), tf.constant(orders)).numpy()
    np.testing.assert_allclose(alpha @ gradients, _pcgrad_reference(gradients, orders), atol=1e-9)


def test_pcgrad_order_is_random_per_step_and_the_same_for_the_same_step():
    gradients = _random_gradients(5, 4)
    gram = tf.constant(gradients @ gradients.T)
    method = PCGrad(seed=3)
    draws = [method.coefficients(gram, tf.constant(step, tf.int64)).numpy() for step in range(12)]
    np.testing.assert_array_equal(draws[0], method.coefficients(gram, tf.constant(0, tf.int64)).numpy())
    assert len({tuple(np.round(d, 5)) for d in draws}) > 1


def test_mgda_min_norm_point_of_two_gradients_by_hand():
    # min_a || a g1 + (1 - a) g2 ||^2 with g1 = (1, 0), g2 = (0, 2): a^2 + 4 (1 - a)^2, minimal at a = 0.8.
    np.testing.assert_allclose(_update(MGDA(), [[1.0, 0.0], [0.0, 2.0]]), [0.8, 0.4], atol=1e-6)
    # One gradient inside the other's direction: the shorter is the min-norm point.
    np.testing.assert_allclose(_update(MGDA(), [[1.0, 1.0], [3.0, 3.0]]), [1.0, 1.0], atol=1e-6)


def _min_norm_scipy(gram):
    count = len(gram)
    result = minimize(lambda a: a @ gram @ a, np.full(count, 1 / count), method="SLSQP",
                      bounds=[(0, 1)] * count, constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1}],
                      options={"ftol": 1e-14, "maxiter": 500})
    return result.fun


@pytest.mark.parametrize("tasks,seed", [(3, 0), (4, 1), (5, 2), (3, 3)])
def test_mgda_exact_and_frank_wolfe_reach_the_minimum_norm(tasks, seed):
    gradients = _random_gradients(seed, tasks, size=3)  # more tasks than dimensions: the hull can contain 0
    gram = gradients.astype(np.float64) @ gradients.T
    best = _min_norm_scipy(gram)
    for solver in (min_norm_exact, lambda g: min_norm_frank_wolfe(g, 2000)):
        alpha = tf.function(solver)(tf.constant(gram, tf.float32)).numpy()  # in a graph, as in the train step
        assert alpha.min() >= -1e-6 and abs(alpha.sum() - 1) < 1e-5
        assert alpha @ gram @ alpha <= best + 1e-4 * max(1.0, np.trace(gram))


def test_mgda_direction_does_not_increase_any_task_loss():
    gradients = _random_gradients(7, 3, size=10)
    direction = _update(MGDA(), gradients)
    assert np.all(gradients @ direction >= np.sum(direction**2) - 1e-4)  # the min-norm point's defining property


def _cagrad_scipy(gradients, c):
    g0 = gradients.mean(axis=0)
    radius = c * np.linalg.norm(g0)

    def objective(w):
        gw = w @ gradients
        return gw @ g0 + radius * np.linalg.norm(gw)

    count = len(gradients)
    result = minimize(objective, np.full(count, 1 / count), method="SLSQP", bounds=[(0, 1)] * count,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-12})
    gw = result.x @ gradients
    return (g0 + radius / np.linalg.norm(gw) * gw) / (1 + c**2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cagrad_matches_an_independent_solver(seed):
    gradients = _random_gradients(seed, 3).astype(np.float64)
    np.testing.assert_allclose(_update(CAGrad(c=0.5), gradients), _cagrad_scipy(gradients, 0.5), atol=2e-3)


def test_cagrad_with_c_zero_is_the_average():
    gradients = _random_gradients(4, 3)
    np.testing.assert_allclose(_update(CAGrad(c=0.0), gradients), gradients.mean(axis=0), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_imtl_g_gives_equal_projections_on_every_task_direction(seed):
    gradients = np.abs(_random_gradients(seed, 3)) + 0.1
    gram = tf.constant(gradients @ gradients.T)
    alpha = IMTLG().coefficients(gram, STEP).numpy()
    update = alpha @ gradients
    projections = gradients @ update / np.linalg.norm(gradients, axis=1)
    np.testing.assert_allclose(projections, projections[0], rtol=1e-3)
    assert abs(alpha.sum() - 1) < 1e-5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nash_mtl_solves_the_bargaining_condition(seed):
    gradients = np.abs(_random_gradients(seed, 4)) + 0.05  # positively correlated: a solution exists
    gram = gradients.astype(np.float64) @ gradients.T
    alpha = NashMTL().coefficients(tf.constant(gram, tf.float32), STEP).numpy().astype(np.float64)
    assert np.all(alpha > 0)
    np.testing.assert_allclose(alpha * (gram @ alpha), 1.0, rtol=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_aligned_mtl_gives_aligned_gradients_equal_singular_values(seed):
    gradients = _random_gradients(seed, 3, size=8).astype(np.float64)
    gram = gradients @ gradients.T
    alpha = AlignedMTL().coefficients(tf.constant(gram, tf.float32), STEP).numpy()
    eigenvalues, vectors = np.linalg.eigh(gram)
    balance = np.sqrt(eigenvalues.min()) * vectors @ np.diag(eigenvalues**-0.5) @ vectors.T
    aligned = balance @ gradients
    singular = np.linalg.svd(aligned, compute_uv=False)
    np.testing.assert_allclose(singular, np.sqrt(eigenvalues.min()), rtol=1e-6)
    np.testing.assert_allclose(alpha @ gradients, aligned.sum(axis=0), rtol=1e-3, atol=1e-4)


def test_aligned_mtl_ignores_a_zero_direction():
    gradients = np.array([[1.0, 0.0], [2.0, 0.0]], np.float32)  # rank 1
    update = _update(AlignedMTL(), gradients)
    assert np.all(np.isfinite(update)) and update[0] > 0


def _dual_cone_projection(gradients, vector):
    """The projection of `vector` onto {x : g_t . x >= 0}, by an independent solver: its dual is a non-negative
    least-squares problem, x = vector + J^T v with v = argmin_{v >= 0} ||J^T v + vector||."""
    excess, _ = nnls(gradients.T.astype(np.float64), -vector.astype(np.float64))
    return vector + gradients.T @ excess


def test_dual_cone_methods_take_parallel_and_zero_gradients():
    for gradients in ([[1.0, 0.0], [2.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [1.0, 2.0], [-1.0, -2.0]]):
        gradients = np.array(gradients, np.float32)
        for method in (UPGrad(), DualProj()):
            update = _update(method, gradients)
            assert np.all(np.isfinite(update)) and np.all(gradients @ update >= -1e-5), (method, gradients, update)
    opposite = np.array([[1.0, 2.0], [-1.0, -2.0]], np.float32)  # the dual cone is the line orthogonal to them
    np.testing.assert_allclose(_update(UPGrad(), opposite), 0.0, atol=1e-5)


def test_upgrad_and_dualproj_of_two_gradients_by_hand():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])  # conflicting: UPGrad is half of PCGrad's update
    np.testing.assert_allclose(_update(UPGrad(), [g1, g2]), _update(PCGrad(), [g1, g2]) / 2, atol=1e-6)
    agreeing = [[1.0, 0.2], [0.5, 1.0], [0.3, 0.3]]  # inside their own dual cone: both are the mean
    for method in (UPGrad(), DualProj()):
        np.testing.assert_allclose(_update(method, agreeing), np.mean(agreeing, axis=0), atol=1e-6)
    g1, g2 = np.array([1.0, 0.0]), np.array([-2.0, 0.5])  # the mean (-0.5, 0.25) lowers task 1's loss less than 0
    mean = (g1 + g2) / 2
    np.testing.assert_allclose(_update(DualProj(), [g1, g2]), _dual_cone_projection(np.stack([g1, g2]), mean),
                               atol=1e-6)


@pytest.mark.parametrize("tasks,seed", [(3, 0), (4, 1), (5, 2), (2, 3)])
def test_upgrad_and_dualproj_match_an_independent_solver(tasks, seed):
    gradients = _random_gradients(seed, tasks) - 0.4  # some pairs conflict
    upgrad = np.mean([_dual_cone_projection(gradients, g) for g in gradients], axis=0)
    dualproj = _dual_cone_projection(gradients, gradients.mean(axis=0))
    for method, expected in ((UPGrad(), upgrad), (DualProj(), dualproj)):
        update = _update(method, gradients)
        np.testing.assert_allclose(update, expected, atol=2e-5 * np.abs(expected).max())
        assert np.all(gradients @ update >= -1e-5), (method, gradients @ update)  # no task's loss rises


def test_dual_cone_methods_fail_loudly_rather_than_guess(monkeypatch):
    from mtl_keras.training.gradients import dual_cone

    # A non-finite gradient gives a non-finite update (loss scaling then skips the step), not an error.
    assert np.all(np.isnan(UPGrad().coefficients(tf.constant([[1.0, np.nan], [np.nan, 1.0]]), STEP).numpy()))
    assert np.all(np.isnan(DualProj().coefficients(tf.constant([[np.inf, 0.0], [0.0, 1.0]]), STEP).numpy()))
    monkeypatch.setattr(dual_cone, "TOLERANCE", -1.0)  # no set can satisfy the conditions now
    with pytest.raises(tf.errors.InvalidArgumentError, match="no set of tasks satisfies"):
        UPGrad().coefficients(tf.constant([[1.0, 0.0], [0.0, 1.0]]), STEP)
    with pytest.raises(ValueError, match="up to 12 tasks; got 13"):
        DualProj().coefficients(tf.eye(13), STEP)


def test_cosines_from_the_gram_matrix():
    gradients = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], np.float32)
    cosines = gradient_cosines(tf.constant(gradients @ gradients.T)).numpy()
    np.testing.assert_allclose(cosines[0, 1], 1 / np.sqrt(2), rtol=1e-6)
    assert cosines[0, 2] == 0.0  # a zero gradient has no direction: 0, not NaN


def test_methods_by_name_and_config_round_trip():
    for name, cls in GRADIENT_METHODS.items():
        method = get_gradient_method(name)
        assert isinstance(method, cls)
        assert type(method).from_config(method.get_config()).get_config() == method.get_config()
    with pytest.raises(ValueError, match="Unknown gradient method 'pcgard'"):
        get_gradient_method("pcgard")
    with pytest.raises(ValueError, match="space must be one of"):
        PCGrad(space="weights")
