"""Strategies, our distributed training loop and training backups.

- `get_strategy` and the helpers of `mtl_keras.distribute`, with their errors;
- `fit_distributed` against Keras' `fit`: the same weights and logs on one device, under MirroredStrategy on two
  logical CPUs, and with callbacks (early stopping with the best weights restored);
- two worker processes under MultiWorkerMirroredStrategy (TF_CONFIG on 127.0.0.1) end with identical weights and
  logs, equal to one process trained on the same global batches, for PCGrad, and for static weights through a kill;
- a training killed mid-epoch (os._exit) and started again resumes from its backup and ends as an uninterrupted
  one, for two workers (for one process: notebook 05); an interrupted backup write leaves the previous backup
  readable.

The subprocess trainings (tests/distribute_worker.py) all start at once in a module fixture, beside the in-process
reference training, so that the module's wall time is about two rounds of process start-up and training.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import distribute_worker as worker
import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import MultiTaskModel, Task, TrainingBackup, fit_distributed
from mtl_keras.distribute import get_strategy, local_cluster, read_tf_config, split_cpu
from mtl_keras.training import backup as backup_module
from mtl_keras.training.callbacks import MeanRelativeValidationLoss

WORKER = Path(worker.__file__)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
TIMEOUT = 600
ATOL = 1e-5


# --- choosing a strategy ---------------------------------------------------------------------------------------------
def test_named_strategies():
    assert get_strategy("none") is tf.distribute.get_strategy()
    assert get_strategy("default") is tf.distribute.get_strategy()
    assert get_strategy(None) is tf.distribute.get_strategy()
    strategy = tf.distribute.get_strategy()
    assert get_strategy(strategy) is strategy
    with pytest.raises(ValueError, match="Unknown strategy 'ring'.*none, default, mirrored, multi_worker, auto"):
        get_strategy("ring")
    with pytest.raises(ValueError, match="only 'mirrored' takes a device list"):
        get_strategy("none:/cpu:0")
    with pytest.raises(ValueError, match=r"no device \['/cpu:7'\].*split_cpu"):
        get_strategy("mirrored:/cpu:0,/cpu:7")


def test_auto_is_the_default_strategy_without_gpus_or_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if len(tf.config.list_physical_devices("GPU")) < 2:
        assert get_strategy("auto") is tf.distribute.get_strategy()


@pytest.mark.parametrize("config, message", [
    (None, "needs the TF_CONFIG environment variable, which is not set"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "no cluster of workers"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "'host:port' strings"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', "task must name this process's role"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "from 0 to 1"),
])
def test_multi_worker_needs_a_valid_tf_config(monkeypatch, config, message):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", config)
    with pytest.raises(ValueError, match=message):
        get_strategy("multi_worker")  # the check comes before any strategy is created


def test_local_cluster_gives_each_worker_its_place_on_free_ports():
    configs = [read_tf_config(config) for config in local_cluster(3)]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 3 and all(address.startswith("127.0.0.1:") for address in addresses)
    assert [config["task"] for config in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(config["cluster"] == configs[0]["cluster"] for config in configs)


def test_split_cpu_after_tensorflow_started_says_so():
    tf.config.list_logical_devices()  # TensorFlow's devices exist from here on (conftest split the CPU in two)
    assert len(split_cpu(2)) == 2  # the configuration already in place: nothing to do
    with pytest.raises(RuntimeError, match=r"split_cpu\(3\) must run before TensorFlow initialises its devices"):
        split_cpu(3)


def test_cli_passes_strategy_and_backup_to_the_job(tmp_path):
    from mtl_keras.cli import _job_from_args, _parser

    args = _parser().parse_args(["train", "text", "--strategy", "none", "--backup-dir", str(tmp_path),
                                 "--backup-every", "50"])
    job = _job_from_args(args)
    assert (job.config.strategy, job.config.backup_dir, job.config.backup_every) == ("none", str(tmp_path), 50)
    backup = job.backup([Task("a", "binary"), Task("b", "binary")])
    assert backup.directory == tmp_path / "multitask"
    assert backup.settings["learning_rate"] == 1e-3 and [t["name"] for t in backup.settings["tasks"]] == ["a", "b"]
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "text", "--strategy", "ring"])


# --- our loop against Keras' fit, in this process --------------------------------------------------------------------
RNG = np.random.default_rng(3)
X = RNG.normal(size=(32, 4)).astype("float32")
Y = {"a": (X @ RNG.normal(size=(4, 1))).astype("float32"), "b": (X @ RNG.normal(size=(4, 1))).astype("float32")}


def _numeric_data(shuffle: bool) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((X, Y))
    return (data.shuffle(32, seed=5, reshuffle_each_iteration=True) if shuffle else data).batch(8)


def _numeric_model(gradient=None, strategy=None) -> keras.Model:
    with (strategy or tf.distribute.get_strategy()).scope():
        keras.utils.set_random_seed(11)
        inputs = keras.Input((4,))
        trunk = keras.layers.Dense(4, activation="tanh", name="trunk")(inputs)
        model = MultiTaskModel(inputs, {name: keras.layers.Dense(1, name=name)(trunk) for name in ("a", "b")})
        model.compile(keras.optimizers.Adam(0.05), loss={"a": "mse", "b": "mse"},
                      metrics={"a": ["mae"], "b": ["mae"]}, gradient=gradient)
    return model


def _callbacks():
    return [MeanRelativeValidationLoss(["a", "b"]),
            keras.callbacks.EarlyStopping(monitor="val_mean_relative_loss", mode="min", patience=1,
                                          restore_best_weights=True)]


def _assert_same_training(expected, actual, atol=ATOL):
    (expected_weights, expected_history), (actual_weights, actual_history) = expected, actual
    for want, got in zip(expected_weights, actual_weights, strict=True):
        np.testing.assert_allclose(got, want, atol=atol)
    assert sorted(actual_history) == sorted(expected_history)
    for key, values in expected_history.items():
        np.testing.assert_allclose(actual_history[key], values, atol=max(atol, 1e-4), err_msg=key)


def _fit(model, loop, shuffle=True, epochs=4, **kwargs):
    history = model.fit(_numeric_data(shuffle), validation_data=_numeric_data(False), epochs=epochs, verbose=0,
                        callbacks=_callbacks(), loop=loop, **kwargs)
    return model.get_weights(), history.history


EPOCHS = 6  # the trainings below are killed in epoch 3 (or 2) and resumed


@functools.cache
def _one_device(gradient, loop):
    """The one-device training (Keras' fit or our loop) that several tests compare with, trained once."""
    return _fit(_numeric_model(gradient), loop, epochs=EPOCHS)


@pytest.mark.smoke
@pytest.mark.parametrize("gradient", [None, "pcgrad"])
def test_our_loop_matches_keras_fit_on_one_device(gradient):
    """Shuffled data, validation, early stopping with the best weights restored: the same weights and logs."""
    ours = _one_device(gradient, "custom")
    _assert_same_training(_one_device(gradient, "keras"), ours)
    assert "val_mean_relative_loss" in ours[1]
    assert len(ours[1]["loss"]) == EPOCHS


@pytest.mark.smoke
def test_keras_fit_under_mirrored_strategy_trains_as_one_device(two_replicas):
    """Shuffled, each epoch in a new order: Keras' fit under two replicas takes one device's batches. (Keras builds
    a distributed model from a batch it draws, which starts an extra pass of the dataset: every epoch then got the
    next epoch's order. MultiTaskModel builds from the dataset's element spec instead.)"""
    _assert_same_training(_one_device(None, "keras"), _fit(_numeric_model(None, two_replicas), "keras", epochs=EPOCHS))


def test_our_loop_under_mirrored_strategy_trains_as_one_device(two_replicas):
    """Shuffled, with PCGrad: the weights and logs of Keras' fit on one device; the epoch logs are the metrics over
    both replicas' examples (not a mean of per-replica values)."""
    _assert_same_training(_one_device("pcgrad", "keras"),
                          _fit(_numeric_model("pcgrad", two_replicas), "custom", epochs=EPOCHS))


def test_fit_distributed_refuses_arrays_and_uncompiled_models():
    model = _numeric_model()
    with pytest.raises(TypeError, match="takes x as a tf.data.Dataset"):
        fit_distributed(model, X)
    with pytest.raises(TypeError, match=r"not \['batch_size'\]"):
        fit_distributed(model, _numeric_data(False), batch_size=8)
    with pytest.raises(ValueError, match="loop must be"):
        model.fit(_numeric_data(False), loop="fast")


# --- backups, in this process ----------------------------------------------------------------------------------------
class _Interrupt(keras.callbacks.Callback):
    """Raises at a given batch of a given epoch (0-based), as a crash would stop the training there."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt("killed")


@pytest.mark.parametrize("save_every, at, resume, gradient", [(None, (2, 1), (2, 0), "pcgrad"),
                                                              (2, (2, 2), (2, 2), "pcgrad"),
                                                              (1, (1, 3), (1, 3), "pcgrad"),
                                                              (2, (2, 2), (2, 2), "moco")])  # with tracked state
def test_interrupted_training_resumes_to_the_same_end(tmp_path, save_every, at, resume, gradient):
    """Killed in epoch 3 (or at the end of an epoch), started again: the same weights, History, and early stopping
    as an uninterrupted training, from the epoch's start (epoch-end backups) or from the batch (save_every); a
    gradient method's state (MoCo's tracked gradients and weights) is in the backup too."""
    backup = TrainingBackup(tmp_path / "backup", save_every=save_every)
    model = _numeric_model(gradient)
    with pytest.raises(KeyboardInterrupt):
        model.fit(_numeric_data(True), validation_data=_numeric_data(False), epochs=EPOCHS, verbose=0,
                  callbacks=[*_callbacks(), _Interrupt(*at)], backup=backup)
    state = json.loads((backup.latest() / "state.json").read_text())
    assert (state["resume"]["epoch"], state["resume"]["batch"]) == resume
    resumed = _fit(_numeric_model(gradient), "auto", epochs=EPOCHS, backup=backup)
    _assert_same_training(_one_device(gradient, "custom"), resumed)


def test_a_kill_while_saving_leaves_the_previous_backup_and_another_model_is_refused(tmp_path, monkeypatch):
    directory = tmp_path / "backup"
    model = _numeric_model()
    model.fit(_numeric_data(True), epochs=1, verbose=0, backup=TrainingBackup(directory))
    first = [w.copy() for w in model.get_weights()]
    assert (directory / "latest").read_text().strip() == "backup-000001"

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed while saving")

    for stage in ("savez", "replace"):  # while the arrays are written; after the folder is complete, before `latest`
        with monkeypatch.context() as patch:
            patch.setattr(backup_module.np if stage == "savez" else backup_module.os, stage, die)
            with pytest.raises(KeyboardInterrupt):
                model.fit(_numeric_data(True), epochs=2, verbose=0, backup=TrainingBackup(directory))
        assert (directory / "latest").read_text().strip() == "backup-000001"
        fresh = _numeric_model()
        point = TrainingBackup(directory).restore(fresh)
        assert point.epoch == 1
        for want, got in zip(first, fresh.get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    assert not list(directory.glob(".backup-*.partial-*"))  # the interrupted write cleaned up after itself
    model.fit(_numeric_data(True), epochs=2, verbose=0, backup=TrainingBackup(directory))  # and saving goes on
    assert (directory / "latest").read_text().strip() == "backup-000003"
    assert sorted(p.name for p in directory.glob("backup-*")) == ["backup-000003"]
    # The backup of this model is refused to another one.
    inputs = keras.Input((4,))
    other = MultiTaskModel(inputs, {"a": keras.layers.Dense(1, name="a")(inputs)})
    other.compile("adam", loss={"a": "mse"})
    with pytest.raises(RuntimeError, match="written by another model"):
        other.fit(_numeric_data(False).map(lambda x, y: (x, {"a": y["a"]})), epochs=1, verbose=0,
                  backup=TrainingBackup(directory))


# --- separate processes: two workers, kills and restarts -------------------------------------------------------------
def _start(out: Path, *args: str, tf_config: str | None = None) -> subprocess.Popen:
    env = dict(ENV)
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = tf_config
    return subprocess.Popen([sys.executable, str(WORKER), "--out", str(out), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _cluster(out: Path, *args: str) -> list[subprocess.Popen]:
    return [_start(out, "--strategy", "multi_worker", *args, tf_config=config) for config in local_cluster(2)]


def _finish(processes: dict[str, list[subprocess.Popen]]) -> dict[str, list[tuple[int, str]]]:
    results = {}
    try:
        for name, group in processes.items():
            outputs = [process.communicate(timeout=TIMEOUT)[0][-4000:] for process in group]
            results[name] = [(process.returncode, output) for process, output in zip(group, outputs, strict=True)]
    finally:  # a worker that hangs (its peer died, say) must not outlive the test
        for process in (process for group in processes.values() for process in group):
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every subprocess training of the module, in two rounds of concurrent processes, and the reference: one
    process (Keras' fit, no strategy) on the same global batches.

    Round 1: two workers train with PCGrad, then with static weights until they are killed after batch 3 of epoch
    2 (the last backup: after batch 2). Round 2: they start again and finish the static training from their backups.
    (One process killed and resumed without a strategy is notebook 05's section 3, which asserts the same.)"""
    root = tmp_path_factory.mktemp("distribute")
    backup = ("--save-every", "2")
    workers = ("--gradients", "pcgrad,static", "--backup", str(root / "workers-backup"), *backup)
    first = {"workers": _cluster(root / "workers", *workers, "--exit-at", "1:2")}
    reference = {}
    for gradient in ("static", "pcgrad"):
        texts, tasks, train, validation = worker.data()
        model = worker.build(texts, tasks, gradient)
        history = model.fit(train, validation_data=validation, epochs=worker.EPOCHS, verbose=0)
        reference[gradient] = (model.get_weights(), history.history)
    results = {f"killed_{name}": outcome for name, outcome in _finish(first).items()}
    second = {"workers": _cluster(root / "workers", "--gradients", "static", *workers[2:])}
    results.update({f"resumed_{name}": outcome for name, outcome in _finish(second).items()})
    return root, reference, results


