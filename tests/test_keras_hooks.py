"""The private Keras, TensorFlow and keras-tuner hooks mtl_keras relies on, each named with the module that uses it.

Any release may rename or drop a private attribute without notice. Most of our uses would then fail loudly anyway,
but some would not: an override of a renamed method (`_maybe_symbolic_build`) silently never runs, and a
`getattr(..., None)` (`iterator._distributed_dataset`) silently takes the fallback, bringing back the bug it avoids.
So each test here fails naming the hook and our module, and the two silent ones are also checked by behaviour: the
override runs during `fit` and builds from the dataset's element spec. `mtl_keras.keras_compat` reads every hook
but the override and keras-tuner's, so the tests call its functions where it has one.
"""

from __future__ import annotations

import contextlib
import inspect

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import MultiTaskModel, Task, attach_shared_heads, compile_multitask, keras_compat
from mtl_keras.metrics import HistogramAUC, ThresholdF1Score, ThresholdPrecision, ThresholdRecall

pytestmark = pytest.mark.smoke  # also run with the lowest releases admitted (.ci/lowest-versions --smoke)

TASKS = [Task("a", "binary"), Task("b", "regression")]


def tiny_model() -> MultiTaskModel:
    inputs = keras.Input((3,), name="x")
    shared = keras.layers.Dense(4, activation="relu", name="trunk")(inputs)
    return MultiTaskModel(inputs, attach_shared_heads(shared, TASKS, "hard"), tasks=TASKS)


def dataset() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    labels = {"a": rng.integers(0, 2, (8, 1)).astype("float32"), "b": rng.normal(size=(8, 1)).astype("float32")}
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)


def assert_has(owner, attribute: str, used_by: str):
    assert hasattr(owner, attribute), (
        f"{type(owner).__name__ if not isinstance(owner, type) else owner.__name__}.{attribute} is gone in this "
        f"release (keras {keras.__version__}, tensorflow {tf.__version__}, keras-tuner {keras_tuner.__version__}); "
        f"{used_by} relies on it")


@pytest.mark.parametrize("method, parameters, used_by", [
    ("_maybe_symbolic_build", ["iterator", "data_batch"], "keras_compat.BuildsFromElementSpec (overrides it)"),
    ("_symbolic_build", ["data_batch"], "keras_compat.symbolic_build (the override and training/loop.py call it)"),
])
def test_keras_model_build_hooks_exist_with_the_parameters_we_use(method, parameters, used_by):
    assert_has(keras.Model, method, used_by)
    signature = inspect.signature(getattr(keras.Model, method))
    missing = [name for name in parameters if name not in signature.parameters]
    assert not missing, f"keras.Model.{method}{signature} lacks {missing}; {used_by} passes them"


def test_a_compiled_model_has_the_attributes_the_train_step_and_compile_use():
    model = compile_multitask(tiny_model())
    for attribute, used_by in [("_compile_loss", "training/step.py (its per-task loss trackers)"),
                               ("_loss_tracker", "training/step.py (the logged total loss)"),
                               ("_compile_config", "training/model.py (what a saved model recompiles with)"),
                               ("_layers", "training/model.py (a recompiled model forgets its old weighting)")]:
        assert_has(model, attribute, used_by)
    assert isinstance(model._compile_config.config, dict), "training/model.py updates _compile_config.config"
    keras_compat.update_compile_config(model, {"probe": 1})
    assert model._compile_config.config["probe"] == 1
    assert hasattr(keras_compat.loss_tracker(model), "update_state")
    assert keras_compat.compile_loss(model) is not None and keras_compat.compile_loss(tiny_model()) is None
    monitor = model.balancing_monitor
    assert any(variable is monitor.steps for variable in model.weights), (
        f"Keras {keras.__version__} does not track a layer set on a built model (training/model.py relies on it "
        f"for the weighting's and the monitor's variables; Keras 3.7 and 3.9 to 3.14 do not)")
    keras_compat.forget_layer(model, monitor)
    assert monitor not in model._layers and not any(variable is monitor.steps for variable in model.weights)


def test_keras_tensors_keep_their_history_for_the_task_graph():
    inputs = keras.Input((3,))
    output = keras.layers.Dense(2)(inputs)
    assert_has(output, "_keras_history", "training/shared.py (walks the graph from each task's output)")
    operation, node_index, _ = output._keras_history
    assert_has(operation, "_inbound_nodes", "training/shared.py")
    node = keras_compat.producing_node(output)
    assert node.operation is operation and isinstance(operation, keras.layers.Dense)


