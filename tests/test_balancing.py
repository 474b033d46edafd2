"""The multi-task training step: each method's update on a model small enough to compute it by hand, on one device
and on two replicas, with missing labels, mixed-precision loss scaling, logs, TensorBoard and save/load."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.training.gradients import GRADIENT_METHODS
from mtl_keras.training.model import MultiTaskModel
from mtl_keras.training.weighting import SmoothTchebycheff

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 3)).astype(np.float32)
_TARGET = RNG.normal(size=(8, 1)).astype(np.float32)
Y = {"a": _TARGET, "b": -_TARGET}  # with these heads, the two tasks' gradients on the trunk conflict
W0 = RNG.normal(size=(3, 2)).astype(np.float32) * 0.7
HEADS0 = {"a": np.array([[1.0], [-0.5]], np.float32), "b": np.array([[0.8], [0.6]], np.float32)}
LR = 0.1


def _linear_model(model_class=MultiTaskModel) -> keras.Model:
    """x -> shared linear trunk (3 -> 2) -> two linear heads a, b; no biases, so every gradient is a formula."""
    inputs = keras.Input((3,))
    trunk = keras.layers.Dense(2, use_bias=False, name="trunk")(inputs)
    outputs = {name: keras.layers.Dense(1, use_bias=False, name=name)(trunk) for name in ("a", "b")}
    model = model_class(inputs, outputs)
    model.get_layer("trunk").kernel.assign(W0)
    for name in ("a", "b"):
        model.get_layer(name).kernel.assign(HEADS0[name])
    return model


def _compiled(weighting=None, gradient=None, optimizer=None, model_class=MultiTaskModel):
    model = _linear_model(model_class)
    options = {"weighting": weighting, "gradient": gradient} if model_class is MultiTaskModel else {}
    model.compile(optimizer or keras.optimizers.SGD(LR), loss={"a": "mse", "b": "mse"}, **options)
    return model


def _one_step(model, weights=None):
    model.fit(X, Y, sample_weight=weights, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    return model


def _hand_gradients(weights=None):
    """Per-task gradients of the masked-mean MSE: on the trunk kernel, on each head and on the representation."""
    weights = weights or {"a": np.ones(8, np.float32), "b": np.ones(8, np.float32)}
    z = X @ W0
    trunk, heads, representation, losses = {}, {}, {}, {}
    for name in ("a", "b"):
        residual = (z @ HEADS0[name] - Y[name])[:, 0] * weights[name]
        count = weights[name].sum()
        losses[name] = float(np.sum(residual * (z @ HEADS0[name] - Y[name])[:, 0]) / count)
        d_output = 2 * residual[:, None] / count  # dL/d prediction
        representation[name] = d_output @ HEADS0[name].T  # dL/dz
        trunk[name] = X.T @ representation[name]
        heads[name] = z.T @ d_output
    return trunk, heads, representation, losses


def _assert_kernels(model, trunk, heads, atol=1e-5):
    np.testing.assert_allclose(model.get_layer("trunk").kernel.numpy(), trunk, atol=atol)
    for name in ("a", "b"):
        np.testing.assert_allclose(model.get_layer(name).kernel.numpy(), heads[name], atol=atol)


def test_static_step_matches_plain_keras_with_loss_weights():
    plain = _linear_model(keras.Model)
    plain.compile(keras.optimizers.SGD(LR), loss={"a": "mse", "b": "mse"}, loss_weights={"a": 1.0, "b": 0.5})
    ours = _linear_model()
    ours.compile(keras.optimizers.SGD(LR), loss={"a": "mse", "b": "mse"}, loss_weights={"a": 1.0, "b": 0.5})
    _one_step(plain), _one_step(ours)
    for expected, actual in zip(plain.trainable_weights, ours.trainable_weights, strict=True):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-6)


def test_static_step_by_hand_with_missing_labels():
    weights = {"a": np.array([1, 1, 0, 1, 0, 1, 1, 1], np.float32), "b": np.array([0, 0, 0, 1, 1, 0, 0, 0], np.float32)}
    trunk, heads, _, _ = _hand_gradients(weights)
    model = _one_step(_compiled(), weights)
    _assert_kernels(model, W0 - LR * (trunk["a"] + trunk["b"]),
                    {name: HEADS0[name] - LR * heads[name] for name in heads})


def _pcgrad_step_by_hand():
    """The trunk and head kernels after one PCGrad step on (X, Y), by hand; and the two tasks' trunk gradients."""
    trunk, heads, _, _ = _hand_gradients()
    g_a, g_b = trunk["a"].ravel(), trunk["b"].ravel()
    combined = g_a + g_b
    if g_a @ g_b < 0:  # with two tasks the order does not matter
        combined = (g_a - (g_a @ g_b) / (g_b @ g_b) * g_b) + (g_b - (g_b @ g_a) / (g_a @ g_a) * g_a)
    return W0 - LR * combined.reshape(W0.shape), {name: HEADS0[name] - LR * heads[name] for name in heads}, (g_a, g_b)


