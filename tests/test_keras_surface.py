"""The Keras-native surface: the model carries its tasks, compiles from them, exports itself with no signature
written, and takes tabular data as users have it (any column names, missing categories, pandas dtypes). And the
SavedModel of each job serves raw inputs: strings (text), a dict of raw columns (census), uint8 images (vision).

For each job a tiny model is built with the job's own data loading and builder, and exported as a run does (no
signature written: it is derived from the model's inputs; no training: the serving path is what is under test); wrong
inputs fail with errors that name the input and what it expects.

Every SavedModel here (the jobs' and this file's own) is served in one fresh process (TensorFlow alone, with the
original column names), which also runs `saved_model_cli show --all` on each job's: it lists `serving_default` with the
raw inputs. (One process for all: starting one, importing TensorFlow, costs more than what it does.)"""

import contextlib
import io
import json
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from helpers import serve_and_show_in_fresh_process
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
from mtl_keras.datasets.census import census_file
from mtl_keras.datasets.features import MISSING_CATEGORY, input_name
from mtl_keras.export import load_saved_model, serving_signature
from mtl_keras.jobs import JOBS

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


TEXTS = np.array(["I love it :)", "terrible, awful service", "the market fell today", "what a great movie!!!",
                  "not good at all", "stocks and bonds rallied", "meh", "best phone ever"], dtype=object)
TEXT_TASKS = [Task("sentiment", "binary"), Task("intensity", "regression"), Task("domain", "multiclass", num_classes=3)]
TEXT_LABELS = {"sentiment": np.array([1, 0, MISSING, 1, 0, MISSING, 0, 1]),
               "intensity": np.array([2.5, -3.0, -0.5, 3.1, -1.2, 0.4, -0.1, 2.9], "float32"),
               "domain": np.array([0, 1, 2, 1, 0, 2, 0, 1])}


@pytest.fixture(scope="module")
def text_and_vision(tmp_path_factory):
    """The same for a text model (trained with validation and the progress bar on, its output kept) and a vision
    model with a segmentation task (whose mask the export adds)."""
    text = build_text_model(TEXT_TASKS, texts=TEXTS, embedding_dim=4, encoder_options={"filters": 2})
    text.compile(optimizer="adam")
    data = make_text_dataset(TEXTS, TEXT_LABELS, TEXT_TASKS, batch_size=4)
    progress = io.StringIO()
    with contextlib.redirect_stdout(progress):
        history = text.fit(data, validation_data=data, epochs=1, verbose=1)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("uint8")
    vision_tasks = [Task("mask", "segmentation", num_classes=3), Task("count", "regression")]
    vision = build_vision_model(vision_tasks, image_shape=(8, 8, 1), filters=(4, 4), head_hidden_units=())
    vision.compile(optimizer="adam")
    vision.fit(make_image_dataset(images, {"mask": images[..., 0] % 3, "count": [1.0, 2.0, 0.0, 1.0]}, vision_tasks,
                                  (8, 8, 1)), epochs=1, verbose=0)
    folder = tmp_path_factory.mktemp("text_vision")
    return ((text, TEXTS, export_saved_model(text, folder / "text"), progress.getvalue(), history),
            (vision, images, export_saved_model(vision, folder / "vision")))


def custom_model():
    """A user's own functional model: their trunk, our heads, the tasks given once."""
    tasks = [Task("a", "binary"), Task("b", "regression")]
    inputs = keras.Input((3,), name="signal")
    shared = keras.layers.Dense(4, activation="relu", name="trunk")(inputs)
    return MultiTaskModel(inputs, attach_shared_heads(shared, tasks, "mmoe",
                                                      {"num_experts": 2, "expert_units": (4,)}), tasks=tasks)


SIGNAL = np.linspace(-1.0, 1.0, 6, dtype="float32").reshape(2, 3)


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    model = custom_model()
    return model, export_saved_model(model, tmp_path_factory.mktemp("custom") / "custom")


