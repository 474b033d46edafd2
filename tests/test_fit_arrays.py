"""`model.fit` and `evaluate` with arrays and dicts, the way Keras users start: the same label checks and missing-label
handling as the dataset helpers, and a NaN loss that stops training with the task's name."""

import keras
import numpy as np
import pytest

from mtl_keras import LabelError, MultiTaskModel, NonFiniteLossError, Task, build_text_model, make_text_dataset


def _dense_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,), name="features")
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    outputs = {"kind": keras.layers.Dense(3, activation="softmax", name="kind")(hidden),
               "size": keras.layers.Dense(1, name="size")(hidden)}
    model = MultiTaskModel(inputs, outputs, tasks=[Task("kind", "multiclass", num_classes=3),
                                                   Task("size", "regression")])
    model.compile(keras.optimizers.SGD(0.1))
    return model


def _data(n=12):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n, 3)).astype("float32"),
            {"kind": np.arange(n) % 3, "size": rng.normal(size=n).astype("float32")})


@pytest.mark.parametrize("labels, message", [
    ({"kind": np.full(12, 3), "size": np.zeros(12)}, r"Task 'kind': label 3 is out of range"),
    ({"kind": np.zeros(12)}, r"No labels for task\(s\) \['size'\]"),
    ({"kind": np.zeros(12), "size": np.zeros(12), "colour": np.zeros(12)}, r"unknown task\(s\) \['colour'\]"),
    ({"kind": np.zeros(12), "size": np.r_[np.zeros(11), np.nan]},
     r"Task 'size': regression target of example 11 is not finite .*\(masks=\{'size': labelled\}\)"),
    ({"kind": np.zeros(12), "size": np.zeros(11)}, r"Task 'size' has 11 labels for 12 examples"),
])
def test_bad_array_labels_fail_naming_the_task_in_fit_evaluate_and_validation_data(labels, message):
    model = _dense_model()
    x, good = _data()
    with pytest.raises(LabelError, match=message):
        model.fit(x, labels, verbose=0)
    with pytest.raises(LabelError, match=message):
        model.evaluate(x, labels, verbose=0)
    with pytest.raises(LabelError, match=message):
        model.fit(x, good, validation_data=(x, labels), verbose=0)
    assert not model.built or model.optimizer.iterations.numpy() == 0  # refused before any step


def test_missing_labels_by_sentinel_mask_and_sample_weight_give_the_same_evaluation():
    model = _dense_model()
    x, labels = _data()
    kind = labels["kind"].copy()
    kind[[1, 4]] = -1
    size_labelled = np.ones(12, bool)
    size_labelled[[0, 5, 7]] = False
    by_markers = model.evaluate(x, {**labels, "kind": kind}, masks={"size": size_labelled}, verbose=0,
                                return_dict=True)
    kind_weight = np.ones(12, "float32")
    kind_weight[[1, 4]] = 0
    by_weights = model.evaluate(x, labels, sample_weight={"kind": kind_weight, "size": size_labelled.astype("float32")},
                                verbose=0, return_dict=True)
    assert by_markers == pytest.approx(by_weights, rel=1e-6)
    # The metrics leave missing labels out: on the labelled examples alone they are the same.
    labelled = model.evaluate(x[size_labelled], {"kind": labels["kind"][size_labelled],
                                                 "size": labels["size"][size_labelled]}, verbose=0, return_dict=True)
    assert by_markers["size_mae"] == pytest.approx(labelled["size_mae"], rel=1e-5)
    assert by_markers["size_mae"] != pytest.approx(model.evaluate(x, labels, verbose=0, return_dict=True)["size_mae"])
    with pytest.raises(LabelError, match=r"sample_weight for task 'size': expected one weight per example \(12,\)"):
        model.evaluate(x, labels, sample_weight={"size": np.ones(5)}, verbose=0)