def test_pcgrad_step_by_hand():
    trunk, heads, (g_a, g_b) = _pcgrad_step_by_hand()
    _assert_kernels(_one_step(_compiled(gradient="pcgrad")), trunk, heads)
    assert g_a @ g_b < 0, "the fixture should make the two tasks conflict"


def test_mgda_ub_step_by_hand():
    trunk, heads, representation, _ = _hand_gradients()
    z_a, z_b = representation["a"].ravel(), representation["b"].ravel()
    alpha_a = float(np.clip((z_b - z_a) @ z_b / ((z_a - z_b) @ (z_a - z_b)), 0, 1))  # two-task min-norm point
    assert 0.05 < alpha_a < 0.95, "the fixture should give an interior min-norm point"
    model = _one_step(_compiled(gradient="mgda"))
    _assert_kernels(model, W0 - LR * (alpha_a * trunk["a"] + (1 - alpha_a) * trunk["b"]),
                    {name: HEADS0[name] - LR * heads[name] for name in heads})  # heads keep their own gradients


def test_uncertainty_step_by_hand():
    trunk, heads, _, losses = _hand_gradients()
    model = _one_step(_compiled(weighting="uncertainty"))
    weight = 0.5  # 0.5 exp(-0)
    _assert_kernels(model, W0 - LR * weight * (trunk["a"] + trunk["b"]),
                    {name: HEADS0[name] - LR * weight * heads[name] for name in heads})
    expected = [-LR * (0.5 - 0.5 * losses[name]) for name in ("a", "b")]
    np.testing.assert_allclose(model.weighting.log_variance.numpy(), expected, rtol=1e-5)


def test_gradnorm_norms_are_taken_on_the_last_shared_layer():
    trunk, _, _, losses = _hand_gradients()
    model = _compiled(weighting=keras.saving.deserialize_keras_object(
        {"class_name": "GradNorm", "config": {"alpha": 1.0, "learning_rate": 0.1, "initial_steps": 1},
         "registered_name": "mtl_keras>GradNorm", "module": None}))
    recorded = []
    original = model.weighting.update

    def spy(losses_, step, norms):
        recorded.append(norms)
        return original(losses_, step, norms)

    model.weighting.update = spy
    model.run_eagerly = True
    _one_step(model)
    np.testing.assert_allclose(recorded[0].numpy(), [np.linalg.norm(trunk["a"]), np.linalg.norm(trunk["b"])],
                               rtol=1e-5)


@pytest.mark.parametrize("weighting,gradient", [
    (None, None), ("uncertainty", None), ("gradnorm", None), (None, "pcgrad"), (None, "mgda"), ("dwa", "cagrad"),
    ("gls", None), ("stch", "pcgrad"), (None, "upgrad"), ("uncertainty", "dualproj"), (None, "gradvac"),
    (None, "fairgrad"), (None, "config"), ("dwa", "sdmgrad"), (None, "modo"), (None, "graddrop"),
    (None, "graddrop:parameters"), ("uncertainty", "moco"), (None, "db_mtl"), (None, "excess_mtl"),
    (None, "fairgrad:representation"), (None, "pcgrad:representation")])
