"""The Keras-native surface: the model carries its tasks, compiles from them, exports itself with no signature
written, and takes tabular data as users have it (any column names, missing categories, pandas dtypes).

Every SavedModel here is served in one fresh process (TensorFlow alone), with the original column names."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from helpers import serve_many_in_fresh_process
from mtl_keras import (
    MISSING,
    InputError,
    MultiTaskModel,
    Task,
    attach_shared_heads,
    build_tabular_model,
    build_text_model,
    build_vision_model,
    compile_multitask,
    compute_metrics,
    describe_features,
    export_saved_model,
    make_image_dataset,
    make_tabular_dataset,
    make_text_dataset,
)
from mtl_keras.datasets.features import MISSING_CATEGORY, input_name

TABULAR_TASKS = [Task("income", "binary"), Task("hours", "regression")]


def frame(n=8):
    """Real-world column names and values: spaces, hyphens, dots, non-ASCII, a code column of integers, a missing
    category."""
    return pd.DataFrame({
        "education-num": np.arange(n, dtype="float64"),
        "capital gain": np.linspace(0.0, 5000.0, n),
        "Ünit.price": np.linspace(1.0, 2.0, n),
        "work class": ["private", "state", None, "private", "self", "private", np.nan, "state"][:n],
        "zip": np.array([10001, 10002, 10001, 94105, 10001, 10002, 94105, 10001][:n]),
    })


def tabular_labels(n=8):
    return {"income": np.array([0, 1, 0, 1, 1, 0, MISSING, 1][:n]), "hours": np.linspace(20.0, 60.0, n)}


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """Done-when script: a DataFrame with hyphenated and spaced column names, `model.compile(optimizer="adam")`,
    one epoch, export with no signature: no TensorSpec, no rename written."""
    data = frame()
    features = describe_features(data, categorical=["zip"])
    model = build_tabular_model(TABULAR_TASKS, features, head_hidden_units=(4,))
    model.compile(optimizer="adam")
    model.fit(make_tabular_dataset(data, tabular_labels(), model.tasks, features, batch_size=4), epochs=1, verbose=0)
    path = export_saved_model(model, tmp_path_factory.mktemp("tabular") / "saved_model")
    return model, features, path


@pytest.fixture(scope="module")
def text_and_vision(tmp_path_factory):
    """The same for a text model and a vision model with a segmentation task (whose mask the export adds)."""
    texts = np.array(["good film", "bad food", "great phone", "awful day"], dtype=object)
    text_tasks = [Task("sentiment", "binary"), Task("topic", "multiclass", num_classes=3)]
    text = build_text_model(text_tasks, texts=texts, embedding_dim=4, encoder_options={"filters": 2},
                            head_hidden_units=())
    text.compile(optimizer="adam")
    text.fit(make_text_dataset(texts, {"sentiment": [1, 0, 1, 0], "topic": [0, 1, 2, 0]}, text_tasks), epochs=1,
             verbose=0)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("uint8")
    vision_tasks = [Task("mask", "segmentation", num_classes=3), Task("count", "regression")]
    vision = build_vision_model(vision_tasks, image_shape=(8, 8, 1), filters=(4, 4), head_hidden_units=())
    vision.compile(optimizer="adam")
    vision.fit(make_image_dataset(images, {"mask": images[..., 0] % 3, "count": [1.0, 2.0, 0.0, 1.0]}, vision_tasks,
                                  (8, 8, 1)), epochs=1, verbose=0)
    folder = tmp_path_factory.mktemp("text_vision")
    return ((text, texts, export_saved_model(text, folder / "text")),
            (vision, images, export_saved_model(vision, folder / "vision")))


def custom_model():
    """A user's own functional model: their trunk, our heads, the tasks given once."""
    tasks = [Task("a", "binary"), Task("b", "regression")]
    inputs = keras.Input((3,), name="signal")
    shared = keras.layers.Dense(4, activation="relu", name="trunk")(inputs)
    return MultiTaskModel(inputs, attach_shared_heads(shared, tasks, "mmoe",
                                                      {"num_experts": 2, "expert_units": (4,)}), tasks=tasks)


