"""Each gradient method against a hand computation or an independent solver (scipy), on explicit gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import minimize, nnls

from mtl_keras.training.gradients import (
    DBMTL,
    GRADIENT_METHODS,
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    ConFIG,
    DualProj,
    ExcessMTL,
    FairGrad,
    GradDrop,
    GradVac,
    MoCo,
    MoDo,
    NashMTL,
    PCGrad,
    SDMGrad,
    UPGrad,
    get_gradient_method,
    gradient_cosines,
)
from mtl_keras.training.gradients.base import project_to_simplex
from mtl_keras.training.gradients.gradvac import gradvac_coefficients
from mtl_keras.training.gradients.mgda import min_norm_exact, min_norm_frank_wolfe
from mtl_keras.training.gradients.pcgrad import pcgrad_coefficients, random_orders

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
    starts = [np.full(count, 1 / count)] + [np.random.default_rng(k).dirichlet(np.ones(count)) for k in range(4)]
    result = min((minimize(objective, start, method="SLSQP", bounds=[(0, 1)] * count,
                           constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                           options={"ftol": 1e-15, "maxiter": 1000}) for start in starts), key=lambda r: r.fun)
    gw = result.x @ gradients
    return (g0 + radius / np.linalg.norm(gw) * gw) / (1 + c**2)


@pytest.mark.parametrize("tasks,size,seed", [(3, 10, 0), (3, 10, 1), (5, 10, 2), (8, 16, 3), (5, 3, 4)])
def test_cagrad_matches_an_independent_solver(tasks, size, seed):
    """Exact up to 10 tasks (more tasks than dimensions included): the peers' bar, cosine >= 0.9999 and the norm
    within 1e-3 (the earlier 100 mirror-descent steps missed it at 5 tasks)."""
    gradients = _random_gradients(seed, tasks, size=size).astype(np.float64)
    ours, reference = _update(CAGrad(c=0.5), gradients), _cagrad_scipy(gradients, 0.5)
    assert ours @ reference / np.linalg.norm(ours) / np.linalg.norm(reference) >= 0.9999
    assert abs(np.linalg.norm(ours) / np.linalg.norm(reference) - 1) <= 1e-3


def test_cagrad_above_the_exact_range_uses_mirror_descent():
    gradients = _random_gradients(5, 11, size=20).astype(np.float64)
    ours, reference = _update(CAGrad(c=0.5, iterations=2000), gradients), _cagrad_scipy(gradients, 0.5)
    assert ours @ reference / np.linalg.norm(ours) / np.linalg.norm(reference) >= 0.999


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


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_fairgrad_solves_its_fairness_condition(alpha, seed):
    gradients = (np.abs(_random_gradients(seed, 3)) + 0.05) * np.array([[1.0], [10.0], [0.1]], np.float32)
    gram = gradients.astype(np.float64) @ gradients.T
    weights = FairGrad(alpha=alpha).coefficients(tf.constant(gram, tf.float32), STEP).numpy().astype(np.float64)
    assert np.all(weights > 0)
    np.testing.assert_allclose(gram @ weights, weights ** (-1 / alpha), rtol=2e-3)
    if alpha == 1.0:  # proportional fairness is Nash-MTL's bargaining condition
        np.testing.assert_allclose(weights, NashMTL().coefficients(tf.constant(gram, tf.float32), STEP).numpy(),
                                   rtol=1e-6)


def _unit(vector):
    return vector / np.linalg.norm(vector)


@pytest.mark.parametrize("tasks", [2, 3, 5])
def test_config_is_equally_aligned_with_every_gradient_and_matches_a_least_squares_solve(tasks):
    gradients = _random_gradients(tasks, tasks, size=9).astype(np.float64) * np.arange(1, tasks + 1)[:, None]
    update = _update(ConFIG(), gradients.astype(np.float32)).astype(np.float64)
    cosines = gradients @ update / np.linalg.norm(gradients, axis=1) / np.linalg.norm(update)
    np.testing.assert_allclose(cosines, cosines[0], rtol=1e-4)
    assert cosines[0] > 0
    # The paper's computation, independently: the min-norm solution of U x = 1 by least squares, its length the sum
    # of the gradients' projections on it.
    rows = gradients / np.linalg.norm(gradients, axis=1, keepdims=True)
    direction = _unit(np.linalg.lstsq(rows, np.ones(tasks), rcond=None)[0])
    np.testing.assert_allclose(update, (gradients @ direction).sum() * direction, rtol=1e-4, atol=1e-6)


def test_config_gives_a_zero_gradient_no_weight_and_takes_parallel_ones():
    update = _update(ConFIG(), [[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(update, [1.0, 0.0], atol=1e-6)
    update = _update(ConFIG(), [[1.0, 1.0], [2.0, 2.0]])  # one direction: the sum of their projections along it
    np.testing.assert_allclose(update, [3.0, 3.0], rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
def test_sdmgrad_matches_an_independent_solver(seed, lam):
    gradients = _random_gradients(seed, 3, size=6).astype(np.float64)
    mean = gradients.mean(axis=0)

    def objective(w):
        return np.sum((w @ gradients + lam * mean) ** 2)

    result = minimize(objective, np.full(3, 1 / 3), method="SLSQP", bounds=[(0, 1)] * 3,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-14})
    expected = (result.x @ gradients + lam * mean) / (1 + lam)
    np.testing.assert_allclose(_update(SDMGrad(lam=lam), gradients.astype(np.float32)), expected, atol=1e-4)
    if lam == 0.0:
        np.testing.assert_allclose(_update(SDMGrad(lam=0.0), gradients), _update(MGDA(), gradients), atol=1e-6)


def test_simplex_projection_is_the_nearest_point_of_the_simplex():
    for vector in ([0.2, 0.3, 0.5], [2.0, -1.0, 0.5], [-3.0, -3.0, -2.0], [0.4, 0.4, 0.4, 5.0]):
        vector = np.array(vector, np.float32)
        projected = project_to_simplex(tf.constant(vector)).numpy()
        result = minimize(lambda p, v=vector: np.sum((p - v) ** 2), np.full(len(vector), 1 / len(vector)),
                          method="SLSQP", bounds=[(0, 1)] * len(vector),
                          constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1}], options={"ftol": 1e-14})
        np.testing.assert_allclose(projected, result.x, atol=1e-5)


def test_modo_takes_one_projected_step_per_call_and_tracks_mgda():
    gradients = np.array([[1.0, 0.0], [-0.5, 2.0]], np.float32)
    gram = gradients @ gradients.T
    method = MoDo(gamma=0.05, rho=0.1)
    method.build_for_tasks(2)
    weights = np.full(2, 0.5)
    for _ in range(3):  # by hand: lambda <- proj(lambda - gamma (G + rho I) lambda)
        step = weights - 0.05 * (gram @ weights + 0.1 * weights)
        weights = step + (1 - step.sum()) / 2  # both stay positive here, so the projection is this shift
        np.testing.assert_allclose(method.coefficients(tf.constant(gram), STEP).numpy(), weights, rtol=1e-5)
    np.testing.assert_allclose(method.task_weights.numpy(), weights, rtol=1e-5)  # kept as state
    slow = MoDo(gamma=0.05, rho=0.0)
    slow.build_for_tasks(2)
    for _ in range(400):
        tracked = slow.coefficients(tf.constant(gram), STEP).numpy()
    np.testing.assert_allclose(tracked, MGDA().coefficients(tf.constant(gram), STEP).numpy(), atol=1e-4)


def _gradvac_by_hand(gradients, orders, targets, beta):
    """GradVac's vector form, as the paper writes it: g_i' corrected towards each target, targets averaged."""
    targets = targets.copy()
    updated = []
    for i in range(len(gradients)):
        g = gradients[i].copy()
        for j in orders[i]:
            if j == i:
                continue
            cosine = g @ gradients[j] / np.linalg.norm(g) / np.linalg.norm(gradients[j])
            target = targets[i, j]
            if cosine < target:
                g = g + (np.linalg.norm(g) * (target * np.sqrt(1 - cosine**2) - cosine * np.sqrt(1 - target**2))
                         / (np.linalg.norm(gradients[j]) * np.sqrt(1 - target**2))) * gradients[j]
            targets[i, j] = (1 - beta) * target + beta * cosine
        updated.append(g)
    return np.sum(updated, axis=0), targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradvac_gram_form_matches_the_vector_form(seed):
    gradients = _random_gradients(seed, 3, size=6).astype(np.float64)
    orders = random_orders(3, seed, tf.constant(seed, tf.int64))
    targets = np.random.default_rng(seed).uniform(-0.3, 0.6, size=(3, 3))
    alpha, new_targets = gradvac_coefficients(tf.constant(gradients @ gradients.T, tf.float32), orders,
                                              tf.constant(targets, tf.float32), beta=0.3)
    expected, expected_targets = _gradvac_by_hand(gradients, orders.numpy(), targets, 0.3)
    np.testing.assert_allclose(alpha.numpy() @ gradients, expected, rtol=1e-4, atol=1e-5)
    off_diagonal = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(new_targets.numpy()[off_diagonal], expected_targets[off_diagonal], atol=1e-5)


def test_gradvac_starts_as_pcgrad_and_reaches_its_target_cosine():
    gradients = _random_gradients(3, 3)
    gram = tf.constant(gradients @ gradients.T)
    method = GradVac(beta=0.5)
    method.build_for_tasks(3)
    np.testing.assert_allclose(method.coefficients(gram, STEP).numpy(), PCGrad().coefficients(gram, STEP).numpy(),
                               rtol=1e-5)  # the same stateless order, every target 0
    assert np.any(method.targets.numpy() != 0.0)  # the targets moved
    g1, g2 = np.array([1.0, 0.0]), np.array([-0.2, 1.0])  # cos -0.196 < target 0.5: corrected to exactly 0.5
    method = GradVac()
    method.build_for_tasks(2)
    method.targets.assign([[0.0, 0.5], [0.5, 0.0]])
    alpha = method.coefficients(tf.constant(np.array([g1, g2]) @ np.array([g1, g2]).T, tf.float32), STEP).numpy()
    corrected = g1 + (alpha[1] - 1.0) * g2  # two tasks: alpha = (1 + c2, 1 + c1), g1' = g1 + c1 g2, g2' = g2 + c2 g1
    np.testing.assert_allclose(_unit(corrected) @ _unit(g2), 0.5, atol=1e-5)


def test_stateful_methods_keep_their_state_in_variables():
    for method in (GradVac(), MoDo(), PCGrad(update_every=3)):
        assert method.state_variables == []  # nothing before compile builds it
        state = method.build_for_tasks(3)
        assert [v.name for v in state.weights] == [v.name for v in method.state_variables]
    assert PCGrad().build_for_tasks(3) is None  # stateless: no layer to track


STEP0 = tf.constant(0, tf.int64)


def _run_steps(method, gradients_per_step, losses_per_step):
    """Calls `update_and_state` step by step, assigning the state as the training step does; returns the updates
    and the coefficients of each step."""
    updates, coefficients = [], []
    for step, (gradients, losses) in enumerate(zip(gradients_per_step, losses_per_step, strict=True)):
        update, alpha, state = method.update_and_state(tf.constant(gradients, tf.float32),
                                                       tf.constant(losses, tf.float32), tf.constant(step, tf.int64))
        for variable, value in zip(method.state_variables, state, strict=True):
            variable.assign(value)
        updates.append(update.numpy())
        coefficients.append(alpha.numpy())
    return updates, coefficients


def _random_steps(seed, steps=3, tasks=3, size=5):
    rng = np.random.default_rng(seed)
    return ([rng.normal(size=(tasks, size)) for _ in range(steps)],
            [rng.uniform(0.5, 2.0, tasks) for _ in range(steps)])


@pytest.mark.parametrize("seed", [0, 1])
def test_moco_tracks_normalised_gradients_and_steps_its_weights_by_hand(seed):
    gradients, losses = _random_steps(seed)
    method = MoCo(beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.2)
    method.build_for_tasks(3, num_parameters=7)  # state longer than the 5 shared parameters: padded with zeros
    updates, weights = _run_steps(method, gradients, losses)
    tracked, lam = np.zeros((3, 5)), np.full(3, 1 / 3)
    for k, (g, loss) in enumerate(zip(gradients, losses, strict=True), start=1):
        target = g / (np.linalg.norm(g, axis=1, keepdims=True) + 1e-8) * loss[:, None]
        tracked = tracked - 0.5 / k**0.5 * (tracked - target)
        logits = lam - 0.1 / k**0.5 * (tracked @ tracked.T + 0.2 * np.eye(3)) @ lam
        lam = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(weights[k - 1], lam, rtol=1e-5)
        np.testing.assert_allclose(updates[k - 1], tracked.T @ lam, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(method.tracked.numpy()[:, 5:], 0.0)  # the padding stays zero


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_db_mtl_rescales_tracked_log_loss_gradients_to_the_largest_norm(beta):
    gradients, losses = _random_steps(3)
    method = DBMTL(beta=beta)
    method.build_for_tasks(3, num_parameters=5)
    updates, _ = _run_steps(method, gradients, losses)
    buffers = np.zeros((3, 5))
    for k, (g, loss) in enumerate(zip(gradients, losses, strict=True)):
        log_gradients = g / (loss[:, None] + 1e-8)
        buffers = log_gradients + beta * (buffers - log_gradients)
        norms = np.linalg.norm(buffers, axis=1)
        expected = (norms.max() / (norms + 1e-8)) @ buffers
        np.testing.assert_allclose(updates[k], expected, rtol=1e-4, atol=1e-6)
        if beta == 0.0:  # no memory: each task's share has the same norm, the largest log-loss gradient's
            shares = (norms.max() / norms)[:, None] * log_gradients
            np.testing.assert_allclose(np.linalg.norm(shares, axis=1), norms.max(), rtol=1e-5)
    # Scale invariance: multiplying a task's loss (and so its gradient) by 100 changes nothing.
    scaled = DBMTL(beta=beta)
    scaled.build_for_tasks(3, num_parameters=5)
    factor = np.array([100.0, 1.0, 1.0])[:, None]
    rescaled, _ = _run_steps(scaled, [g * factor for g in gradients], [loss * factor[:, 0] for loss in losses])
    np.testing.assert_allclose(rescaled[-1], updates[-1], rtol=1e-4)


def test_excess_mtl_weights_grow_with_the_relative_excess_risk_by_hand():
    gradients, losses = _random_steps(4, steps=4)
    method = ExcessMTL(robust_step_size=0.5)
    method.build_for_tasks(3, num_parameters=6)
    updates, weights = _run_steps(method, gradients, losses)
    squared, w, first = np.zeros((3, 5)), np.ones(3), None
    for k, g in enumerate(gradients):
        squared = squared + g**2
        excess = np.sum(g**2 / np.sqrt(squared + 1e-7), axis=1)
        if first is None:
            first = excess  # the first step only records the reference; the weights stay at 1
        else:
            w = w * np.exp(0.5 * excess / first)
            w = w / w.sum() * 3
        np.testing.assert_allclose(weights[k], w, rtol=1e-5)
        np.testing.assert_allclose(updates[k], w @ g, rtol=1e-4, atol=1e-6)
    assert not np.allclose(weights[-1], 1.0)


def test_graddrop_keeps_agreeing_coordinates_and_picks_signs_by_purity():
    method = GradDrop(space="parameters")
    method.build_for_tasks(2, num_parameters=3)
    # Coordinate 0: both positive (kept). 1: both negative (kept). 2: +3 against -1, purity 0.75.
    gradients = tf.constant([[1.0, -2.0, 3.0], [2.0, -1.0, -1.0]])
    kept_positive = []
    for step in range(400):
        update, _ = method.update(gradients, tf.ones([2]), tf.constant(step, tf.int64))
        np.testing.assert_allclose(update.numpy()[:2], [3.0, -3.0])
        assert float(update[2]) in (3.0, -1.0)  # one sign whole, never a mixture
        kept_positive.append(float(update[2]) == 3.0)
    assert abs(np.mean(kept_positive) - 0.75) < 0.07  # 400 draws: sd 0.022
    # The draw is a function of (seed, step): the same step keeps the same coordinates.
    np.testing.assert_array_equal(method.update(gradients, tf.ones([2]), STEP0)[0].numpy(),
                                  method.update(gradients, tf.ones([2]), STEP0)[0].numpy())
    leaky = GradDrop(space="parameters", leak=1.0)  # leak 1: everything kept, the plain sum
    leaky.build_for_tasks(2, num_parameters=3)
    np.testing.assert_allclose(leaky.update(gradients, tf.ones([2]), STEP0)[0].numpy(), [3.0, -3.0, 2.0])
    with pytest.raises(ValueError, match="one per task"):
        GradDrop(leak=[0.1, 0.2, 0.3]).build_for_tasks(2)


def test_vector_methods_refuse_what_they_cannot_do():
    for cls in (GradDrop, MoCo, DBMTL):
        with pytest.raises(ValueError, match="update_every must be 1"):
            cls(update_every=2)
    ExcessMTL(update_every=2)  # its update is a combination of the step's gradients: reusable
    for cls in (MoCo, DBMTL, ExcessMTL):
        with pytest.raises(ValueError, match="only space='parameters'"):
            cls(space="representation")
    with pytest.raises(TypeError, match="needs the gradient vectors"):
        MoCo().coefficients(tf.eye(2), STEP0)
    with pytest.raises(ValueError, match="needs the parameter count"):
        MoCo().build_for_tasks(2)
    method = DBMTL()
    method.build_for_tasks(2, num_parameters=3)
    with pytest.raises(ValueError, match="outnumber the parameters"):
        method.update_and_state(tf.ones([2, 4]), tf.ones([2]), STEP0)
    # Non-finite gradients: a NaN update (loss scaling skips the step) and the state left as it was.
    update, _, state = method.update_and_state(tf.constant([[1.0, np.inf, 0.0], [1.0, 1.0, 1.0]]), tf.ones([2]),
                                               STEP0)
    assert np.all(np.isnan(update.numpy()))
    np.testing.assert_array_equal(state[0].numpy(), 0.0)


def test_methods_that_read_the_losses_stop_on_losses_they_cannot_use():
    gradients = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    for method, losses, message in ((DBMTL(), [1.0, 0.0], "loss must be positive"),
                                    (MoCo(), [1.0, -0.5], "must be >= 0")):
        method.build_for_tasks(2, num_parameters=2)
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            method.update_and_state(gradients, tf.constant(losses), STEP0)


def test_excess_mtl_weights_stay_finite_when_the_excess_grows_a_thousandfold():
    method = ExcessMTL()
    method.build_for_tasks(2, num_parameters=2)
    tiny, huge = [[1e-3, 0.0], [0.0, 1e-3]], [[1e4, 0.0], [0.0, 1.0]]  # e / e0 of task 1: about 1e7 at step 1
    _, weights = _run_steps(method, [tiny, huge, huge], [[1.0, 1.0]] * 3)
    assert np.all(np.isfinite(weights[-1])) and abs(weights[-1].sum() - 2.0) < 1e-5
    assert weights[-1][0] > 1.99  # the task whose excess grew takes (nearly) all the weight, as exp would give it