def test_two_replicas_give_the_same_update_as_one_device(two_replicas, weighting, gradient):
    if gradient is not None and ":" in gradient:  # a method in the space it does not default to
        from mtl_keras.training.gradients import get_gradient_method

        name, space = gradient.split(":")
        gradient = functools.partial(get_gradient_method, name, space=space)
    if weighting == "stch":  # its smooth maximum at once, from a nadir point of 1 (a warm-up would be log-losses)
        weighting = functools.partial(SmoothTchebycheff, warmup_epochs=0)
    # Labels of task b are missing unevenly: 1 of 4 on the first replica's half, 3 of 4 on the second's.
    sample_weight = {"a": np.ones(8, np.float32), "b": np.array([1, 0, 0, 0, 1, 1, 1, 0], np.float32)}
    dataset = tf.data.Dataset.from_tensor_slices((X, Y, sample_weight)).batch(8).repeat(2)
    single = _compiled(weighting() if callable(weighting) else weighting,
                       gradient() if callable(gradient) else gradient)
    single.fit(dataset, epochs=1, verbose=0)
    with two_replicas.scope():
        mirrored = _compiled(weighting() if callable(weighting) else weighting,
                             gradient() if callable(gradient) else gradient)
    mirrored.fit(dataset, epochs=1, verbose=0)
    for variable, expected in zip(mirrored.weights, single.weights, strict=True):
        np.testing.assert_allclose(variable.numpy(), expected.numpy(), atol=2e-6, err_msg=variable.path)
    changed = [not np.allclose(v.numpy(), initial) for v, initial in zip(single.weights[:1], [W0], strict=True)]
    assert all(changed)


def test_loss_scaling_leaves_the_update_unchanged_and_skips_non_finite_steps():
    scaled = _one_step(_compiled(gradient="pcgrad", optimizer=keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(LR), initial_scale=2.0**10)))
    trunk, heads, _ = _pcgrad_step_by_hand()  # the unscaled step (test_pcgrad_step_by_hand: the model's own)
    _assert_kernels(scaled, trunk, heads)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(LR), initial_scale=2.0**10)
    model = _compiled(gradient="mgda", optimizer=optimizer)
    before = [w.numpy().copy() for w in model.trainable_weights]
    labels = {"a": Y["a"], "b": np.full_like(Y["b"], 1e30)}  # task b's loss and gradient overflow
    model.fit(X, labels, batch_size=8, epochs=1, verbose=0, stop_on_nonfinite_loss=False)  # the loss is inf
    for expected, actual in zip(before, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(actual.numpy(), expected)  # the step was skipped
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**9


@pytest.mark.parametrize("gradient", sorted(GRADIENT_METHODS))
def test_loss_scaling_leaves_every_methods_update_unchanged(gradient):
    plain = _one_step(_compiled(gradient=gradient))
    scaled = _one_step(_compiled(gradient=gradient, optimizer=keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(LR), initial_scale=2.0**10)))
    assert not np.allclose(plain.get_layer("trunk").kernel.numpy(), W0)
    for actual, expected in zip(scaled.trainable_weights, plain.trainable_weights, strict=True):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-5, err_msg=actual.path)


def test_logs_tensorboard_and_saving_carry_the_method_its_weights_and_cosines(tmp_path):
    model = _compiled(weighting="uncertainty", gradient="pcgrad")
    history = model.fit(X, Y, batch_size=4, epochs=2, verbose=0,
                        callbacks=[keras.callbacks.TensorBoard(tmp_path / "logs")])
    assert {"a_weight", "b_weight", "cosine_a_b", "a_loss", "b_loss"} <= set(history.history)
    trunk, _, _, _ = _hand_gradients()
    assert np.sign(history.history["cosine_a_b"][0]) == np.sign(trunk["a"].ravel() @ trunk["b"].ravel())
    assert 0.4 < history.history["a_weight"][0] < 0.6  # 0.5 exp(-s), s near 0 after a few steps
    tags = set()
    for path in (tmp_path / "logs" / "train").glob("events*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_a_weight", "epoch_cosine_a_b"} <= tags
    evaluation = model.evaluate(X, Y, verbose=0, return_dict=True)
    assert "a_weight" not in evaluation and "a_loss" in evaluation

    # The .keras file and the SavedModel keep the method and its state.
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.weighting).__name__ == "UncertaintyWeighting"
    assert type(loaded.gradient_method).__name__ == "PCGrad"
    np.testing.assert_array_equal(loaded.weighting.log_variance.numpy(), model.weighting.log_variance.numpy())
    loaded.fit(X, Y, batch_size=4, epochs=1, verbose=0)  # and it trains on

    from mtl_keras.export import export_saved_model, load_saved_model

    export_saved_model(model, tmp_path / "saved", [tf.TensorSpec((None, 3), tf.float32)])
    served = load_saved_model(tmp_path / "saved")
    names = {variable.name for variable in served.variables}
    assert any("log_variance" in name for name in names)
    np.testing.assert_allclose(served.task_weights()["a"].numpy(),
                               0.5 * np.exp(-model.weighting.log_variance.numpy()[0]), rtol=1e-6)


