"""Per-task class weights: the loss by hand (with missing labels), "balanced" from the training labels, round trips,
two replicas equal to one device, and the errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import MultiTaskModel, Task, compile_multitask, make_dataset
from mtl_keras.training.task_variables import task_losses

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
    with pytest.raises(ValueError, match="class_weight applies to tasks whose labels are class indices"):
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