@pytest.mark.parametrize("metric, before_build, after_build", [
    (HistogramAUC(num_thresholds=20, multi_label=True), ["_thresholds_distributed_evenly", "_built", "_build",
                                                         "_from_logits"], ["_num_labels"]),
    (ThresholdF1Score(threshold=0.5), ["_built", "_build"], []),
], ids=["auc", "f1"])
def test_the_metrics_we_subclass_keep_the_state_our_fast_updates_read(metric, before_build, after_build):
    used_by = f"mtl_keras/metrics.py ({type(metric).__name__})"
    for attribute in before_build:
        assert_has(metric, attribute, used_by)
    assert metric._built is False
    metric.update_state(np.array([[0, 1], [1, 0]], "float32"), np.array([[0.2, 0.7], [0.6, 0.1]], "float32"))
    assert metric._built is True, f"{used_by}: Keras' _build no longer sets _built"
    assert keras_compat.metric_built(metric)
    for attribute in after_build:
        assert_has(metric, attribute, used_by)
    if isinstance(metric, keras.metrics.AUC):
        assert keras_compat.auc_num_labels(metric) == 2 and keras_compat.thresholds_evenly_spaced(metric)
        assert keras_compat.auc_from_logits(metric) is False


def test_precision_and_recall_say_whether_keras_takes_its_bucketed_update():
    """metrics.py keeps Keras' own update where Keras buckets (evenly spaced thresholds) and replaces it elsewhere."""
    for metric in (ThresholdPrecision(thresholds=0.5), ThresholdRecall(thresholds=[0.0, 0.5, 1.0])):
        assert_has(metric, "_thresholds_distributed_evenly", f"mtl_keras/metrics.py ({type(metric).__name__})")
    assert not keras_compat.thresholds_evenly_spaced(ThresholdPrecision(thresholds=0.5))
    assert keras_compat.thresholds_evenly_spaced(ThresholdRecall(thresholds=[0.0, 0.5, 1.0]))


def test_keras_tuner_oracles_keep_the_hooks_of_the_reference_first_trial():
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="loss", max_trials=1)
    assert_has(oracle, "populate_space", "tuning.py (the reference trial comes first)")
    assert_has(oracle, "start_order", "tuning.py (finds the reference trial)")
    assert "trial_id" in inspect.signature(oracle.populate_space).parameters


@pytest.mark.parametrize("strategy", [None, "two_replicas"])
def test_fit_runs_our_symbolic_build_override_from_the_element_spec(strategy, request, monkeypatch):
    """The override must run, and must find the dataset's element spec (through the epoch iterator's distributed
    dataset): else Keras draws a batch and a reshuffling dataset trains on its second order (see keras_compat.py)."""
    specs = []
    original = keras_compat._one_replica_batch_spec

    def recording(iterator):
        specs.append(original(iterator))
        return specs[-1]

    monkeypatch.setattr(keras_compat, "_one_replica_batch_spec", recording)
    scope = request.getfixturevalue(strategy).scope() if strategy else contextlib.nullcontext()
    with scope:
        model = compile_multitask(tiny_model())
    model.fit(dataset(), epochs=1, verbose=0)
    assert specs, "BuildsFromElementSpec._maybe_symbolic_build never ran: Keras no longer calls it from fit"
    assert specs[0] is not None, ("the epoch iterator has no _distributed_dataset with an element_spec: "
                                  "BuildsFromElementSpec._maybe_symbolic_build falls back to drawing a batch")
    x_spec = tf.nest.flatten(specs[0])[0]
    assert isinstance(x_spec, tf.TensorSpec) and x_spec.shape.as_list() == [None, 3], specs[0]


def test_the_callbacks_a_backup_saves_keep_their_state_attributes():
    """training/backup.py saves and restores these (public attributes, but not documented as API)."""
    early_stopping = keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    plateau = keras.callbacks.ReduceLROnPlateau(patience=2)
    callbacks = keras.callbacks.CallbackList([early_stopping, plateau], model=compile_multitask(tiny_model()))
    assert_has(callbacks, "callbacks", "training/backup.py (the callbacks of a CallbackList)")
    assert early_stopping in callbacks.callbacks and plateau in callbacks.callbacks
    callbacks.on_train_begin()
    for callback, attributes in [(early_stopping, ["wait", "stopped_epoch", "best", "best_epoch", "best_weights"]),
                                 (plateau, ["wait", "cooldown_counter", "best"])]:
        for attribute in attributes:
            assert_has(callback, attribute, "training/backup.py (a resumed training restores it)")
