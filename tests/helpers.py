"""One helper for every layer and builder: config round trip, .keras save/load and SavedModel export."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def assert_config_round_trip(layer: keras.layers.Layer) -> keras.layers.Layer:
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    return clone


def assert_model_round_trips(model: keras.Model, inputs, tmp_path, signature=None, atol=1e-5) -> None:
    """The model gives the same outputs after a .keras round trip and through an exported SavedModel."""
    expected = model.predict(inputs, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe mode: fails on Lambda layers or unregistered objects
    _assert_outputs_close(expected, loaded.predict(inputs, verbose=0), atol)

    from mtl_keras.export import export_saved_model, load_saved_model

    spec = signature or [tf.TensorSpec((None,) + tuple(np.shape(inputs))[1:], tf.as_dtype(np.asarray(inputs).dtype))]
    export_saved_model(model, tmp_path / "saved_model", spec)
    saved = load_saved_model(tmp_path / "saved_model")  # kept alive: it owns the variables
    served = saved.serve(tf.constant(inputs))
    served = {k: v.numpy() for k, v in served.items()} if isinstance(served, dict) else served.numpy()
    _assert_outputs_close(expected, served, atol)


def _assert_outputs_close(expected, actual, atol):
    if isinstance(expected, dict):
        assert sorted(expected) == sorted(actual)
        for key in expected:
            np.testing.assert_allclose(actual[key], expected[key], atol=atol, err_msg=key)
    else:
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol)


def fit_on_one_device_and_mirrored(build, tasks, dataset, strategy, learning_rate):
    """Builds the same model twice (the second under `strategy`, with the first's initial weights), fits each for
    one epoch of `dataset` with SGD, and returns `(initial_weights, single, mirrored)`."""
    from mtl_keras import compile_multitask

    single = build()
    initial = single.get_weights()
    compile_multitask(single, tasks, optimizer=keras.optimizers.SGD(learning_rate))
    single.fit(dataset, epochs=1, verbose=0)
    with strategy.scope():
        mirrored = build()
        mirrored.set_weights(initial)
        compile_multitask(mirrored, tasks, optimizer=keras.optimizers.SGD(learning_rate))
    mirrored.fit(dataset, epochs=1, verbose=0)
    return initial, single, mirrored
