"""Each loss weighting against its update rule, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.training.weighting import (
    DWA,
    FAMO,
    WEIGHTINGS,
    GeometricLossWeighting,
    GradNorm,
    RandomLossWeighting,
    SmoothTchebycheff,
    StaticWeighting,
    UncertaintyWeighting,
    get_weighting,
)


def _built(weighting, count=2, loss_weights=None):
    weighting.build_for_tasks([f"t{i}" for i in range(count)], loss_weights or [1.0] * count)
    return weighting


def test_static_weights_are_the_compiled_ones():
    weights = _built(StaticWeighting(), 3, [1.0, 0.5, 2.0]).task_weights(tf.constant([9.0, 9.0, 9.0]), 0)
    np.testing.assert_array_equal(weights.numpy(), [1.0, 0.5, 2.0])


def test_uncertainty_loss_and_gradient_by_hand():
    weighting = _built(UncertaintyWeighting(initial_log_variance=0.3))
    weighting.log_variance.assign([0.3, -0.7])
    losses = tf.constant([2.0, 0.5])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(weighting.task_weights(losses, 0) * losses) + weighting.penalty()
    s = np.array([0.3, -0.7])
    expected_total = np.sum(0.5 * np.exp(-s) * [2.0, 0.5] + 0.5 * s)
    expected_gradient = 0.5 - 0.5 * np.exp(-s) * [2.0, 0.5]
    assert float(total) == pytest.approx(expected_total, rel=1e-6)
    np.testing.assert_allclose(tape.gradient(total, weighting.log_variance).numpy(), expected_gradient, rtol=1e-6)


def test_uncertainty_settles_where_the_variance_equals_the_loss():
    weighting = _built(UncertaintyWeighting())
    losses = tf.constant([4.0, 0.25])

    @tf.function  # 3,000 plain gradient steps: eagerly they take seconds
    def descend():
        for _ in tf.range(3000):
            with tf.GradientTape() as tape:
                total = tf.reduce_sum(weighting.task_weights(losses, 0) * losses) + weighting.penalty()
            weighting.log_variance.assign_sub(0.05 * tape.gradient(total, weighting.log_variance))

    descend()
    np.testing.assert_allclose(np.exp(weighting.log_variance.numpy()), [4.0, 0.25], rtol=1e-3)


def test_gradnorm_update_by_hand_and_weights_sum_to_the_task_count():
    weighting = _built(GradNorm(alpha=0.5, learning_rate=0.1, initial_steps=2), 3)
    # The first two steps give L(0) = their mean; the weights do not move yet.
    weighting.update(tf.constant([2.0, 1.0, 4.0]), 0, tf.constant([1.0, 1.0, 1.0]))
    weighting.update(tf.constant([2.0, 3.0, 4.0]), 1, tf.constant([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(weighting.initial_losses.numpy(), [2.0, 2.0, 4.0])
    np.testing.assert_allclose(weighting.task_weights(None, 2).numpy(), [1.0, 1.0, 1.0])
    losses, norms = np.array([1.0, 2.0, 2.0]), np.array([0.5, 2.0, 1.0])
    weighting.update(tf.constant(losses, tf.float32), 2, tf.constant(norms, tf.float32))
    ratios = losses / np.array([2.0, 2.0, 4.0])
    target = norms.mean() * (ratios / ratios.mean()) ** 0.5
    weights = np.ones(3) - 0.1 * np.sign(norms - target) * norms / 1.0
    weights = weights * 3 / weights.sum()
    np.testing.assert_allclose(weighting.task_weights(None, 3).numpy(), weights, rtol=1e-5)
    assert float(tf.reduce_sum(weighting.task_weights(None, 3))) == pytest.approx(3.0)


def test_gradnorm_raises_the_weight_of_a_task_with_too_small_a_gradient():
    weighting = _built(GradNorm(alpha=0.0, learning_rate=0.01, initial_steps=1))
    for step in range(200):
        weights = weighting.task_weights(None, step).numpy()
        raw_norms = np.array([1.0, 4.0])  # || grad L_t ||: task 1's gradient is 4 times larger
        weighting.update(tf.constant([1.0, 1.0]), step, tf.constant(weights * raw_norms, tf.float32))
    weights = weighting.task_weights(None, 200).numpy()
    assert weights[0] / weights[1] == pytest.approx(4.0, rel=0.05)  # equal weighted norms: w0 * 1 = w1 * 4
    assert weights.sum() == pytest.approx(2.0, rel=1e-5)


def test_dwa_by_hand():
    weighting = _built(DWA(temperature=2.0), 3)
    epochs = [[[3.0, 2.0, 1.0], [1.0, 2.0, 1.0]], [[1.0, 2.0, 1.0], [1.0, 2.0, 0.5]], [[0.5, 1.0, 1.0]]]
    seen = []
    for epoch in epochs:
        seen.append(weighting.task_weights(None, 0).numpy())
        for losses in epoch:
            weighting.update(tf.constant(losses), 0)
        weighting.on_epoch_end()
    np.testing.assert_array_equal(seen[0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(seen[1], [1.0, 1.0, 1.0])  # the first two epochs weigh 1
    means = [np.mean(epoch, axis=0) for epoch in epochs]
    ratios = means[1] / means[0]
    expected = 3 * np.exp(ratios / 2) / np.exp(ratios / 2).sum()
    np.testing.assert_allclose(seen[2], expected, rtol=1e-6)
    ratios = means[2] / means[1]
    expected = 3 * np.exp(ratios / 2) / np.exp(ratios / 2).sum()
    np.testing.assert_allclose(weighting.task_weights(None, 0).numpy(), expected, rtol=1e-6)


def test_random_weighting_is_a_softmax_of_normals_drawn_per_step():
    weighting = _built(RandomLossWeighting(seed=7), 4)
    draws = [weighting.task_weights(None, tf.constant(step, tf.int64)).numpy() for step in range(50)]
    assert all(abs(d.sum() - 1) < 1e-6 and d.min() > 0 for d in draws)
    np.testing.assert_array_equal(draws[3], weighting.task_weights(None, tf.constant(3, tf.int64)).numpy())
    logits = np.log(np.stack(draws))
    logits -= logits.mean(axis=1, keepdims=True)  # softmax logits, up to a constant per draw
    assert 0.6 < logits.std() * np.sqrt(4 / 3) < 1.4  # standard normal draws


def test_famo_weights_and_update_by_hand():
    weighting = _built(FAMO(learning_rate=0.1, gamma=0.0))
    losses = np.array([1.0, 3.0])
    z = np.array([0.5, 0.5])
    expected = z / losses / np.sum(z / losses)
    np.testing.assert_allclose(weighting.task_weights(tf.constant(losses, tf.float32), 0).numpy(), expected, rtol=1e-5)
    weighting.update(tf.constant(losses, tf.float32), 0)  # first step: remembers the losses only
    np.testing.assert_array_equal(weighting.logits.numpy(), [0.0, 0.0])
    weighting.update(tf.constant([0.5, 2.9], tf.float32), 1)  # task 0 improved much more than task 1
    decrease = np.log(losses) - np.log([0.5, 2.9])
    gradient = z * (decrease - z @ decrease)
    step = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9)
    m, v = 0.1 * gradient, 0.001 * gradient**2
    np.testing.assert_allclose(weighting.logits.numpy(), -step * m / (np.sqrt(v) + 1e-8), rtol=1e-4)
    assert weighting.logits.numpy()[1] > weighting.logits.numpy()[0]  # the slower task gains weight


def _objective_gradient(objective, losses):
    """d objective / d L_t: the weights a step must use to follow the objective's gradient."""
    losses = tf.constant(losses, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(losses)
        value = objective(losses)
    return tape.gradient(value, losses).numpy()


def test_gls_weights_are_the_gradient_of_the_geometric_mean():
    losses = [0.3, 2.0, 5.0]
    weights = _built(GeometricLossWeighting(epsilon=0.0), 3).task_weights(tf.constant(losses), 0).numpy()
    geometric_mean = np.prod(losses) ** (1 / 3)
    np.testing.assert_allclose(weights, geometric_mean / (3 * np.array(losses)), rtol=1e-6)  # by hand
    np.testing.assert_allclose(weights, _objective_gradient(lambda values: tf.reduce_prod(values) ** (1 / 3), losses),
                               rtol=1e-5)
    assert np.sum(weights * losses) == pytest.approx(geometric_mean, rel=1e-6)  # the logged loss is G
    scaled = _built(GeometricLossWeighting(epsilon=0.0), 3).task_weights(tf.constant([0.3, 2.0, 500.0]), 0)
    np.testing.assert_allclose(scaled.numpy()[:2] / scaled.numpy()[2] / 100, weights[:2] / weights[2], rtol=1e-5)


def test_stch_warms_up_on_log_losses_then_follows_the_smooth_maximum():
    weighting = _built(SmoothTchebycheff(mu=0.5, warmup_epochs=2, epsilon=0.0), 3)
    first = [2.0, 1.0, 4.0]
    np.testing.assert_allclose(weighting.task_weights(tf.constant(first), 0).numpy(), 1 / np.array(first), rtol=1e-6)
    for losses in ([9.0, 9.0, 9.0], [9.0, 9.0, 9.0]):  # epoch 0: not the last warm-up epoch, not measured
        weighting.update(tf.constant(losses), 0)
    weighting.on_epoch_end()
    for losses in ([2.0, 1.0, 4.0], [4.0, 3.0, 2.0]):  # epoch 1 measures the nadir point
        weighting.update(tf.constant(losses), 0)
    np.testing.assert_allclose(weighting.task_weights(tf.constant(first), 0).numpy(), 1 / np.array(first), rtol=1e-6)
    weighting.on_epoch_end()
    nadir = np.array([3.0, 2.0, 3.0])
    np.testing.assert_allclose(weighting.nadir.numpy(), nadir)
    losses = [1.5, 2.0, 0.6]

    def objective(values):
        return 3 * 0.5 * tf.reduce_logsumexp(tf.math.log(values / nadir) / 0.5)

    weights = weighting.task_weights(tf.constant(losses), 0).numpy()
    np.testing.assert_allclose(weights, _objective_gradient(objective, losses), rtol=1e-5)
    relative = np.log(np.array(losses) / nadir) / 0.5
    by_hand = 3 * np.exp(relative) / np.exp(relative).sum() / np.array(losses)
    np.testing.assert_allclose(weights, by_hand, rtol=1e-5)
    weighting.update(tf.constant([100.0, 100.0, 100.0]), 0)  # after the warm-up: the nadir point stays
    weighting.on_epoch_end()
    np.testing.assert_allclose(weighting.nadir.numpy(), nadir)
    no_warmup = _built(SmoothTchebycheff(mu=1.0, warmup_epochs=0, epsilon=0.0), 2)
    np.testing.assert_allclose(no_warmup.task_weights(tf.constant([1.0, 3.0]), 0).numpy(), [0.5, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="mu must be > 0"):
        SmoothTchebycheff(mu=0)
    with pytest.raises(ValueError, match="warmup_epochs must be a whole number"):
        SmoothTchebycheff(warmup_epochs=1.5)


def test_weightings_by_name_and_config_round_trip():
    for name, cls in WEIGHTINGS.items():
        weighting = get_weighting(name)
        assert isinstance(weighting, cls)
        assert type(weighting).from_config(weighting.get_config()).get_config() == weighting.get_config()
    assert isinstance(get_weighting(None), StaticWeighting)
    with pytest.raises(ValueError, match="Unknown loss weighting 'uncertanity'"):
        get_weighting("uncertanity")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DWA(temperature=0)