def test_every_model_serves_in_a_fresh_process_as_it_predicts(tabular, text_and_vision, tmp_path):
    model, _, tabular_path = tabular
    (text, texts, text_path), (vision, images, vision_path) = text_and_vision
    custom = custom_model()
    signal = np.linspace(-1.0, 1.0, 6, dtype="float32").reshape(2, 3)
    custom_path = export_saved_model(custom, tmp_path / "custom")
    data = frame()
    raw_columns = {column: data[column].tolist() for column in ["education-num", "capital gain", "Ünit.price"]}
    # Categories as a client sends them: strings, with the missing category spelled out.
    raw_columns["work class"] = [MISSING_CATEGORY if v is None or v != v else v for v in data["work class"]]
    raw_columns["zip"] = [str(v) for v in data["zip"]]
    served = serve_many_in_fresh_process([(tabular_path, raw_columns), (text_path, {"text": texts}),
                                          (vision_path, {"image": images}), (custom_path, {"signal": signal})])
    expected = [model.predict(data, verbose=0), text.predict(texts, verbose=0), vision.predict(images, verbose=0),
                custom.predict(signal, verbose=0)]
    for outputs, predicted in zip(served, expected, strict=True):
        assert set(outputs) - set(predicted) <= {"mask_mask"}
        for name, values in predicted.items():
            np.testing.assert_allclose(outputs[name], values, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(served[2]["mask_mask"], expected[2]["mask"].argmax(-1))


def test_saved_model_arguments_follow_the_one_naming_rule(tabular):
    model, _, path = tabular
    saved = tf.saved_model.load(str(path))
    arguments = saved.signatures["serving_default"].structured_input_signature[1]
    assert sorted(arguments) == ["Unit_price", "capital_gain", "education_num", "work_class", "zip"]
    assert sorted(model.input) == sorted(arguments)
    serve_keys = saved.serve.concrete_functions[0].structured_input_signature[0][0]
    assert sorted(serve_keys) == sorted(frame().columns)  # `serve` takes the columns under the user's names
    assert [input_name(name) for name in ("a.b-c d", "Ärger", "2nd", "__x__")] == ["a_b_c_d", "Arger", "x_2nd", "x"]


def test_categories_missing_integers_as_floats_and_mixed_types(tabular):
    model, features, _ = tabular
    by_name = {f.name: f for f in features}
    assert MISSING_CATEGORY in by_name["work class"].vocabulary
    assert not {"None", "nan"} & set(by_name["work class"].vocabulary)
    assert set(by_name["zip"].vocabulary) == {"10001", "10002", "94105"}
    data = frame()
    as_floats = data.assign(zip=data["zip"].astype("float64"))  # 10001.0 at predict time
    for name, values in model.predict(as_floats, verbose=0).items():
        np.testing.assert_allclose(values, model.predict(data, verbose=0)[name], atol=1e-6, err_msg=name)
    with pytest.raises(InputError, match="Column 'work class' mixes value types"):
        model.predict(data.assign(**{"work class": ["a", 3, "b", "a", "a", "b", "a", "b"]}), verbose=0)
    with pytest.raises(ValueError, match="Column 'mixed' mixes value types"):
        describe_features({"mixed": np.array(["a", 1.5, None], dtype=object)})


def test_describe_features_reads_pandas_extension_dtypes():
    data = pd.DataFrame({
        "city": pd.array(["Oslo", None, "Lyon"], dtype="string"),
        "tier": pd.Categorical(["gold", "silver", None]),
        "visits": pd.array([1, 2, 3], dtype="Int64"),
        "member": pd.array([True, None, False], dtype="boolean"),
    })
    features = {f.name: f for f in describe_features(data)}
    assert {name: f.kind for name, f in features.items()} == {"city": "categorical", "tier": "categorical",
                                                              "visits": "numeric", "member": "categorical"}
    assert set(features["city"].vocabulary) == {"Oslo", "Lyon", MISSING_CATEGORY}
    assert set(features["tier"].vocabulary) == {"gold", "silver", MISSING_CATEGORY}
    assert set(features["member"].vocabulary) == {"True", "False", MISSING_CATEGORY}
    assert features["visits"].mean == pytest.approx(2.0)


def test_the_model_carries_its_tasks_through_config_and_keras_files(tabular, tmp_path):
    model, _, _ = tabular
    assert MultiTaskModel.from_config(model.get_config()).tasks == model.tasks == TABULAR_TASKS
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.tasks == TABULAR_TASKS and loaded.input_columns == model.input_columns
    # Compiled from its tasks again on loading: the same masked losses, not wrapped twice.
    assert type(loaded.loss["income"]).__name__ == "MaskedLoss"
    assert type(loaded.loss["income"].inner).__name__ == "BinaryCrossentropy"
    data = frame()
    np.testing.assert_allclose(loaded.predict(data, verbose=0)["hours"], model.predict(data, verbose=0)["hours"],
                               atol=1e-6)
    evaluated = loaded.evaluate(make_tabular_dataset(data, tabular_labels(), loaded.tasks, describe_features(
        data, categorical=["zip"])), verbose=0, return_dict=True)
    assert {"income_loss", "income_accuracy", "hours_mae"} <= set(evaluated)


def test_compile_defaults_overrides_and_compile_multitask_agree():
    model = custom_model()
    model.compile(optimizer="sgd", loss={"b": "huber"}, metrics={"a": ["auc"]}, loss_weights={"b": 0.5})
    assert model.loss["b"].inner.name == "huber"
    assert type(model.loss["a"].inner).__name__ == "BinaryCrossentropy"
    signal = np.zeros((4, 3), "float32")
    logs = model.evaluate(signal, {"a": np.array([0, 1, 0, 1]), "b": np.zeros(4)}, verbose=0, return_dict=True)
    assert "a_auc" in logs and "a_accuracy" not in logs and "b_mae" in logs
    again = compile_multitask(custom_model(), optimizer="sgd")  # tasks from the model
    assert sorted(again.loss) == ["a", "b"]
    with pytest.raises(ValueError, match=r"the outputs \['a', 'b'\] and the tasks \['a'\] differ"):
        compile_multitask(custom_model(), [Task("a", "binary")])
    with pytest.raises(ValueError, match="carries no tasks"):
        inputs = keras.Input((3,))
        compile_multitask(MultiTaskModel(inputs, {"a": keras.layers.Dense(1)(inputs)}))


def test_compute_metrics_reads_the_tasks_from_the_model():
    model = custom_model()
    predictions = {"a": np.array([[0.9], [0.2]]), "b": np.array([[1.0], [3.0]])}
    metrics = compute_metrics(model, predictions, {"a": np.array([1, 1]), "b": np.array([2.0, 2.0])})
    assert metrics["a"]["accuracy"] == pytest.approx(0.5) and metrics["b"]["mae"] == pytest.approx(1.0)
    assert json.dumps(metrics)


def test_progress_bar_shows_one_headline_per_task_on_160_columns(text_tasks, tiny_texts, tiny_labels, capsys):
    model = build_text_model(text_tasks, texts=tiny_texts, embedding_dim=4, encoder_options={"filters": 2})
    model.compile(optimizer="adam")
    data = make_text_dataset(tiny_texts, tiny_labels, text_tasks, batch_size=4)
    history = model.fit(data, validation_data=data, epochs=1, verbose=1)
    out = capsys.readouterr().out
    lines = [line for line in out.replace("\r", "\n").split("\n") if line.strip()]
    assert lines and max(len(line) for line in lines) <= 160, max(lines, key=len)
    assert "sentiment " in out and "intensity " in out and " mae " in out and "domain " in out
    assert "validation - loss " in out
    assert "sentiment_precision" not in out and "intensity_rmse" not in out
    # Every metric still reaches History (and so the other callbacks, TensorBoard and history.json).
    assert {"sentiment_precision", "intensity_rmse", "val_domain_f1", "val_sentiment_auc"} <= set(history.history)


def test_the_command_starts_without_tensorflow_lines(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}
    result = subprocess.run([sys.executable, "-m", "mtl_keras.cli", "evaluate", str(tmp_path)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"mtl-keras: error: {tmp_path} is not a run folder (no "
                                                  f"config.json); pass the folder `mtl-keras train` wrote."]


def test_the_command_predicts_from_json_rows_under_the_original_column_names(tabular, tmp_path, capsys):
    import shutil

    from mtl_keras.cli import main

    model, _, path = tabular
    shutil.copytree(path, tmp_path / "saved_model")
    (tmp_path / "config.json").write_text(json.dumps({"tasks": [task.get_config() for task in model.tasks]}))
    row = {"education-num": 3, "capital gain": 100.0, "Ünit.price": 1.5, "work class": None, "zip": 10001.0}
    assert main(["predict", str(tmp_path), "--json", json.dumps(row)]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = model.predict(pd.DataFrame({key: [value] for key, value in row.items()}), verbose=0)
    np.testing.assert_allclose(printed["hours"], expected["hours"], atol=1e-5)