def test_recompiling_replaces_the_weighting_state():
    model = _compiled(weighting="uncertainty")
    assert any("log_variance" in v.path for v in model.trainable_variables)
    model.compile(keras.optimizers.SGD(LR), loss={"a": "mse", "b": "mse"}, weighting="static")
    assert not any("log_variance" in v.path for v in model.weights)


def test_representation_methods_need_a_shared_representation():
    inputs = keras.Input((3,))
    model = MultiTaskModel(inputs, {"a": keras.layers.Dense(1, name="a")(inputs),
                                    "b": keras.layers.Dense(1, name="b")(inputs)})
    with pytest.raises(ValueError, match="needs a shared representation"):
        model.compile("sgd", loss={"a": "mse", "b": "mse"}, gradient="mgda")


def test_regularisers_count_once_under_two_replicas(two_replicas):
    def build():
        inputs = keras.Input((3,))
        trunk = keras.layers.Dense(2, use_bias=False, name="trunk", kernel_regularizer=keras.regularizers.L2(0.5),
                                   kernel_initializer=keras.initializers.Constant(W0))(inputs)
        outputs = {name: keras.layers.Dense(1, use_bias=False, name=name,
                                            kernel_initializer=keras.initializers.Constant(HEADS0[name]))(trunk)
                   for name in ("a", "b")}
        model = MultiTaskModel(inputs, outputs)
        model.compile(keras.optimizers.SGD(LR), loss={"a": "mse", "b": "mse"}, gradient="pcgrad")
        return model

    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    single = build()
    single.fit(dataset, epochs=1, verbose=0)
    with two_replicas.scope():
        mirrored = build()
    mirrored.fit(dataset, epochs=1, verbose=0)
    np.testing.assert_allclose(mirrored.get_layer("trunk").kernel.numpy(), single.get_layer("trunk").kernel.numpy(),
                               atol=2e-6)
    trunk, _, _, _ = _hand_gradients()
    g_a, g_b = trunk["a"].ravel(), trunk["b"].ravel()
    combined = (g_a - (g_a @ g_b) / (g_b @ g_b) * g_b) + (g_b - (g_b @ g_a) / (g_a @ g_a) * g_a)
    expected = W0 - LR * (combined.reshape(W0.shape) + 2 * 0.5 * W0)  # d/dW 0.5 ||W||^2 = W, added unprojected
    np.testing.assert_allclose(single.get_layer("trunk").kernel.numpy(), expected, atol=1e-5)


def test_task_losses_inside_a_replica_are_the_steps_share_of_the_global_mean(two_replicas):
    # Task b's labels are missing unevenly: 1 of the first replica's 4 examples, 3 of the second's.
    from mtl_keras.training.shared import task_losses

    sample_weight = {"a": np.ones(8, np.float32), "b": np.array([1, 0, 0, 0, 1, 1, 1, 0], np.float32)}
    with two_replicas.scope():
        model = _compiled()
    expected = {name: float(np.sum(sample_weight[name] * (np.asarray(model(X)[name])[:, 0] - Y[name][:, 0]) ** 2)
                      / np.sum(sample_weight[name])) for name in ("a", "b")}
    one_device = task_losses(model, Y, model(X), sample_weight)
    np.testing.assert_allclose([float(one_device[n]) for n in ("a", "b")], list(expected.values()), rtol=1e-5)
    dataset = two_replicas.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((X, Y, sample_weight)).batch(8))

    def replica_losses(x, y, weights):
        return task_losses(model, y, model(x), weights)

    shares = two_replicas.run(replica_losses, args=next(iter(dataset)))
    for name in ("a", "b"):  # the replicas' shares add up to the global masked mean, not a mean of two means
        total = two_replicas.reduce(tf.distribute.ReduceOp.SUM, shares[name], axis=None)
        assert float(total) == pytest.approx(expected[name], rel=1e-5)


