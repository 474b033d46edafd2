"""Runs that would end wrong refuse or say so: settings that train nothing, backups of other settings, a diverged
run resumed from its backup, tiny splits, damaged or unsafe run folders, stale staging folders, permissions."""

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import NonFiniteLossError, Task
from mtl_keras.atomic_write import atomic_directory
from mtl_keras.cli import main
from mtl_keras.datasets.pipeline import make_dataset
from mtl_keras.datasets.splits import Split, Splits
from mtl_keras.jobs.base import Job, JobConfig
from mtl_keras.training.backup import BackupSettingsError
from mtl_keras.training.model import MultiTaskModel


@dataclasses.dataclass
class TinyConfig(JobConfig):
    epochs: int = 1
    batch_size: int = 8
    units: int = 2  # a model option
    scale: float = 1.0  # of the inputs; 1e30 overflows the squared error at once


class TinyJob(Job):
    """Two tasks on 48 rows of two numbers: a job that trains in a fraction of a second."""

    name = "tiny"
    config_class = TinyConfig
    input_signature = [tf.TensorSpec([None, 2], tf.float32, name="x")]

    def load_data(self):
        x = np.random.default_rng(0).normal(size=(48, 2)).astype("float32") * self.config.scale
        rows = Split(x, {"a": x[:, 0].copy(), "b": (x[:, 1] > 0).astype("int32")})
        return Splits(rows.take(np.arange(32)), rows.take(np.arange(32, 40)), rows.take(np.arange(40, 48)),
                      [Task("a", "regression"), Task("b", "binary")])

    def build_model(self, tasks, splits):
        inputs = keras.Input((2,), name="x")
        hidden = keras.layers.Dense(self.config.units)(inputs)
        return MultiTaskModel(inputs, {t.name: keras.layers.Dense(1, activation=t.activation, name=t.name)(hidden)
                                       for t in tasks})

    def dataset(self, split, tasks, training):
        split = split.for_tasks(t.name for t in tasks)
        return make_dataset(split.inputs, split.labels, tasks, batch_size=self.config.batch_size, shuffle=training,
                            seed=self.config.seed)


