"""What tasks learn from their training labels, and the losses that use it: per-task class weights (per class, and
per label as positive weights), the focal loss, standardized regression targets. Losses by hand (with missing
labels), "balanced" weights and target statistics from the training labels, round trips (.keras, SavedModel), two
replicas equal to one device, and the errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import MultiTaskModel, Task, compile_multitask, make_dataset
from mtl_keras.training.shared import task_losses

RNG = np.random.default_rng(3)
X = RNG.normal(size=(16, 3)).astype("float32")
LABELS = {"rare": np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, -1, 0, 0, 0, 1]),  # -1: missing
          "mood": np.array([0, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 0, 2, 2, 2])}


def _model(rare_weight=None, mood_weight=None):
    tasks = [Task("rare", "binary", class_weight=rare_weight),
             Task("mood", "multiclass", num_classes=3, class_weight=mood_weight)]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    trunk = keras.layers.Dense(4, name="trunk")(inputs)
    model = MultiTaskModel(inputs, {"rare": keras.layers.Dense(1, activation="sigmoid", name="rare")(trunk),
                                    "mood": keras.layers.Dense(3, activation="softmax", name="mood")(trunk)},
                           tasks=tasks)
    return compile_multitask(model, tasks, optimizer=keras.optimizers.SGD(0.1))


def test_the_weighted_loss_by_hand_with_a_missing_label():
    model = _model(rare_weight={1: 4.0}, mood_weight={0: 2.0, 2: 0.5})
    predictions = {name: np.asarray(value) for name, value in model(X).items()}
    present = (LABELS["rare"] != -1).astype("float32")
    rare = np.where(present > 0, LABELS["rare"], 0)
    p = predictions["rare"][:, 0]
    per_example = -(rare * np.log(p) + (1 - rare) * np.log(1 - p)) * np.where(rare == 1, 4.0, 1.0)
    expected_rare = np.sum(per_example * present) / present.sum()  # divided by the labelled count, not the weights
    mood = LABELS["mood"]
    expected_mood = np.mean(-np.log(predictions["mood"][np.arange(16), mood]) * np.array([2.0, 1.0, 0.5])[mood])
    losses = task_losses(model, {"rare": rare[:, None].astype("float32"), "mood": mood[:, None]}, predictions,
                         {"rare": present, "mood": np.ones(16, "float32")})
    assert float(losses["rare"]) == pytest.approx(expected_rare, rel=1e-5)
    assert float(losses["mood"]) == pytest.approx(expected_mood, rel=1e-5)


def test_balanced_weights_come_from_the_training_labels_and_travel_with_the_model(tmp_path):
    model = _model(rare_weight="balanced", mood_weight="balanced")
    model.fit(X, LABELS, batch_size=8, epochs=1, verbose=0)
    rare, mood = model.tasks
    # 15 labelled: 12 of class 0, 3 of class 1 -> 15 / (2 * 12), 15 / (2 * 3); mood: 2, 2, 12 of 16.
    assert rare.class_weight == {0: 0.625, 1: 2.5}
    assert mood.class_weight == {0: 2.6667, 1: 2.6667, 2: 0.4444}
    assert model.loss["rare"].class_weight == [0.625, 2.5]  # the compiled loss trains with them
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert [task.class_weight for task in reloaded.tasks] == [rare.class_weight, mood.class_weight]
    assert reloaded.loss["mood"].class_weight == [2.6667, 2.6667, 0.4444]
    from_dataset = _model(rare_weight="balanced")
    from_dataset.fit(make_dataset(X, LABELS, from_dataset.tasks, batch_size=8), epochs=1, verbose=0)
    assert from_dataset.tasks[0].class_weight == rare.class_weight  # the same counts, read from the batches


def test_class_weights_under_two_replicas_give_the_one_device_update(two_replicas):
    # The missing label and the rare class fall on different replicas' halves of the batch.
    dataset = make_dataset(X, LABELS, _model().tasks, batch_size=16)
    single = _model(rare_weight={1: 4.0}, mood_weight={0: 2.0})
    single.fit(dataset, epochs=1, verbose=0)
    with two_replicas.scope():
        mirrored = _model(rare_weight={1: 4.0}, mood_weight={0: 2.0})
    mirrored.fit(dataset, epochs=1, verbose=0)
    for variable, expected in zip(mirrored.weights, single.weights, strict=True):
        np.testing.assert_allclose(variable.numpy(), expected.numpy(), atol=2e-6, err_msg=variable.path)
    unweighted = _model()
    unweighted.fit(dataset, epochs=1, verbose=0)
    assert not np.allclose(unweighted.get_layer("trunk").kernel.numpy(), single.get_layer("trunk").kernel.numpy())


def test_class_weight_config_round_trip_and_errors():
    task = Task("mood", "multiclass", num_classes=3, class_weight={2: 0.5})
    assert Task.from_config(json.loads(json.dumps(task.get_config()))) == task  # JSON keys are strings
    assert task.class_weight_vector == [1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="class_weight applies to tasks whose labels are classes"):
        Task("score", "regression", class_weight={0: 2.0})
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\) and finite weights > 0; got \{3: 1.0\}"):
        Task("mood", "multiclass", num_classes=3, class_weight={3: 1.0})
    with pytest.raises(ValueError, match="'balanced' or"):
        Task("mood", "binary", class_weight="inverse")
    with pytest.raises(ValueError, match="needs labelled training examples"):
        Task("mood", "binary", class_weight="balanced").with_balanced_class_weight([-1, -1])
    with pytest.raises(ValueError, match="computed from the training labels when training starts"):
        _ = Task("mood", "binary", class_weight="balanced").class_weight_vector
    with pytest.raises(ValueError, match="computed from the training labels"):
        _model(rare_weight="balanced").fit(tf.constant(X), None, epochs=1, verbose=0)


def test_segmentation_weighs_each_pixel_by_its_class():
    from mtl_keras.losses import MaskedLoss

    labels = np.array([[[0, 1], [1, 1]], [[0, 0], [0, 2]]])  # two 2x2 label maps
    probabilities = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 2, 2)).astype("float32")
    weights = np.array([0.5, 2.0, 1.0])
    picked = np.take_along_axis(probabilities, labels[..., None], axis=-1)[..., 0]
    per_example = (-np.log(picked) * weights[labels]).mean(axis=(1, 2))  # pixels first, then examples
    loss = MaskedLoss("sparse_categorical_crossentropy", class_weight=weights.tolist())
    assert float(loss(labels, probabilities, sample_weight=[1.0, 0.0])) == pytest.approx(per_example[0], rel=1e-5)
    assert float(loss(labels, probabilities)) == pytest.approx(per_example.mean(), rel=1e-5)


def test_multilabel_positive_weights_by_hand_and_balanced_from_the_labels():
    from mtl_keras.losses import MaskedLoss

    labels = np.array([[1, 0, 0], [0, 0, 1], [1, 1, 0], [-1, -1, -1], [0, 0, 0]], "float32")  # row 3 missing
    probabilities = np.random.default_rng(1).uniform(0.05, 0.95, size=(5, 3)).astype("float32")
    weights = np.array([2.0, 4.0, 0.5])
    present = np.array([1, 1, 1, 0, 1], "float32")
    y = np.where(labels < 0, 0, labels)
    elementwise = -(weights * y * np.log(probabilities) + (1 - y) * np.log(1 - probabilities))
    expected = np.sum(elementwise.mean(axis=1) * present) / present.sum()  # labels first, then labelled examples
    loss = MaskedLoss("binary_crossentropy", positive_weight=weights.tolist())
    assert float(loss(labels, probabilities, sample_weight=present)) == pytest.approx(expected, rel=1e-5)
    unit = MaskedLoss("binary_crossentropy", positive_weight=[1.0, 1.0, 1.0])
    plain = MaskedLoss("binary_crossentropy")
    assert float(unit(labels, probabilities, present)) == pytest.approx(float(plain(labels, probabilities, present)),
                                                                       rel=1e-5)

    task = Task("tags", "multilabel", num_classes=3, class_weight="balanced")
    inputs = keras.Input((2,))
    model = MultiTaskModel(inputs, {"tags": keras.layers.Dense(3, activation="sigmoid", name="tags")(inputs)},
                           tasks=[task])
    compile_multitask(model, [task], optimizer="sgd")
    model.fit(np.zeros((5, 2), "float32"), {"tags": labels}, epochs=1, verbose=0)
    # 4 labelled rows: label 0 has 2 positives (2 negatives), label 1 one (3), label 2 one (3).
    assert model.tasks[0].class_weight == {0: 1.0, 1: 3.0, 2: 3.0}
    assert model.loss["tags"].positive_weight == [1.0, 3.0, 3.0]
    assert Task("tags", "multilabel", num_classes=3, class_weight={1: 2.0}).loss_options()["positive_weight"] == [
        1.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="positive term of the binary cross-entropy; it does not apply to loss"):
        Task("tags", "multilabel", num_classes=3, class_weight={0: 2.0}, loss="focal")


def test_focal_loss_by_hand_for_each_kind_that_has_it():
    from mtl_keras.losses import MaskedLoss, SparseCategoricalFocalCrossentropy

    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]], "float32")
    classes = np.array([0, 1, 2])
    p_true = probabilities[np.arange(3), classes]
    expected = -((1 - p_true) ** 2) * np.log(p_true)
    focal = Task("mood", "multiclass", num_classes=3, loss="focal").build_loss()
    assert float(focal(classes[:, None], probabilities)) == pytest.approx(expected.mean(), rel=1e-5)
    assert float(focal(classes[:, None], probabilities, sample_weight=[0, 1, 1])) == pytest.approx(
        expected[1:].mean(), rel=1e-5)
    crossentropy = SparseCategoricalFocalCrossentropy(gamma=0.0)(classes, probabilities)
    np.testing.assert_allclose(crossentropy, -np.log(p_true), rtol=1e-5)  # gamma 0: the plain cross-entropy

    p = np.array([[0.9], [0.3]], "float32")
    y = np.array([[1.0], [0.0]], "float32")
    p_t = np.where(y == 1, p, 1 - p)
    binary = Task("rare", "binary", loss="focal", class_weight={1: 3.0}).build_loss()
    by_hand = -((1 - p_t) ** 2) * np.log(p_t) * np.where(y == 1, 3.0, 1.0)
    assert float(binary(y, p)) == pytest.approx(by_hand.mean(), rel=1e-4)
    reloaded = MaskedLoss.from_config(json.loads(json.dumps(focal.get_config())))
    assert float(reloaded(classes[:, None], probabilities)) == pytest.approx(expected.mean(), rel=1e-5)
    with pytest.raises(ValueError, match=r"loss 'focal' is for kinds \['binary', 'multiclass', 'multilabel', "
                                         r"'segmentation'\], not regression"):
        Task("score", "regression", loss="focal")


HOURS = RNG.normal(size=(64, 3)).astype("float32")
HOURS_TARGET = (40.0 + 12.0 * HOURS @ np.array([1.0, -0.5, 0.25], "float32")).astype("float32")


def _hours_model(standardize=True):
    from mtl_keras import build_tabular_model, describe_features

    tasks = [Task("hours", "regression", standardize_target=standardize), Task("rare", "binary")]
    features = describe_features({"a": HOURS[:, 0], "b": HOURS[:, 1], "c": HOURS[:, 2]})
    keras.utils.set_random_seed(0)
    model = build_tabular_model(tasks, features, head_hidden_units=(8,))
    model.features = features
    return compile_multitask(model, tasks, optimizer=keras.optimizers.Adam(0.05))


def test_a_standardized_target_trains_in_unit_scale_and_answers_in_raw_units(tmp_path):
    from mtl_keras.export import export_saved_model, load_saved_model

    columns = {"a": HOURS[:, 0], "b": HOURS[:, 1], "c": HOURS[:, 2]}
    labelled = np.ones(64, bool)
    labelled[::4] = False  # the statistics come from the labelled examples only
    raw = HOURS_TARGET.copy()
    raw[~labelled] = 1e6
    labels = {"hours": raw, "rare": (HOURS[:, 0] > 1).astype("int64")}
    model = _hours_model()
    assert model.get_layer("hours").target_mean.numpy().tolist() == [0.0]  # until fit reads the labels
    model.fit(columns, labels, masks={"hours": labelled}, epochs=30, batch_size=16, verbose=0)
    mean, std = model.tasks[0].target_statistics
    assert mean[0] == pytest.approx(HOURS_TARGET[labelled].mean(), rel=1e-5)
    assert std[0] == pytest.approx(HOURS_TARGET[labelled].std(), rel=1e-5)
    np.testing.assert_allclose(model.get_layer("hours").target_std.numpy(), std, rtol=1e-6)
    predictions = model.predict(columns, verbose=0)["hours"][:, 0]
    error = np.abs(predictions - HOURS_TARGET)[labelled].mean()
    assert error < 0.3 * HOURS_TARGET.std()  # outputs in hours, near the targets
    # The loss is the MSE of the standardized values: the raw MSE over the variance.
    losses = task_losses(model, {"hours": HOURS_TARGET[:, None], "rare": labels["rare"][:, None].astype("float32")},
                         model(model.prepare_columns(columns)), {"hours": labelled.astype("float32"),
                                                                 "rare": np.ones(64, "float32")})
    raw_mse = np.mean((predictions - HOURS_TARGET)[labelled] ** 2)
    assert float(losses["hours"]) == pytest.approx(raw_mse / std[0] ** 2, rel=1e-4)

    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert reloaded.tasks[0].standardize_target == model.tasks[0].standardize_target
    assert reloaded.loss["hours"].target_std == std
    np.testing.assert_allclose(reloaded.predict(columns, verbose=0)["hours"][:, 0], predictions, rtol=1e-5)
    export_saved_model(model, tmp_path / "served")
    served = load_saved_model(tmp_path / "served")
    answered = served.serve({name: tf.constant(values) for name, values in columns.items()})
    np.testing.assert_allclose(np.asarray(answered["hours"])[:, 0], predictions, rtol=1e-5, atol=1e-4)


def test_standardized_targets_under_two_replicas_give_the_one_device_update(two_replicas):
    from mtl_keras import make_tabular_dataset

    columns = {"a": HOURS[:, 0], "b": HOURS[:, 1], "c": HOURS[:, 2]}
    labels = {"hours": HOURS_TARGET, "rare": (HOURS[:, 0] > 1).astype("int64")}
    single = _hours_model()
    dataset = make_tabular_dataset(columns, labels, single.tasks, single.features, batch_size=32)
    single.fit(dataset, epochs=1, verbose=0)
    with two_replicas.scope():
        mirrored = _hours_model()
    mirrored.fit(dataset, epochs=1, verbose=0)
    assert mirrored.tasks[0].standardize_target == single.tasks[0].standardize_target
    for variable, expected in zip(mirrored.weights, single.weights, strict=True):
        np.testing.assert_allclose(variable.numpy(), expected.numpy(), atol=2e-6, err_msg=variable.path)


def test_standardize_target_errors():
    with pytest.raises(ValueError, match="standardize_target applies to real-valued targets"):
        Task("mood", "binary", standardize_target=True)
    with pytest.raises(ValueError, match="needs 1 finite means and 1 finite spreads > 0"):
        Task("hours", "regression", standardize_target={"mean": [1.0], "std": [0.0]})
    task = Task("hours", "regression", standardize_target=True)
    assert Task.from_config(json.loads(json.dumps(task.with_target_statistics([1.0, 3.0]).get_config()))) == (
        task.with_target_statistics([1.0, 3.0]))
    with pytest.raises(ValueError, match="needs labelled training examples"):
        task.with_target_statistics([1.0, 2.0], [False, False])
    inputs = keras.Input((3,))
    plain = MultiTaskModel(inputs, {"hours": keras.layers.Dense(1, name="hours")(inputs)}, tasks=[task])
    with pytest.raises(ValueError, match="Task 'hours' has standardize_target set, but model .* has no standardized "
                                         "head"):
        compile_multitask(plain, [task], optimizer="sgd")


def test_job_options_limit_the_training_split_and_standardize_regression_targets():
    from mtl_keras.datasets.splits import Split, Splits
    from mtl_keras.jobs.base import JobConfig, check_job_config, with_job_data_options

    def split(n):
        return Split(np.arange(n), {"hours": np.arange(n, dtype="float32"), "rare": np.zeros(n, "int64")})

    splits = Splits(split(100), split(10), split(10), [Task("hours", "regression"), Task("rare", "binary")])
    limited = with_job_data_options(splits, JobConfig(train_limit=30, standardize_targets=True, seed=5))
    assert len(limited.train) == 30 and len(limited.validation) == 10 and len(limited.test) == 10
    assert set(limited.train.inputs) < set(range(100))
    smaller = with_job_data_options(splits, JobConfig(train_limit=10, seed=5))
    assert set(smaller.train.inputs) <= set(limited.train.inputs)  # nested: the same seed, a prefix of one order
    assert [task.standardize_target for task in limited.tasks] == [True, False]
    assert [task.class_weight for task in limited.tasks] == [None, None]
    balanced = with_job_data_options(splits, JobConfig(balance_classes=True))
    assert [task.class_weight for task in balanced.tasks] == [None, "balanced"]
    assert with_job_data_options(splits, JobConfig()).train is splits.train
    with pytest.raises(ValueError, match="--train-limit must be a whole number >= 1, got 0"):
        check_job_config(JobConfig(train_limit=0))