@pytest.mark.parametrize("gradient", ["upgrad", "dualproj", "gradvac", "fairgrad", "config", "sdmgrad", "modo",
                                      "graddrop", "moco", "db_mtl", "excess_mtl"])
def test_a_step_with_an_overflowing_task_is_skipped(gradient):
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(LR), initial_scale=2.0**10)
    model = _compiled(gradient=gradient, optimizer=optimizer)
    before = [w.numpy().copy() for w in model.trainable_weights]
    labels = {"a": Y["a"], "b": np.full_like(Y["b"], 1e30)}  # task b's loss and gradient overflow
    model.fit(X, labels, batch_size=8, epochs=1, verbose=0, stop_on_nonfinite_loss=False)
    for expected, actual in zip(before, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(actual.numpy(), expected)  # skipped, not crashed
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**9


def _task_gradients_at(model):
    """Each task's gradients on the trunk and on its head at the model's current weights (no step taken)."""
    with tf.GradientTape(persistent=True) as tape:
        outputs = model(X, training=True)
        losses = {name: tf.reduce_mean(tf.square(outputs[name] - Y[name])) for name in ("a", "b")}
    trunk = model.get_layer("trunk").kernel
    gradients = {name: (tape.gradient(losses[name], trunk).numpy(),
                        tape.gradient(losses[name], model.get_layer(name).kernel).numpy()) for name in ("a", "b")}
    return gradients


@pytest.mark.parametrize("gradient", ["pcgrad", "mgda"])  # parameter space, representation space
def test_update_every_reuses_the_last_coefficients_in_between(gradient):
    from mtl_keras.training.gradients import get_gradient_method

    every = _compiled(gradient=get_gradient_method(gradient, update_every=2))
    assert [v.path for v in every.gradient_state.weights] == [f"{gradient}_state/last_coefficients"]
    plain = _one_step(_compiled(gradient=gradient))  # step 0 recomputes: the same as the plain method
    _one_step(every)
    for actual, expected in zip(every.trainable_weights, plain.trainable_weights, strict=True):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=1e-6)
    alpha = every.gradient_method.last_coefficients.numpy()
    assert not np.allclose(alpha, 1.0)  # the step-0 coefficients were kept
    # Step 1 reuses them: alpha on the trunk's per-task gradients, each head its own gradient.
    gradients = _task_gradients_at(every)
    trunk = every.get_layer("trunk").kernel.numpy() - LR * (alpha[0] * gradients["a"][0] + alpha[1] * gradients["b"][0])
    heads = {name: every.get_layer(name).kernel.numpy() - LR * gradients[name][1] for name in ("a", "b")}
    _one_step(every)
    np.testing.assert_allclose(every.get_layer("trunk").kernel.numpy(), trunk, atol=1e-5)
    for name in ("a", "b"):
        np.testing.assert_allclose(every.get_layer(name).kernel.numpy(), heads[name], atol=1e-5)
    np.testing.assert_array_equal(every.gradient_method.last_coefficients.numpy(), alpha)
    assert float(every.balancing_monitor.cosine_steps.numpy()) == 0.0  # an epoch that only reused measured none
    # Step 2 recomputes, from the gradients at its own weights.
    _one_step(every)
    assert not np.allclose(every.gradient_method.last_coefficients.numpy(), alpha)


@pytest.mark.parametrize("gradient", ["pcgrad", "mgda", "upgrad"])
def test_update_every_on_two_replicas_equals_one_device(two_replicas, gradient):
    from mtl_keras.training.gradients import get_gradient_method

    sample_weight = {"a": np.ones(8, np.float32), "b": np.array([1, 0, 0, 0, 1, 1, 1, 0], np.float32)}
    dataset = tf.data.Dataset.from_tensor_slices((X, Y, sample_weight)).batch(8).repeat(3)
    single = _compiled(gradient=get_gradient_method(gradient, update_every=2))
    single.fit(dataset, epochs=1, verbose=0)
    with two_replicas.scope():
        mirrored = _compiled(gradient=get_gradient_method(gradient, update_every=2))
    mirrored.fit(dataset, epochs=1, verbose=0)
    for variable, expected in zip(mirrored.weights, single.weights, strict=True):
        np.testing.assert_allclose(variable.numpy(), expected.numpy(), atol=2e-6, err_msg=variable.path)