@pytest.fixture(scope="module")
def fresh_process(tabular, text_and_vision, custom, every_exported):
    """One new process (TensorFlow alone) serves every SavedModel of the module, this file's four (the tabular one
    with the columns as a client sends them) then the jobs', and shows each job's with `saved_model_cli`. Returns
    `(what this file's four served, what each job's served by job name, what saved_model_cli printed by job name)`."""
    _, _, tabular_path = tabular
    (_, texts, text_path, *_), (_, images, vision_path) = text_and_vision
    data = frame()
    raw_columns = {column: data[column].tolist() for column in ["education-num", "capital gain", "Ünit.price"]}
    # Categories as a client sends them: strings, with the missing category spelled out.
    raw_columns["work class"] = [MISSING_CATEGORY if v is None or v != v else v for v in data["work class"]]
    raw_columns["zip"] = [str(v) for v in data["zip"]]
    own = [(tabular_path, raw_columns), (text_path, {"text": texts}), (vision_path, {"image": images}),
           (custom[1], {"signal": SIGNAL})]
    jobs = list(every_exported.values())
    served, shown = serve_and_show_in_fresh_process([*own, *((job.path, job.by_input_name) for job in jobs)],
                                                    show=[job.path for job in jobs])
    return (served[:len(own)], dict(zip(every_exported, served[len(own):], strict=True)),
            dict(zip(every_exported, shown, strict=True)))


def test_every_model_serves_in_a_fresh_process_as_it_predicts(tabular, text_and_vision, custom, fresh_process):
    model, _, _ = tabular
    (text, texts, *_), (vision, images, _) = text_and_vision
    served = fresh_process[0]
    expected = [model.predict(frame(), verbose=0), text.predict(texts, verbose=0), vision.predict(images, verbose=0),
                custom[0].predict(SIGNAL, verbose=0)]
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


def test_progress_bar_shows_one_headline_per_task_on_160_columns(text_and_vision):
    (*_, out, history), _ = text_and_vision  # the text model's fit: one epoch, with validation, verbose=1
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


# --- the jobs' SavedModels --------------------------------------------------------------------------------------------
EXAMPLES = 4


def tiny_census_copy(folder: Path, rows: int = 600) -> Path:
    """The first `rows` records of each bundled census file, as a data folder (reading the whole files takes ~10 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("train", "test"):
        with lzma.open(census_file(part), "rt", encoding="utf-8") as source:
            head = [source.readline() for _ in range(rows + 1)]
        with lzma.open(census_file(part, folder), "wt", encoding="utf-8") as target:
            target.writelines(head)
    return folder


def job_settings(name: str, tmp: Path) -> dict:
    return {
        "text": {"limit": 300, "embedding_dim": 8},
        "census": {"data_path": str(tiny_census_copy(tmp / "census")),
                   "sharing_options": {"num_experts": 2, "expert_units": (8,)}},
        "vision": {"limit": 32, "filters": (4, 8, 8, 8)},
    }[name]


class Exported:
    """A job's tiny model, exported: the job, the model, the SavedModel's path, and a few raw test examples both as
    the model takes them and by serving input name."""

    def __init__(self, name: str, tmp: Path):
        self.job = JOBS[name](**job_settings(name, tmp))
        splits = self.job.load_data()
        self.tasks = splits.tasks
        self.model = self.job.new_model(self.tasks, splits)
        self.signature = serving_signature(self.model)
        self.path = export_saved_model(self.model, tmp / "saved_model")
        self.model_inputs = self.job.model_inputs(splits.test.take(np.arange(EXAMPLES)).inputs)
        self.by_input_name = by_input_name(self.model_inputs, self.signature)


def by_input_name(model_inputs, signature) -> dict[str, np.ndarray]:
    """The model's inputs keyed as `serving_default` names them (one tensor: the spec's name; a dict: its keys)."""
    if isinstance(model_inputs, dict):
        return {name: np.asarray(values) for name, values in model_inputs.items()}
    (spec,) = tf.nest.flatten(signature)
    return {spec.name: np.asarray(model_inputs)}


JOB_NAMES = ("text", "census", "vision")


@pytest.fixture(scope="module")
def every_exported(tmp_path_factory) -> dict[str, Exported]:
    return {name: Exported(name, tmp_path_factory.mktemp(name)) for name in JOB_NAMES}


@pytest.fixture(params=JOB_NAMES)
def exported(request, every_exported) -> Exported:
    return every_exported[request.param]


def test_saved_models_in_a_fresh_process_match_keras_predict(every_exported, fresh_process):
    """Every job's SavedModel served in the new process (TensorFlow only) gives what `predict` gives."""
    every_served = fresh_process[1]
    for name, exported in every_exported.items():
        served = every_served[name]
        expected = exported.model.predict(exported.model_inputs, verbose=0)
        masks = {f"{task.name}_mask": task.name for task in exported.tasks if task.kind == "segmentation"}
        assert sorted(served) == sorted([*expected, *masks]), exported.job.name
        for output, values in expected.items():
            assert served[output].shape == values.shape, output
            np.testing.assert_allclose(served[output], values, atol=1e-5, err_msg=output)
        for mask, task in masks.items():  # the argmax of what it served (untrained classes can nearly tie)
            np.testing.assert_array_equal(served[mask], served[task].argmax(-1))


