from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import NonFiniteLossError, StopOnNonFiniteLoss, Task, compile_multitask, make_dataset
from mtl_keras.atomic_write import atomic_directory, atomic_file


def test_nan_loss_stops_training_with_a_message_naming_the_task():
    inputs = keras.Input(shape=(2,))
    outputs = {"r": keras.layers.Dense(1, name="r")(inputs), "s": keras.layers.Dense(1, activation="sigmoid",
                                                                                     name="s")(inputs)}
    model = keras.Model(inputs, outputs)
    tasks = [Task("r", "regression"), Task("s", "binary")]
    compile_multitask(model, tasks, optimizer=keras.optimizers.SGD(1.0))
    x = np.ones((64, 2), "float32") * 1e30  # the squared error overflows float32 at once
    guard = StopOnNonFiniteLoss()
    labels = {"r": np.ones(64, "float32"), "s": np.ones(64)}
    history = model.fit(make_dataset(x, labels, tasks, batch_size=8), epochs=3, verbose=0, callbacks=[guard])
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch \d+: .*r_loss=(nan|inf)"):
        guard.raise_if_failed()


def test_failed_write_leaves_the_earlier_folder_untouched(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    (final / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(final, overwrite=True) as staging:
            (staging / "metrics.json").write_text("new, half")
            raise RuntimeError("diverged")
    assert (final / "metrics.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_successful_write_replaces_only_when_asked(tmp_path):
    final = tmp_path / "run"
    with atomic_directory(final) as staging:
        (staging / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_directory(final):
            pass
    with atomic_directory(final, overwrite=True) as staging:
        (staging / "b").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path, "w") as file:
            file.write("new, half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with atomic_file(path, "w") as file:
        file.write("new")
        assert path.read_text() == "old"  # a reader sees the old file until the block ends
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"):
        with atomic_file(path, "a"):
            pass


def test_an_interrupted_export_leaves_the_earlier_saved_model(tmp_path, monkeypatch):
    from mtl_keras import build_vision_model
    from mtl_keras.export import export_saved_model

    model = build_vision_model([Task("kind", "binary")], image_shape=(8, 8, 1), filters=(4,))
    path = export_saved_model(model, tmp_path / "saved")
    before = sorted(str(p.relative_to(path)) for p in path.rglob("*"))

    def killed(obj, export_dir, *args, **kwargs):  # a kill (Ctrl-C) halfway through TensorFlow's writing
        Path(export_dir, "saved_model.pb").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.saved_model, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, path)
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == before
    assert (path / "saved_model.pb").read_bytes() != b"half"
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]
    monkeypatch.undo()
    export_saved_model(model, path)  # an earlier SavedModel is replaced
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a SavedModel"):
        export_saved_model(model, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_mean_relative_validation_loss_by_hand():
    from mtl_keras.training.callbacks import MeanRelativeValidationLoss

    callback = MeanRelativeValidationLoss(["a", "b"])
    callback.on_train_begin()
    first = {"val_loss": 12.0, "val_a_loss": 10.0, "val_b_loss": 2.0}
    callback.on_epoch_end(0, first)
    assert first["val_mean_relative_loss"] == pytest.approx(1.0)
    second = {"val_loss": 10.0, "val_a_loss": 9.0, "val_b_loss": 1.0}  # a: 0.9, b: 0.5
    callback.on_epoch_end(1, second)
    assert second["val_mean_relative_loss"] == pytest.approx(0.7)
    single = MeanRelativeValidationLoss(["a"])
    single.on_train_begin()
    for epoch, loss in enumerate((4.0, 3.0)):
        logs = {"val_loss": loss}
        single.on_epoch_end(epoch, logs)
    assert logs["val_mean_relative_loss"] == pytest.approx(0.75)


def test_compile_refuses_a_keras_that_does_not_track_what_it_adds():
    from mtl_keras import MultiTaskModel
    from mtl_keras.training.model import _check_tracked

    inputs = keras.Input((2,))
    tasks = [Task("r", "regression")]
    model = MultiTaskModel(inputs, {"r": keras.layers.Dense(1, name="r")(inputs)}, tasks=tasks)
    compile_multitask(model, tasks, weighting="uncertainty")
    _check_tracked(model, model.weighting.variables)  # tracked here: no error
    stray = keras.Variable(1.0, name="stray")
    with pytest.raises(RuntimeError, match=r"does not track the variables .*stray.* needs Keras >= 3\.15"):
        _check_tracked(model, [*model.weighting.variables, stray])


def _two_task_model(weighting=None):
    from mtl_keras import MultiTaskModel

    inputs = keras.Input((2,))
    trunk = keras.layers.Dense(4, name="trunk")(inputs)
    tasks = [Task("hours", "regression"), Task("income", "binary")]
    model = MultiTaskModel(inputs, {"hours": keras.layers.Dense(1, name="hours")(trunk),
                                    "income": keras.layers.Dense(1, activation="sigmoid", name="income")(trunk)},
                           tasks=tasks)
    return compile_multitask(model, tasks, weighting=weighting)


def test_a_task_in_large_units_is_named_at_the_first_step():
    import warnings

    from mtl_keras import TaskLossScaleWarning

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2)).astype("float32")
    labels = {"hours": 40 + 10 * rng.normal(size=32).astype("float32"), "income": rng.integers(0, 2, 32)}
    with pytest.warns(TaskLossScaleWarning, match=r"the weighted loss of task 'hours' is \d+x that of task "
                                                  r"'income' .*loss_weights=\{'hours': "):
        _two_task_model().fit(x, labels, batch_size=8, epochs=1, verbose=0)
    with pytest.warns(TaskLossScaleWarning, match="'hours'"):  # our loop (jobs with backups, multi-worker) too
        _two_task_model().fit(make_dataset(x, labels, _two_task_model().tasks, batch_size=8), epochs=1, verbose=0,
                              loop="custom")
    labels["hours"] = labels["hours"] / 40 - 1  # standardized: about the binary task's scale
    with warnings.catch_warnings():
        warnings.simplefilter("error", TaskLossScaleWarning)
        _two_task_model().fit(x, labels, batch_size=8, epochs=1, verbose=0)
        labels["hours"] = labels["hours"] * 40 + 40
        _two_task_model("uncertainty").fit(x, labels, batch_size=8, epochs=1, verbose=0)  # not static: no check
        chosen = _two_task_model()
        chosen.compile(optimizer="adam", loss_weights={"hours": 0.001})  # weights set apart: the user's choice
        chosen.fit(x, labels, batch_size=8, epochs=1, verbose=0)
