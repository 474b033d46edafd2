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
