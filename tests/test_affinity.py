"""Task affinity (TAG lookahead and gradient cosine) and the shared / task-specific partition of the variables."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import MultiTaskModel, Task, compile_multitask
from mtl_keras.analysis.affinity import TaskAffinity
from mtl_keras.cli import main
from mtl_keras.sharing import MMoE
from mtl_keras.training.shared import (
    partition_variables,
    shared_variable_mask,
    task_gradients,
    task_losses,
)

TASKS = [Task("a", "regression"), Task("b", "regression")]


def linear_model(seed=0, dropout=0.0, batch_norm=False, optimizer=None):
    """x -> shared Dense(4) [-> BatchNormalization] [-> Dropout] -> one linear head per task."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="trunk")(inputs)
    if batch_norm:
        hidden = keras.layers.BatchNormalization(name="norm")(hidden)
    if dropout:
        hidden = keras.layers.Dropout(dropout, name="dropout")(hidden)
    model = MultiTaskModel(inputs, {task.name: keras.layers.Dense(1, name=task.name)(hidden) for task in TASKS},
                           tasks=TASKS)
    return compile_multitask(model, optimizer=optimizer or keras.optimizers.SGD(0.1))


def regression_batch(n=8, seed=1, b_labelled=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = {"a": rng.normal(size=(n, 1)).astype("float32"), "b": rng.normal(size=(n, 1)).astype("float32")}
    weights = {"a": np.ones(n, "float32"),
               "b": (np.arange(n) % 2).astype("float32") if b_labelled is None else b_labelled.astype("float32")}
    return x, y, weights


def all_values(model):
    return [np.array(variable.numpy()) for variable in model.variables]


# --- (a) the numbers, against a computation by hand -------------------------------------------------------------

def hand_computed(model, x, y, weights, learning_rate):
    """Z[i->j] and cosines of the linear model, in float64 NumPy: L_t = sum_n w_n r_n^2 / sum_n w_n with the
    residual r = (x W + b) u_t + c_t - y_t."""
    W, b = (v.numpy().astype("float64") for v in model.get_layer("trunk").weights)
    heads = {t: [v.numpy().astype("float64") for v in model.get_layer(t).weights] for t in "ab"}
    X = x.astype("float64")

    def loss(task, W, b):
        u, c = heads[task]
        residual = ((X @ W + b) @ u + c - y[task])[:, 0]
        return float(np.sum(weights[task] * residual ** 2) / np.sum(weights[task]))

    def gradient(task):
        u, c = heads[task]
        residual = ((X @ W + b) @ u + c - y[task])[:, 0]
        coefficient = 2 * weights[task] * residual / np.sum(weights[task])  # dL/d(output) per example
        return X.T @ np.outer(coefficient, u[:, 0]), coefficient.sum() * u[:, 0]  # dL/dW, dL/db

    affinity, cosine = np.zeros((2, 2)), np.zeros((2, 2))
    for i, source in enumerate("ab"):
        gW, gb = gradient(source)
        for j, target in enumerate("ab"):
            affinity[i, j] = 1 - loss(target, W - learning_rate * gW, b - learning_rate * gb) / loss(target, W, b)
            g_i, g_j = np.concatenate([gW.ravel(), gb]), np.concatenate([part.ravel() for part in gradient(target)])
            cosine[i, j] = g_i @ g_j / np.linalg.norm(g_i) / np.linalg.norm(g_j)
    return affinity, cosine


def test_lookahead_and_cosine_match_a_hand_computation():
    model = linear_model()
    batch = regression_batch()
    affinity = TaskAffinity(every_n_steps=1)  # the learning rate is read from the optimizer: SGD(0.1)
    affinity.set_model(model)
    measurement = affinity.measure(batch)
    expected_affinity, expected_cosine = hand_computed(model, *batch, learning_rate=0.1)
    assert affinity.task_names == ["a", "b"]
    np.testing.assert_allclose(measurement.lookahead, expected_affinity, atol=1e-5)
    np.testing.assert_allclose(measurement.cosine, expected_cosine, atol=1e-5)
    np.testing.assert_allclose(affinity.affinity, expected_affinity, atol=1e-5)
    np.testing.assert_allclose(affinity.cosine, expected_cosine, atol=1e-5)
    assert abs(expected_affinity[0, 1]) > 1e-2 and abs(expected_cosine[0, 1]) > 1e-3  # not a trivial case
    # An explicit lookahead learning rate takes precedence.
    other = TaskAffinity(lookahead_learning_rate=0.02)
    other.set_model(model)
    np.testing.assert_allclose(other.measure(batch).lookahead, hand_computed(model, *batch, 0.02)[0], atol=1e-5)


def test_task_losses_are_the_compiled_losses():
    """Weighted by the loss weights, the per-task losses add up to the loss Keras trains on."""
    model = linear_model()
    compile_multitask(model, TASKS, loss_weights={"a": 0.3, "b": 2.0})
    x, y, weights = regression_batch()
    y_pred = model(x)
    losses = task_losses(model, y, y_pred, weights)
    total = model.compute_loss(x, y, y_pred, weights)
    np.testing.assert_allclose(0.3 * float(losses["a"]) + 2.0 * float(losses["b"]), float(total), rtol=1e-6)


# --- (b) the weights are restored exactly ------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_a_measurement_restores_every_variable_exactly(training):
    model = linear_model(dropout=0.5, batch_norm=True)
    before = all_values(model)
    affinity = TaskAffinity(training=training)
    affinity.set_model(model)
    measurement = affinity.measure(regression_batch())
    assert np.isfinite(measurement.lookahead).all()
    after = all_values(model)
    assert [variable.path for variable in model.variables if "seed_generator" in variable.path]  # state is covered
    for variable, old, new in zip(model.variables, before, after, strict=True):
        assert np.array_equal(old, new), variable.path


def test_training_with_the_callback_is_training_without_it():
    """The callback measures the very batch of each step, before its update, and changes nothing about training:
    same batches, same dropout masks, bitwise the same weights at the end."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = {"a": x[:, :1] - x[:, 1:2], "b": x[:, 1:2] + 0.5 * x[:, 2:]}

    def dataset():
        return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=7).batch(16)

    step_losses = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: step_losses.append(logs["a_loss"]))
    plain = linear_model(dropout=0.3)
    plain.fit(dataset(), epochs=2, verbose=0, callbacks=[record])
    model = linear_model(dropout=0.3)
    affinity = TaskAffinity(every_n_steps=1)
    model.fit(dataset(), epochs=2, verbose=0, callbacks=[affinity])
    for variable, expected in zip(model.variables, all_values(plain), strict=True):
        assert np.array_equal(variable.numpy(), expected), variable.path
    assert [m.step for m in affinity.history] == list(range(8))
    # Keras logs a running mean over the epoch's batches (of equal size here): per-batch losses from it.
    running = np.array(step_losses, "float64").reshape(2, 4)
    per_batch = running * np.arange(1, 5) - np.concatenate([np.zeros((2, 1)), running[:, :-1]], 1) * np.arange(4)
    np.testing.assert_allclose([m.losses[0] for m in affinity.history], per_batch.ravel(), rtol=1e-4)
    model.fit(dataset(), epochs=1, verbose=0)  # the observing ended with the training
    assert len(affinity.history) == 8


def test_a_plain_keras_model_needs_data_to_measure_on():
    inputs = keras.Input((3,))
    trunk = keras.layers.Dense(4, name="trunk")(inputs)
    model = compile_multitask(keras.Model(inputs, {task.name: keras.layers.Dense(1, name=task.name)(trunk)
                                                   for task in TASKS}), TASKS)
    x, y = regression_batch()[:2]
    with pytest.raises(TypeError, match="observe_training_batches.*pass data="):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[TaskAffinity()])
    affinity = TaskAffinity(every_n_steps=1, data=[regression_batch()])
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[affinity])
    assert len(affinity.history) == 2


# --- (c) shared and task-specific variables, from gradient connectivity -------------------------------------------

def test_shared_variable_mask_and_partition():
    gradients = {"a": [1.0, None, 2.0, None], "b": [3.0, 4.0, None, None], "c": [5.0, 6.0, None, None]}
    assert shared_variable_mask(gradients) == [True, True, False, False]
    partition = partition_variables(gradients)
    assert partition.shared == (0, 1)
    assert partition.task_specific == {"a": (2,), "b": (), "c": ()}
    assert partition.unconnected == (3,)
    with pytest.raises(ValueError, match="same order"):
        shared_variable_mask({"a": [1.0], "b": [1.0, None]})


def test_partition_of_a_shared_trunk_with_two_heads():
    model = linear_model()
    x, y, weights = regression_batch()
    _, gradients = task_gradients(model, x, y, weights)
    paths = partition_variables(gradients).paths(model.trainable_variables)
    assert paths == {"shared": ["trunk/kernel", "trunk/bias"],
                     "task_specific": {"a": ["a/kernel", "a/bias"], "b": ["b/kernel", "b/bias"]},
                     "unconnected": []}


def test_partition_of_mmoe_experts_and_gates():
    """MMoE: the experts are shared, each gate belongs to its task."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    towers = MMoE(["a", "b"], num_experts=2, expert_units=(4,), name="mmoe")(inputs)
    model = keras.Model(inputs, {t: keras.layers.Dense(1, name=t)(towers[t]) for t in ("a", "b")})
    compile_multitask(model, TASKS)
    _, gradients = task_gradients(model, *regression_batch())
    paths = partition_variables(gradients).paths(model.trainable_variables)
    assert paths["shared"] and all("expert" in path for path in paths["shared"])
    for task in ("a", "b"):
        specific = paths["task_specific"][task]
        assert f"{task}/kernel" in specific and any(f"gate_{task}" in path for path in specific)
        assert not any("expert" in path for path in specific)


# --- (d) a task with no label in the batch ------------------------------------------------------------------------

def test_a_task_with_no_label_in_the_batch_gives_no_nan():
    model = linear_model()
    unlabelled = regression_batch(seed=1, b_labelled=np.zeros(8))
    labelled = regression_batch(seed=2)
    affinity = TaskAffinity(every_n_steps=1, data=[unlabelled, labelled])  # measured on these, not the training data
    x, y, _ = labelled
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[affinity])  # two steps: one measurement each
    first = affinity.history[0]
    assert np.isfinite(first.lookahead[0, 0]) and np.isfinite(first.cosine[0, 0]) and np.isfinite(first.losses[0])
    assert np.isnan(first.lookahead[1]).all() and np.isnan(first.lookahead[:, 1]).all()  # skipped, not 0/0
    assert np.isfinite(affinity.affinity).all() and np.isfinite(affinity.cosine).all()
    assert affinity.counts.tolist() == [[2, 1], [1, 1]]
    assert "fewer where a task had no labelled example" in affinity.table()
    report = json.loads(json.dumps(affinity.to_dict()))  # NaN as null: valid JSON
    assert report["history"][0]["lookahead"][1] == [None, None]


