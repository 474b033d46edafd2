"""The tasks' gradient matrix: sparse gradients kept to the rows a batch touches, the same numbers as dense ones."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import MultiTaskModel, Task
from mtl_keras.training import step as step_module
from mtl_keras.training.task_matrix import TaskMatrix


def _slices(rows, indices, shape):
    return tf.IndexedSlices(tf.constant(rows, tf.float32), tf.constant(indices), tf.constant(shape))


def test_compact_rows_have_the_dense_gram_matrix_and_combine_back_to_the_dense_update():
    table = tf.Variable(tf.zeros([50, 3]))
    kernel = tf.Variable(tf.zeros([2, 2]))
    rng = np.random.default_rng(0)
    # Task 0 touches row 4 twice (a token seen twice), task 1 rows 4 and 9, task 2 does not reach the table.
    per_task = [
        [_slices(rng.normal(size=(3, 3)), [4, 4, 17], [50, 3]), tf.constant(rng.normal(size=(2, 2)), tf.float32)],
        [_slices(rng.normal(size=(2, 3)), [9, 4], [50, 3]), tf.constant(rng.normal(size=(2, 2)), tf.float32)],
        [None, tf.constant(rng.normal(size=(2, 2)), tf.float32)],
    ]
    dense = TaskMatrix.dense(per_task, [table, kernel])
    compact = TaskMatrix.compact(per_task, [table, kernel])
    assert dense.rows.shape == (3, 50 * 3 + 4) and compact.rows.shape == (3, 3 * 3 + 4)  # rows 4, 17, 9 only
    np.testing.assert_allclose(tf.matmul(compact.rows, compact.rows, transpose_b=True),
                               tf.matmul(dense.rows, dense.rows, transpose_b=True), rtol=1e-6)
    alpha = tf.constant([0.5, -1.0, 2.0])
    from_dense = dense.gradients(tf.linalg.matvec(dense.rows, alpha, transpose_a=True))
    from_compact = compact.gradients(tf.linalg.matvec(compact.rows, alpha, transpose_a=True))
    assert isinstance(from_compact[0], tf.IndexedSlices) and not isinstance(from_compact[1], tf.IndexedSlices)
    np.testing.assert_allclose(tf.convert_to_tensor(from_compact[0]), from_dense[0], rtol=1e-6)
    np.testing.assert_allclose(from_compact[1], from_dense[1], rtol=1e-6)
    # By hand: row 4 of the table gets 0.5 (both of task 0's slices) - 1.0 (task 1's second slice).
    expected_row_4 = 0.5 * (per_task[0][0].values[0] + per_task[0][0].values[1]) - per_task[1][0].values[1]
    np.testing.assert_allclose(tf.convert_to_tensor(from_compact[0])[4], expected_row_4, rtol=1e-6)


def _text_like_model():
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    embedded = keras.layers.Embedding(40, 4, name="embedding")(tokens)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    hidden = keras.layers.Dense(5, activation="tanh", name="shared")(pooled)
    tasks = [Task("a", "binary"), Task("b", "regression"), Task("c", "multiclass", num_classes=3)]
    outputs = {"a": keras.layers.Dense(1, activation="sigmoid", name="a")(hidden),
               "b": keras.layers.Dense(1, name="b")(hidden),
               "c": keras.layers.Dense(3, activation="softmax", name="c")(hidden)}
    return MultiTaskModel(tokens, outputs, tasks=tasks)


@pytest.mark.parametrize("gradient", ["mgda", "pcgrad", "cagrad", "pcgrad@2"])  # @2: update_every=2
def test_a_gradient_method_on_an_embedding_trains_as_with_dense_gradients(gradient, monkeypatch):
    from mtl_keras.training.gradients import get_gradient_method

    name, _, every = gradient.partition("@")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 40, (16, 6)).astype("int32")
    y = {"a": rng.integers(0, 2, (16, 1)).astype("float32"), "b": rng.normal(size=(16, 1)).astype("float32"),
         "c": rng.integers(0, 3, (16, 1))}
    seen = []
    apply = keras.optimizers.SGD.apply_gradients

    def recording(self, grads_and_vars):
        grads_and_vars = list(grads_and_vars)
        seen.extend(type(g).__name__ for g, v in grads_and_vars if v.name == "embeddings")
        return apply(self, grads_and_vars)

    monkeypatch.setattr(keras.optimizers.SGD, "apply_gradients", recording)
    trained = {}
    for path in ("compact", "dense"):
        if path == "dense":
            monkeypatch.setattr(step_module.TaskMatrix, "compact", TaskMatrix.dense)
        keras.utils.set_random_seed(3)
        model = _text_like_model()
        model.compile(optimizer=keras.optimizers.SGD(0.5), steps_per_execution=1,
                      gradient=get_gradient_method(name, update_every=int(every or 1)))
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        trained[path] = model.get_weights()
        if path == "compact" and not every:
            assert seen and set(seen) == {"IndexedSlices"}, seen  # handed on sparse, not as the whole table
    for compact, dense in zip(trained["compact"], trained["dense"], strict=True):
        np.testing.assert_allclose(compact, dense, atol=1e-6)
