"""Tabular features, the tabular builder, and the census job end to end."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_config_round_trip, train_in_process
from mtl_keras import (
    Feature,
    InputError,
    NumericColumn,
    Task,
    build_tabular_model,
    compile_multitask,
    describe_features,
    expert_gates,
)
from mtl_keras.cli import main
from mtl_keras.datasets.pipeline import make_tabular_dataset

TASKS = [Task("income", "binary"), Task("marital", "binary")]


def columns(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "age": rng.integers(18, 80, n).astype("float64"),
        "gains": np.where(rng.random(n) < 0.3, rng.integers(1000, 99999, n), 0).astype("float64"),
        "job": rng.choice(["clerk", "nurse", "farmer"], n).astype(object),
        "year": rng.choice([94, 95], n),  # numbers that are codes: declared categorical below
    }


def labels(n=12, seed=0):
    rng = np.random.default_rng(seed + 1)
    return {"income": rng.integers(0, 2, n), "marital": rng.integers(0, 2, n)}


def features():
    return describe_features(columns(), categorical=["year"], log=["gains"])


def test_describe_features_types_vocabularies_and_statistics():
    described = {f.name: f for f in features()}
    assert {n: f.kind for n, f in described.items()} == {"age": "numeric", "gains": "numeric", "job": "categorical",
                                                         "year": "categorical"}
    data = columns()
    jobs, counts = np.unique(data["job"].astype(str), return_counts=True)
    by_frequency = [j for _, j in sorted(zip(-counts, jobs, strict=True))]
    assert list(described["job"].vocabulary) == by_frequency
    assert set(described["year"].vocabulary) == {"94", "95"}
    assert described["age"].mean == pytest.approx(data["age"].mean())
    logged = np.log1p(data["gains"])
    assert described["gains"].log and described["gains"].variance == pytest.approx(logged.var())
    assert Feature.from_config(described["job"].get_config()) == described["job"]


@pytest.mark.parametrize("kwargs, message", [
    ({"categorical": ["nope"]}, "no column"),
    ({"categorical": ["age"], "numeric": ["age"]}, "both numeric and categorical"),
    ({"numeric": ["job"]}, "non-numbers"),
    ({"log": ["job"]}, "log applies to numeric"),
])
def test_describe_features_refuses_bad_declarations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        describe_features(columns(), **kwargs)


def test_describe_features_refuses_nan_and_bad_names():
    data = columns()
    data["age"][3] = np.nan
    with pytest.raises(ValueError, match="'age' has a non-finite value at row 3"):
        describe_features(data)
    with pytest.raises(ValueError, match="non-empty string"):
        Feature("", "numeric")
    with pytest.raises(ValueError, match="Columns 'capital gain' and 'capital-gain' would both be the model input "
                                         "'capital_gain'"):
        describe_features({"capital gain": np.zeros(3), "capital-gain": np.ones(3)})


def test_numeric_column_by_hand():
    layer = NumericColumn(mean=1.0, variance=4.0, log=True)
    values = np.array([0.0, np.e - 1.0, -(np.e - 1.0)], "float32")
    np.testing.assert_allclose(np.asarray(layer(values))[:, 0], [(0 - 1) / 2, (1 - 1) / 2, (-1 - 1) / 2], atol=1e-6)
    assert_config_round_trip(layer)


def test_piecewise_linear_and_periodic_encodings_by_hand():
    from mtl_keras.encoders.numeric import PeriodicEncoding, PiecewiseLinearEncoding

    layer = PiecewiseLinearEncoding([0.0, 1.0, 3.0, 4.0], log=False)
    values = np.array([-2.0, 0.25, 1.0, 2.0, 3.5, 9.0], "float32")
    # First bin open below, last open above; middle bins clipped to [0, 1].
    expected = [[-2.0, 0.0, 0.0], [0.25, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.5, 0.0], [1.0, 1.0, 0.5],
                [1.0, 1.0, 6.0]]
    np.testing.assert_allclose(np.asarray(layer(values)), expected, atol=1e-6)
    logged = PiecewiseLinearEncoding([0.0, 1.0], log=True)
    np.testing.assert_allclose(np.asarray(logged(np.array([np.e - 1.0], "float32"))), [[1.0]], atol=1e-6)
    assert_config_round_trip(layer)
    with pytest.raises(ValueError, match="at least 2 increasing edges"):
        PiecewiseLinearEncoding([1.0, 1.0])
    periodic = PeriodicEncoding(frequencies=2, sigma=1.0)
    x = np.array([[0.5], [-1.0]], "float32")
    out = np.asarray(periodic(x))
    c = periodic.coefficients.numpy()
    np.testing.assert_allclose(out, np.concatenate([np.sin(2 * np.pi * x * c), np.cos(2 * np.pi * x * c)], -1),
                               atol=1e-5)
    assert_config_round_trip(periodic)


def test_quantile_bins_are_learned_and_travel_in_the_feature_config():
    data = columns(n=200)
    described = {f.name: f for f in describe_features(data, categorical=["job", "year"], log=["gains"], bins=4)}
    age = described["age"]
    np.testing.assert_allclose(age.bins, np.quantile(data["age"], [0, 0.25, 0.5, 0.75, 1]).astype("float32"))
    # Gains are 0 for about 70% of rows: the duplicate edges merge, and the edges are of the logged values.
    logged = np.sign(data["gains"]) * np.log1p(np.abs(data["gains"]))
    expected = np.unique(np.quantile(logged, [0, 0.25, 0.5, 0.75, 1]).astype("float32"))
    np.testing.assert_allclose(described["gains"].bins, expected)
    assert len(described["gains"].bins) < 5
    assert Feature.from_config(json.loads(json.dumps(age.get_config()))) == age
    assert describe_features(data, bins=0)[0].bins is None
    with pytest.raises(ValueError, match="bins are a numeric feature's increasing, finite edges"):
        Feature("age", "numeric", bins=(2.0, 1.0))


@pytest.mark.parametrize("encoding", ["piecewise_linear", "periodic"])
def test_numeric_embeddings_in_the_tabular_builder_round_trip(encoding, tmp_path):
    from helpers import assert_model_round_trips

    model = build_tabular_model(TASKS, features(), head_hidden_units=(4,), numeric_encoding=encoding,
                                numeric_embedding_dim=3)
    kind = {"piecewise_linear": "PiecewiseLinearEncoding", "periodic": "PeriodicEncoding"}[encoding]
    assert sum(type(layer).__name__ == kind for layer in model.layers) == 2  # age and gains
    assert model.get_layer("age_numeric_embedding").units == 3
    signature = [{f.name: tf.TensorSpec([None], tf.as_dtype(f.dtype), name=f.name) for f in features()}]
    assert_model_round_trips(model, tabular_inputs(columns()), tmp_path, signature=signature)
    with pytest.raises(ValueError, match="numeric_encoding must be one of"):
        build_tabular_model(TASKS, features(), numeric_encoding="quantile")


def tabular_inputs(data):
    return {name: tf.constant(values.astype(str) if values.dtype.kind not in "f" else values.astype("float32"))
            for name, values in data.items()}


@pytest.mark.parametrize("sharing", ["hard", "mmoe", "ple", "cross_stitch", "soft", "mtan", "cascade"])
def test_tabular_builder_every_sharing_round_trips(sharing, tmp_path):
    options = {"order": ["marital", "income"]} if sharing == "cascade" else {}
    model = build_tabular_model(TASKS, features(), sharing=sharing, sharing_options=options,
                                head_hidden_units=(4,))
    data = tabular_inputs(columns())
    expected = model.predict(data, verbose=0)
    assert {k: v.shape for k, v in expected.items()} == {"income": (12, 1), "marital": (12, 1)}
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    # Called directly (eagerly): the same outputs as `predict`, without tracing a second predict function.
    for name, values in reloaded(data).items():
        np.testing.assert_allclose(np.asarray(values), expected[name], atol=1e-6)
    from mtl_keras.export import export_saved_model, load_saved_model

    signature = [{f.name: tf.TensorSpec([None], tf.as_dtype(f.dtype), name=f.name) for f in features()}]
    export_saved_model(model, tmp_path / "saved", signature)
    saved = load_saved_model(tmp_path / "saved")  # kept alive: it owns the variables
    served = saved.serve(data)
    for name, values in served.items():
        np.testing.assert_allclose(values.numpy(), expected[name], atol=1e-6)


def test_unseen_category_goes_to_the_out_of_vocabulary_row():
    model = build_tabular_model(TASKS, features(), head_hidden_units=())
    data = columns(n=2)
    data["job"] = np.array(["astronaut", "clerk"], dtype=object)
    assert np.isfinite(model.predict(tabular_inputs(data), verbose=0)["income"]).all()


def test_tabular_dataset_checks_columns():
    feats = features()
    data = columns()
    with pytest.raises(InputError, match="no column"):
        make_tabular_dataset({k: v for k, v in data.items() if k != "job"}, labels(), TASKS, feats)
    bad = dict(data, age=data["age"].astype(object))
    bad["age"][0] = "old"
    with pytest.raises(InputError, match="'age' is numeric"):
        make_tabular_dataset(bad, labels(), TASKS, feats)
    nan = dict(data, gains=data["gains"].copy())
    nan["gains"][5] = np.inf
    with pytest.raises(InputError, match="'gains' has a non-finite value"):
        make_tabular_dataset(nan, labels(), TASKS, feats)


def test_tabular_mmoe_trains_under_mirrored_strategy_like_on_one_device(two_replicas):
    dataset = make_tabular_dataset(columns(n=16), labels(n=16), TASKS, features(), batch_size=16)
    options = {"num_experts": 3, "expert_units": (8,)}
    single = build_tabular_model(TASKS, features(), sharing="mmoe", sharing_options=options)
    initial = single.get_weights()
    compile_multitask(single, TASKS, optimizer=keras.optimizers.SGD(0.5))
    single.fit(dataset, epochs=1, verbose=0)
    with two_replicas.scope():
        mirrored = build_tabular_model(TASKS, features(), sharing="mmoe", sharing_options=options)
        mirrored.set_weights(initial)
        compile_multitask(mirrored, TASKS, optimizer=keras.optimizers.SGD(0.5))
    mirrored.fit(dataset, epochs=1, verbose=0)
    for after_single, after_mirrored in zip(single.get_weights(), mirrored.get_weights(), strict=True):
        np.testing.assert_allclose(after_mirrored, after_single, atol=2e-5)
    gates = expert_gates(mirrored, tabular_inputs(columns()))
    np.testing.assert_allclose(gates["mmoe_sharing"]["income"].sum(axis=1), 1.0, atol=1e-6)


@pytest.fixture(scope="module")
def census_run(tmp_path_factory):
    # Three trainings (the multi-task model and one baseline per task), each costing its tracing whatever the data:
    # the fewest records that leave every split non-empty are as good as many.
    folder = tmp_path_factory.mktemp("runs") / "census"
    stdout = train_in_process("census", "--limit", "400", "--epochs", "1", "--sharing", "ple",
                              "--sharing-option", "expert_units=(8,)", "--baselines", "--output", str(folder),
                              "--quiet")
    return folder, stdout


def test_census_job_writes_a_run_folder_with_baselines(census_run):
    folder, stdout = census_run
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["test"]) == set(metrics["single_task_test"]) == {"income", "marital"}
    assert set(metrics["test"]["income"]) == {"auc", "accuracy", "f1", "labelled"}
    assert metrics["test"]["income"]["labelled"] == pytest.approx(200, abs=5)  # about limit / 2 test records
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["sharing"] == "ple" and config["config"]["sharing_options"] == {"expert_units": [8]}
    assert "income" in stdout and "marital" in stdout


def test_census_predict_takes_json_rows_and_names_missing_columns(census_run, capsys):
    from mtl_keras.datasets.census import CENSUS_FEATURES, read_census

    folder, _ = census_run
    test = read_census("test")
    row = {name: test[name][0].item() if hasattr(test[name][0], "item") else test[name][0]
           for name in CENSUS_FEATURES}
    assert main(["predict", str(folder), json.dumps(row)]) == 0
    assert "income" in capsys.readouterr().out
    del row["education"]
    assert main(["predict", str(folder), json.dumps(row)]) == 2
    assert "no value for column(s) ['education']" in capsys.readouterr().err


def test_census_refuses_unknown_sharing_and_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "census", "--sharing", "moe"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert main(["train", "census", "--limit", "300", "--sharing-option", "experts=3", "--epochs", "1"]) == 2
    assert "bad sharing option(s) ['experts']" in capsys.readouterr().err


class FrameLike:
    """What `describe_features` uses of a pandas DataFrame: `.columns` and `frame[name].to_numpy()`."""

    class Column:
        def __init__(self, values):
            self.values = values

        def to_numpy(self):
            return self.values

    def __init__(self, data):
        self.data = data
        self.columns = list(data)

    def __getitem__(self, name):
        return self.Column(self.data[name])


def test_features_and_datasets_take_a_data_frame():
    frame = FrameLike(columns())
    assert describe_features(frame, categorical=["year"], log=["gains"]) == features()
    dataset = make_tabular_dataset(frame, labels(), TASKS, features(), batch_size=4)
    inputs, _, _ = next(iter(dataset))
    assert inputs["job"].dtype == tf.string and inputs["age"].dtype == tf.float32


def test_census_job_refuses_an_unknown_numeric_encoding_before_loading_data():
    from mtl_keras.jobs.census import CensusJob

    with pytest.raises(ValueError, match=r"--numeric-encoding must be one of \['standardize', 'piecewise_linear'"):
        CensusJob(numeric_encoding="bins", data_path="/nonexistent")