def test_a_model_of_one_task_is_refused():
    inputs = keras.Input((3,))
    model = compile_multitask(keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs)}), TASKS[:1])
    affinity = TaskAffinity()
    affinity.set_model(model)
    with pytest.raises(ValueError, match="two or more tasks"):
        affinity.measure(regression_batch())
    with pytest.raises(ValueError, match="every_n_steps"):
        TaskAffinity(every_n_steps=0)


def test_a_distributed_model_is_refused(two_replicas):
    with two_replicas.scope():
        model = linear_model()
    affinity = TaskAffinity()
    affinity.set_model(model)
    with pytest.raises(NotImplementedError, match="distributed"):
        affinity.measure(regression_batch())


# --- (e) the command --------------------------------------------------------------------------------------------

def test_affinity_command_prints_both_tables(tmp_path, capsys):
    output = tmp_path / "affinity.json"
    # Two steps (batches of 256 and 64 of the training split): the first measured.
    assert main(["affinity", "text", "--limit", "400", "--epochs", "1", "--embedding-dim", "16", "--max-length", "16",
                 "--no-lexicon", "--batch-size", "256", "--every", "2", "--quiet", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "Lookahead affinity Z[i->j]" in out and "Cosine similarity" in out and "task i helps task j" in out
    tables = out.split("Lookahead affinity")[1]
    for task in ("sentiment", "intensity", "domain"):
        assert sum(line.startswith(task) for line in tables.splitlines()) == 2  # a row in each table
    report = json.loads(output.read_text())
    assert [measurement["step"] for measurement in report["history"]] == [0]
    assert report["tasks"] == ["sentiment", "intensity", "domain"] and report["job"] == "text"
    assert np.isfinite(np.array(report["lookahead_affinity"], "float64")).all()
    assert "shared_embedding/embeddings" in report["variables"]["shared"]
    assert main(["affinity", "text", "--limit", "400", "--output", str(output)]) == 2  # exists, no --overwrite
    assert main(["affinity", "text", "--limit", "400", "--baselines"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["affinity", "text", "--limit", "400", "--strategy", "mirrored"]) == 2  # before any data or training
    assert "measures on one device" in capsys.readouterr().err


def test_the_affinity_command_leaves_the_train_options_alone():
    from mtl_keras.cli import _parser

    parser = _parser()
    train = parser.parse_args(["train", "text", "--output", "run", "--baselines"])
    assert str(train.output) == "run" and train.baselines and not train.overwrite
    assert not parser.parse_args(["train", "census"]).baselines
    assert parser.parse_args(["affinity", "vision", "--every", "3"]).every == 3