def test_a_backup_of_other_settings_is_refused_naming_each_difference(tmp_path):
    backups = tmp_path / "backups"
    job = TinyJob(backup_dir=str(backups))
    splits = job.load_data()
    job.train(splits.tasks, splits, verbose=0)  # a training that was not followed by its run folder (a kill)
    changed = TinyJob(backup_dir=str(backups), learning_rate=0.01, units=3, weighting="uncertainty")
    with pytest.raises(BackupSettingsError, match=r"learning_rate: 0.001 in the backup, 0.01 now; units: 2 in the "
                                                  r"backup, 3 now; weighting: \"static\" in the backup, "
                                                  r"\"uncertainty\" now\. .*delete .*backups.multitask.* to start"):
        changed.run(tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
    # Where and how often it backs up, and on which devices, may change (a resumed run is tested below).
    TinyJob(backup_dir=str(backups), backup_every=2, strategy="default").backup(splits.tasks).check_settings()


def test_a_diverged_run_says_its_backup_holds_the_divergence_and_how_to_start_fresh(tmp_path):
    job = TinyJob(backup_dir=str(tmp_path / "backups"), scale=1e30)
    splits = job.load_data()
    with pytest.raises(NonFiniteLossError, match=r"a_loss=inf.*the backup in .*multitask now holds the diverged "
                                                 r"state; to start fresh, delete .*backups or pass another"):
        job.train(splits.tasks, splits, verbose=0)
    with pytest.raises(NonFiniteLossError, match=r"this training resumed from the backup in .*multitask, which holds "
                                                 r"the diverged state; to start fresh, delete"):
        job.train(splits.tasks, splits, verbose=0)


@pytest.mark.parametrize("option, message", [
    (["--epochs", "0"], r"--epochs must be a whole number >= 1, got 0 \(0 epochs would write a run folder of an "
                        r"untrained model\)"),
    (["--epochs", "-2"], r"--epochs must be a whole number >= 1, got -2"),
    (["--limit", "1"], r"--limit 1 leaves the train, validation and test splits empty \(train 0, validation 0, "
                       r"test 0 examples\)"),
    (["--limit", "10"], r"--limit 10 leaves the validation and test splits empty \(train 10, validation 0, test 0"),
])
def test_train_refuses_settings_that_train_nothing(option, message, tmp_path, capsys):
    assert main(["train", "text", *option, "--output", str(tmp_path / "run"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert re.search(message, captured.err), captured.err
    assert "Epoch" not in captured.out and not (tmp_path / "run").exists()


@pytest.fixture
def run_folder(tmp_path):
    """A run folder's config.json, of a text run of one task `s`; its model files are up to each test."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"job": "text", "config": {"limit": 200},
                                                 "tasks": [Task("s", "binary").get_config()]}))
    return run


def test_predict_and_evaluate_name_a_missing_or_damaged_model(run_folder, capsys):
    assert main(["predict", str(run_folder), "hello"]) == 2
    assert "has no saved_model/" in capsys.readouterr().err
    (run_folder / "saved_model").mkdir()
    (run_folder / "saved_model" / "saved_model.pb").write_bytes(b"\x08\xff garbage")
    assert main(["predict", str(run_folder), "hello"]) == 2
    assert "saved_model cannot be loaded as a SavedModel" in capsys.readouterr().err
    assert main(["evaluate", str(run_folder)]) == 2
    assert "has no model.keras" in capsys.readouterr().err
    inputs = keras.Input((2,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(run_folder / "whole.keras")
    whole = (run_folder / "whole.keras").read_bytes()
    (run_folder / "model.keras").write_bytes(whole[:len(whole) // 2])
    assert main(["evaluate", str(run_folder)]) == 2
    assert "model.keras cannot be read as a Keras model" in capsys.readouterr().err


class _WritesAFile(tf.Module):
    def __init__(self, target):
        super().__init__()
        self.target = str(target)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        tf.io.write_file(self.target, "written by the model")
        return {"s": tf.ones([tf.shape(text)[0], 1])}


def test_predict_refuses_a_saved_model_that_writes_files_unless_allowed(run_folder, tmp_path, capsys):
    target = tmp_path / "written.txt"
    module = _WritesAFile(target)
    tf.saved_model.save(module, str(run_folder / "saved_model"), signatures=module.serve)
    assert main(["predict", str(run_folder), "hello"]) == 2
    err = capsys.readouterr().err
    assert "holds operations that write files or run Python code" in err and "WriteFile" in err
    assert "--allow-unsafe-ops" in err and not target.exists()
    assert main(["evaluate", str(run_folder), "--saved-model"]) == 2
    assert "WriteFile" in capsys.readouterr().err and not target.exists()
    assert main(["predict", str(run_folder), "hello", "--allow-unsafe-ops"]) == 0
    assert target.read_text() == "written by the model"


def test_a_later_write_removes_what_killed_writers_left(tmp_path):
    final = tmp_path / "run"
    gone = 2**22 + 1  # above Linux's largest process id: no such process
    (tmp_path / f".run.partial-{gone}-abcd").mkdir()
    (tmp_path / ".run.partial-x1y2z3").mkdir()  # an older writer's name, without a process id
    (tmp_path / f".run.partial-{os.getppid()}-live").mkdir()  # a writer still running
    (tmp_path / ".other.partial-1-abcd").mkdir()  # another output's
    with atomic_directory(final) as staging:
        (staging / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-1-abcd",
                                                          f".run.partial-{os.getppid()}-live", "run"]
    # Killed between its two renames: the earlier folder, moved aside, is put back.
    final.rename(tmp_path / f".run.old-{gone}")
    with pytest.raises(FileExistsError):
        with atomic_directory(final):
            pass
    assert (final / "a").read_text() == "1"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700)])
def test_run_folders_follow_the_users_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "run"):
            pass
    finally:
        os.umask(previous)
    assert (tmp_path / "run").stat().st_mode & 0o777 == mode


class _Killed(BaseException):
    """Stands for kill -9 at a chosen moment: raised with every clean-up disabled (see `_kill_at`)."""


def _kill_at(patch, stage: str, count: int) -> None:
    """Makes the next run die at the `count`-th training batch, backup write (`savez`) or backup pointer switch
    (`replace`) of the run, after the export, or at the run folder's rename; nothing is cleaned up, and the killed
    writer's process is gone when the next run starts."""
    calls = []

    def due() -> bool:
        calls.append(1)
        return len(calls) == count

    if stage == "batch":
        class KillAt(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if due():
                    raise _Killed

        job_callbacks = TinyJob.callbacks
        patch.setattr(TinyJob, "callbacks", lambda self, tasks, *args: [*job_callbacks(self, tasks, *args), KillAt()])
    elif stage in ("savez", "replace"):
        module = np if stage == "savez" else os
        real = getattr(module, stage)

        def dying(*args, **kwargs):
            if due():
                raise _Killed
            return real(*args, **kwargs)

        patch.setattr(module, stage, dying)
    elif stage == "export":
        from mtl_keras.jobs import base

        export = base.export_saved_model

        def export_then_die(*args, **kwargs):
            export(*args, **kwargs)
            raise _Killed

        patch.setattr(base, "export_saved_model", export_then_die)
    else:
        rename = Path.rename
        patch.setattr(Path, "rename", lambda self, target: (_ for _ in ()).throw(_Killed())
                      if Path(target).name == "run" else rename(self, target))
    patch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)
    patch.setattr(os, "getpid", lambda: 2**22 + 1)


def test_a_run_killed_again_and_again_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    settings = {"epochs": 3, "patience": 3, "backup_every": 2}  # 4 batches an epoch, a backup every 2
    TinyJob(**settings, backup_dir=str(tmp_path / "reference" / "backups")).run(tmp_path / "reference" / "run",
                                                                                 verbose=0)
    rng = np.random.default_rng(15)
    # Training kills at a seeded batch or backup write of each run (each run gets at most 2 of the 12 batches
    # further, so training is still going on at the third), then one after the export and one at the rename.
    kills = [(str(rng.choice(["batch", "savez", "replace"])), int(rng.integers(1, 3))) for _ in range(3)]
    kills += [("export", 1), ("rename", 1)]
    folder = tmp_path / "out"
    for stage, count in kills:
        with monkeypatch.context() as patch, pytest.raises(_Killed):
            _kill_at(patch, stage, count)
            TinyJob(**settings, backup_dir=str(folder / "backups")).run(folder / "run", verbose=0)
    assert any(name.startswith(".run.partial-") for name in os.listdir(folder))  # what the kills left
    TinyJob(**settings, backup_dir=str(folder / "backups")).run(folder / "run", verbose=0)
    assert sorted(os.listdir(folder)) == ["run"]  # no staging folder, no backup left
    reference, resumed = tmp_path / "reference" / "run", folder / "run"
    for name in ("metrics.json", "history.json"):
        expected = _flat(json.loads((reference / name).read_text()))
        assert _flat(json.loads((resumed / name).read_text())) == pytest.approx(expected, rel=1e-6), name
    for mine, theirs in zip(keras.models.load_model(resumed / "model.keras").get_weights(),
                            keras.models.load_model(reference / "model.keras").get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)


def _flat(record, prefix=""):
    """A nested record of numbers (dicts, lists) as one flat dict, for `pytest.approx`."""
    items = record.items() if isinstance(record, dict) else enumerate(record) if isinstance(record, list) else None
    if items is None:
        return {prefix: record}
    return {key: value for name, item in items for key, value in _flat(item, f"{prefix}/{name}").items()}