def test_fit_on_text_arrays_with_1d_labels_trains_as_the_dataset_helper_does(text_tasks, tiny_texts, tiny_labels):
    def build():
        keras.utils.set_random_seed(3)
        model = build_text_model(text_tasks, texts=tiny_texts, max_length=8, embedding_dim=4,
                                 encoder_options={"filters": 4}, head_hidden_units=(), dropout=0.0)
        model.compile(keras.optimizers.SGD(0.05))
        return model

    labels = {**tiny_labels, "sentiment": np.array([1, 0, -1, 1, 0, -1, 0, 1])}  # -1: missing
    from_arrays = build()
    from_arrays.fit(list(tiny_texts), labels, batch_size=4, epochs=2, shuffle=False, verbose=0)
    from_dataset = build()
    from_dataset.fit(make_text_dataset(tiny_texts, labels, text_tasks, batch_size=4), epochs=2, verbose=0)
    for left, right in zip(from_arrays.get_weights(), from_dataset.get_weights(), strict=True):
        np.testing.assert_allclose(left, right, atol=1e-6)
    assert from_arrays.optimizer.iterations.numpy() == 4


def test_a_nan_loss_stops_fit_naming_the_task_unless_turned_off():
    model = _dense_model()
    x, labels = _data(64)
    model.predict(x[:1], verbose=0)
    size_head = model.get_layer("size")
    size_head.kernel.assign(np.full(size_head.kernel.shape, np.nan, "float32"))
    # 8 batches: one call of the train function (steps_per_execution="auto"), which the message names
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1, batches 1-8 \(one call\): "
                                                 r".*loss=nan, size_loss=nan;"):
        model.fit(x, labels, batch_size=8, epochs=3, verbose=0)
    assert model.optimizer.iterations.numpy() <= 8  # stopped in the first epoch of three, soon after the bad step
    history = model.fit(x, labels, batch_size=8, epochs=2, verbose=0, stop_on_nonfinite_loss=False)
    assert len(history.history["loss"]) == 2 and np.isnan(history.history["size_loss"][-1])


# --- several steps per call by default ---------------------------------------------------------------------------
def _mlp(steps_per_execution="auto"):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4,))
    trunk = keras.layers.Dense(8, activation="relu", name="trunk")(inputs)
    model = MultiTaskModel(inputs, {name: keras.layers.Dense(1, name=name)(trunk) for name in ("a", "b")},
                           tasks=[Task("a", "regression"), Task("b", "binary")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), steps_per_execution=steps_per_execution)
    return model


def _mlp_data(n=88):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, {"a": x[:, :1] - x[:, 1:2], "b": (x[:, 2] > 0).astype("int64")}


class _StepsSeen(keras.callbacks.Callback):  # no batch hook: it leaves the choice alone
    def on_train_begin(self, logs=None):
        self.steps = self.model.steps_per_execution


def test_auto_steps_per_execution_trains_exactly_as_one_step_per_call():
    """88 examples in batches of 8: 11 steps an epoch, so the last call of each epoch runs 3 of its 8 steps."""
    x, y = _mlp_data()
    one, auto, seen = _mlp(1), _mlp(), _StepsSeen()
    one_history = one.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0).history
    auto_history = auto.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0, callbacks=[seen]).history
    assert seen.steps == 8 and int(auto.optimizer.iterations) == int(one.optimizer.iterations) == 2 * 9
    for expected, actual in zip(one.get_weights(), auto.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, atol=1e-6)
    assert sorted(auto_history) == sorted(one_history)
    for key, values in one_history.items():
        np.testing.assert_allclose(auto_history[key], values, rtol=1e-5, err_msg=key)


def test_a_callback_that_needs_each_batch_gets_one_step_per_call(tmp_path):
    x, y = _mlp_data(32)
    model, seen, batches = _mlp(), _StepsSeen(), []
    every_batch = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batches.append(batch))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[seen, every_batch])
    assert seen.steps == 1 and batches == [0, 1, 2, 3]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[seen])
    assert seen.steps == 8
    model.save(tmp_path / "auto.keras")  # the choice is the compile's: "auto" comes back with the model
    assert keras.saving.load_model(tmp_path / "auto.keras").auto_steps_per_execution
    with pytest.raises(ValueError, match="steps_per_execution must be 'auto' or a whole number"):
        _mlp(0)


def test_a_nan_in_a_call_of_several_steps_names_the_calls_batches():
    x, y = _mlp_data(32)
    x[20] = np.nan  # batch 3 of 4 (1-based), inside the first call of 8 steps
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1, batches 1-4 \(one call\)"):
        _mlp().fit(x, y, batch_size=8, epochs=1, verbose=0)
