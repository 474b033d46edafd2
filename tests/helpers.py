"""One helper for every layer and builder: config round trip, .keras save/load and SavedModel export; a SavedModel
served in a fresh process; a `mtl-keras train` run in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf


def assert_config_round_trip(layer: keras.layers.Layer) -> keras.layers.Layer:
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    return clone


def assert_model_round_trips(model: keras.Model, inputs, tmp_path, signature=None, atol=1e-5):
    """The model gives the same outputs after a .keras round trip and through an exported SavedModel; returns what
    the SavedModel served (NumPy). `inputs` is one array, or a dict of them with a matching `signature`."""
    expected = model.predict(inputs, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe mode: fails on Lambda layers or unregistered objects
    # One graph call rather than a second `predict` (exercised on the original): graph against graph, so that 16-bit
    # models round the same way (an eager call may differ in the last float16 bits).
    reloaded = tf.function(lambda batch: loaded(batch, training=False))(tf.nest.map_structure(tf.constant, inputs))
    _assert_outputs_close(expected, tf.nest.map_structure(np.asarray, reloaded), atol)

    from mtl_keras.export import export_saved_model, load_saved_model

    spec = signature or [tf.TensorSpec((None,) + tuple(np.shape(inputs))[1:], tf.as_dtype(np.asarray(inputs).dtype))]
    export_saved_model(model, tmp_path / "saved_model", spec)
    saved = load_saved_model(tmp_path / "saved_model")  # kept alive: it owns the variables
    served = saved.serve(tf.nest.map_structure(tf.constant, inputs))
    served = {k: v.numpy() for k, v in served.items()} if isinstance(served, dict) else served.numpy()
    _assert_outputs_close(expected, served, atol)
    return served


def _assert_outputs_close(expected, actual, atol):
    if isinstance(expected, dict):
        # A SavedModel may add a kind's export extras beside a task's output (`<task>_mask` for segmentation).
        assert set(expected) <= set(actual), (sorted(expected), sorted(actual))
        extras = set(actual) - set(expected)
        assert all(any(key.startswith(f"{task}_") for task in expected) for key in extras), extras
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


# Run with TensorFlow alone: the SavedModel must serve without mtl_keras (not even importable by accident). Several
# SavedModels are served in one process, and `saved_model_cli show` runs there too (through the function its console
# script calls): starting a process (importing TensorFlow) costs more than serving.
_SERVE_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys
    import numpy as np, tensorflow as tf
    models, show = json.loads(sys.stdin.read())
    results = []
    for path, rows in models:
        try:
            saved = tf.saved_model.load(path)
        except Exception as error:  # a keras-hub tokenizer's ops: registered as a serving process of it must
            if "not registered" not in str(error):
                raise
            import tensorflow_text
            saved = tf.saved_model.load(path)
        signature = saved.signatures["serving_default"]
        # `serve` takes the inputs as the model does: one tensor, or a dict of columns under the user's names, each
        # spec named as `serving_default` names its argument. Inputs are given under either name.
        serve_spec = saved.serve.concrete_functions[0].structured_input_signature[0][0]
        if isinstance(serve_spec, dict):
            given = {key: tf.constant(rows[key] if key in rows else rows[spec.name], dtype=spec.dtype)
                     for key, spec in serve_spec.items()}
            by_argument = {serve_spec[key].name: value for key, value in given.items()}
        else:
            given = tf.constant(next(iter(rows.values())), dtype=serve_spec.dtype)
            by_argument = {serve_spec.name: given}
        outputs = {name: value.numpy() for name, value in signature(**by_argument).items()}
        for name, value in saved.serve(given).items():
            np.testing.assert_allclose(value.numpy(), outputs[name], atol=1e-6, err_msg=name)
        results.append({name: value.tolist() for name, value in outputs.items()})
    shown = []
    if show:
        from tensorflow.python.tools import saved_model_cli  # the `saved_model_cli` command's module
    for path in show:
        sys.argv, printed = ["saved_model_cli", "show", "--dir", path, "--all"], io.StringIO()
        with contextlib.redirect_stdout(printed):
            try:
                saved_model_cli.main()  # what the console script calls; it ends in sys.exit
            except SystemExit as exit:
                assert not exit.code, f"saved_model_cli show --dir {path} --all: exit {exit.code}"
        shown.append(printed.getvalue())
    assert "mtl_keras" not in sys.modules
    print(json.dumps([results, shown]))
""")


def serve_many_in_fresh_process(models: list) -> list[dict[str, np.ndarray]]:
    """Calls each SavedModel's `serving_default` signature (and `serve`, checked to agree) in one new Python process
    that imports TensorFlow and NumPy only, for `(saved_model, inputs)` pairs (inputs: input name, or for `serve`'s
    dict its key, -> values; converted to the signature's dtypes there); returns each one's outputs by name."""
    return serve_and_show_in_fresh_process(models)[0]


def serve_and_show_in_fresh_process(models: list, show: list = ()) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """`serve_many_in_fresh_process`, and in the same process what `saved_model_cli show --dir PATH --all` prints
    for each SavedModel in `show`: returns `(outputs of each model, printed text of each shown one)`."""
    payload = json.dumps([[[str(path), {name: _json_ready(values) for name, values in inputs.items()}]
                           for path, inputs in models], [str(path) for path in show]])
    result = subprocess.run([sys.executable, "-c", _SERVE_SCRIPT], input=payload, capture_output=True, text=True,
                            timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})  # a bound, not a speed test
    assert result.returncode == 0, result.stderr[-3000:]
    served, shown = json.loads(result.stdout)
    return [{name: np.asarray(values) for name, values in outputs.items()} for outputs in served], shown


def _json_ready(values):
    values = np.asarray(values)
    if values.dtype == object:
        return [value.decode() if isinstance(value, bytes) else value for value in values.tolist()]
    return values.tolist()


def train_in_process(*args: str) -> str:
    """`mtl-keras train ARGS` in this process (a new one would spend ~12 s of CPU importing TensorFlow); its stdout."""
    import contextlib
    import io

    from mtl_keras.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["train", *args])
    assert code == 0, stderr.getvalue()
    return stdout.getvalue()