DT_NAMES = {tf.string: "DT_STRING", tf.uint8: "DT_UINT8", tf.float32: "DT_FLOAT"}


def test_saved_model_cli_shows_the_raw_inputs_of_serving_default(exported, fresh_process):
    shown = fresh_process[2][exported.job.name]  # `saved_model_cli show --dir PATH --all`
    block = shown.split("signature_def['serving_default']:")[1].split("Method name is")[0]
    for spec in tf.nest.flatten(exported.signature):
        shape = "(" + ", ".join("-1" if d is None else str(d) for d in spec.shape.as_list()) + ")"
        assert re.search(rf"inputs\['{spec.name}'\] tensor_info:\s+dtype: {DT_NAMES[spec.dtype]}\s+shape: "
                         rf"{re.escape(shape)}", block), (spec, block)
    for task in exported.tasks:
        assert re.search(rf"outputs\['{task.name}'\] tensor_info:\s+dtype: DT_FLOAT", block), (task.name, block)


def wrong_inputs(exported: Exported):
    """(call, what the error must say): calls of `serve` (TensorFlow matches them to the input signature) and of
    `serving_default` (as TF Serving calls it: dtypes checked by TensorFlow, shapes by the export's own check)."""
    saved = load_saved_model(exported.path)
    default = saved.signatures["serving_default"]
    name = exported.job.name
    if name == "text":
        return saved, [
            (lambda: saved.serve(tf.constant([1, 2])), TypeError, r"dtype=tf\.string, name='text'"),
            (lambda: default(text=tf.constant([["two"], ["rows"]])), tf.errors.InvalidArgumentError,
             r"serving input text: expected a string tensor of shape \(batch\); got shape\] \[2, 1\]"),
        ]
    if name == "vision":
        floats = tf.random.uniform([2, 64, 64, 1])  # images scaled to [0, 1] instead of uint8 pixels
        return saved, [
            (lambda: saved.serve(floats), TypeError, r"dtype=tf\.uint8, name='image'"),
            (lambda: default(image=tf.zeros([2, 32, 32, 1], tf.uint8)), tf.errors.InvalidArgumentError,
             r"serving input image: expected a uint8 tensor of shape \(batch, 64, 64, 1\); got shape\] "
             r"\[2, 32, 32, 1\]"),
            (lambda: default(image=tf.zeros([2, 64, 64, 3], tf.uint8)), tf.errors.InvalidArgumentError,
             r"expected a uint8 tensor of shape \(batch, 64, 64, 1\); got shape\] \[2, 64, 64, 3\]"),
            (lambda: default(image=tf.zeros([64, 64, 1], tf.uint8)), tf.errors.InvalidArgumentError,
             r"got shape\] \[64, 64, 1\]"),  # no batch axis: without the check the process aborts
        ]
    columns = {key: tf.constant(values) for key, values in exported.by_input_name.items()}
    missing = {key: value for key, value in columns.items() if key != "education"}
    return saved, [
        (lambda: saved.serve(missing), TypeError, r"different keys with the TraceType Dict\[.*'education'"),
        (lambda: default(**missing), TypeError, r"missing a required argument: 'education'"),
        (lambda: saved.serve({**columns, "age": tf.constant(["forty"] * EXAMPLES)}), TypeError,
         r"dtype=tf\.float32, name='age'"),
        (lambda: default(**{**columns, "age": tf.reshape(columns["age"], [-1, 1])}),
         tf.errors.InvalidArgumentError, r"serving input age: expected a float32 tensor of shape \(batch\)"),
    ]


def test_wrong_inputs_fail_naming_the_input_and_what_it_expects(exported):
    saved, cases = wrong_inputs(exported)  # `saved` kept alive: it owns the variables
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