def test_update_every_state_is_saved_and_checked(tmp_path):
    from mtl_keras.training.gradients import PCGrad

    model = _compiled(gradient=PCGrad(update_every=4))
    model.fit(X, Y, batch_size=2, epochs=1, shuffle=False, verbose=0)  # steps 0-3: one recomputes
    assert float(model.balancing_monitor.cosine_steps.numpy()) == 1.0
    assert float(model.balancing_monitor.steps.numpy()) == 4.0
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.gradient_method.update_every == 4
    np.testing.assert_array_equal(loaded.gradient_method.last_coefficients.numpy(),
                                  model.gradient_method.last_coefficients.numpy())
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="update_every must be a whole number >= 1"):
            PCGrad(update_every=bad)


@pytest.mark.parametrize("gradient,state", [("gradvac", "target_cosines"), ("modo", "task_weights"),
                                           ("moco", "tracked_gradients"), ("db_mtl", "log_loss_gradients"),
                                           ("excess_mtl", "squared_gradient_sums")])
def test_a_methods_state_is_trained_saved_and_exported(gradient, state, tmp_path):
    model = _compiled(gradient=gradient)
    variable = [v for v in model.gradient_method.state_variables if v.path.endswith(state)][0]
    initial = variable.numpy().copy()
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    assert not np.allclose(variable.numpy(), initial)  # the step assigned the staged state
    assert variable.path == f"{gradient}_state/{state}"
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    reloaded = [v for v in loaded.gradient_method.state_variables if v.path.endswith(state)][0]
    np.testing.assert_array_equal(reloaded.numpy(), variable.numpy())
    loaded.fit(X, Y, batch_size=4, epochs=1, verbose=0)

    from mtl_keras.export import export_saved_model, load_saved_model

    export_saved_model(model, tmp_path / "saved", [tf.TensorSpec((None, 3), tf.float32)])
    served = {v.name.split(":")[0]: v.numpy() for v in load_saved_model(tmp_path / "saved").variables}
    assert f"{gradient}_state/{state}" in served, sorted(served)
    np.testing.assert_array_equal(served[f"{gradient}_state/{state}"], variable.numpy())


def test_db_mtl_step_by_hand():
    trunk, heads, _, losses = _hand_gradients()
    model = _one_step(_compiled(gradient="db_mtl"))
    buffers = {name: 0.1 * trunk[name] / (losses[name] + 1e-8) for name in ("a", "b")}  # (1 - beta) of the first
    norms = {name: np.linalg.norm(buffers[name]) for name in ("a", "b")}
    largest = max(norms.values())
    update = sum(largest / (norms[name] + 1e-8) * buffers[name] for name in ("a", "b"))
    _assert_kernels(model, W0 - LR * update, {name: HEADS0[name] - LR * heads[name] for name in ("a", "b")})
    # The state holds the trunk's 6 parameters' buffers, padded with zeros to the model's 8 parameters.
    np.testing.assert_allclose(model.gradient_method.buffers.numpy()[:, :6],
                               np.stack([buffers["a"].ravel(), buffers["b"].ravel()]), rtol=1e-5)
    np.testing.assert_array_equal(model.gradient_method.buffers.numpy()[:, 6:], 0.0)


def test_graddrop_representation_step_by_hand():
    from mtl_keras.seeds import DEFAULT_SEED

    trunk, heads, representation, _ = _hand_gradients()
    model = _one_step(_compiled(gradient="graddrop"))
    sign = np.sign(X @ W0)
    signed = np.stack([np.sum(representation[name] * sign, axis=0) for name in ("a", "b")])  # [T, features]
    purity = 0.5 * (1 + signed.sum(0) / (np.abs(signed).sum(0) + 1e-7))
    draw = tf.random.stateless_uniform([2], seed=[DEFAULT_SEED, 0]).numpy()
    kept = ((purity > draw) & (signed > 0)) | ((purity < draw) & (signed < 0))
    rewritten = sum(representation[name] * kept[t] for t, name in enumerate(("a", "b")))
    _assert_kernels(model, W0 - LR * X.T @ rewritten, {name: HEADS0[name] - LR * heads[name] for name in ("a", "b")})