def _outcome(root: Path, folder: str, gradient: str, name: str):
    weights = np.load(root / folder / f"{gradient}-{name}.npz")
    history = json.loads((root / folder / f"{gradient}-{name}.json").read_text())
    return [weights[f"arr_{i}"] for i in range(len(weights.files))], history


def _assert_exits(results, name, code):
    for returncode, output in results[name]:
        assert returncode == code, f"{name}: exit {returncode}, expected {code}:\n{output}"


def test_two_workers_train_as_one_process(runs):
    """PCGrad on two workers, uninterrupted (static weights: the next test, through a kill)."""
    root, reference, results = runs
    _assert_exits(results, "killed_workers", worker.EXIT_CODE)  # after the PCGrad training, in the static one
    first, second = (_outcome(root, "workers", "pcgrad", f"worker{i}") for i in (0, 1))
    for a, b in zip(first[0], second[0], strict=True):
        np.testing.assert_array_equal(a, b)  # the workers hold one model
    assert first[1] == second[1]  # and log the same numbers: the metrics over both workers' examples
    _assert_same_training(reference["pcgrad"], first)


def test_killed_workers_resume_from_the_chiefs_backup(runs):
    root, reference, results = runs
    _assert_exits(results, "killed_workers", worker.EXIT_CODE)
    _assert_exits(results, "resumed_workers", 0)
    backups = root / "workers-backup" / "static"
    assert sorted(path.name for path in backups.iterdir()) == ["backup-000004", "latest"]  # saves 1-3, killed, 4
    for name in ("worker0", "worker1"):
        _assert_same_training(reference["static"], _outcome(root, "workers", "static", name))
