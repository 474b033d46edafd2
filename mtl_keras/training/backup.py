"""`TrainingBackup`: a training's whole state on disk, written atomically, to resume after the process is killed.

`mtl_keras.training.loop.fit_distributed(..., backup=TrainingBackup(directory))` saves at the end of every epoch
(and every `save_every` batches, if given) and, when started again with the same directory, resumes where the newest
backup left off. What a backup holds:

- the model's variables (`model.variables`: weights, the loss weighting's state, the balancing monitor's sums,
  random-seed states such as dropout's), the optimizer's variables (step count, moments, learning rate) and the
  metric accumulators (so that a resumed epoch logs what an uninterrupted one would);
- where training stands: the next epoch, the batches of it already done, whether early stopping asked to stop;
- the settings the training was started with (`settings=`, a JSON-able dict such as a job's learning rate, loss
  weighting and model options): a training started with other settings is refused (`BackupSettingsError`, listing
  each setting that differs), since it would go on from the optimizer state and weights of the old ones;
- the History so far and the state of the callbacks that have one: `keras.callbacks.EarlyStopping` (best value and
  weights, patience count), `keras.callbacks.ReduceLROnPlateau`, and any callback with `backup_state()` (a
  JSON-able dict) and `restore_backup_state(state)` (`MeanRelativeValidationLoss`, `StopOnNonFiniteLoss`).

The data order is resumed by the loop, not stored: epoch `e` draws the iterator of the training dataset that
Keras' `fit` on one device would draw for it, discarding those of the epochs done, and skips the batches of the
epoch already trained on. A seeded `shuffle(..., reshuffle_each_iteration=True)` (as `make_dataset` builds, after
`set_global_seed`: the order also depends on TensorFlow's global seed) gives the same order for the same draw in any
process, so a killed and resumed training ends with the same weights as an uninterrupted one. An unseeded shuffle
or a nondeterministic pipeline still resumes, on other batches.

On disk, `directory/latest` names the newest complete backup (`directory/backup-000007/`: `state.json` and
`arrays.npz`). A backup is written to a temporary folder, flushed, renamed into place, and only then does `latest`
(itself replaced atomically, by rename) point to it; the previous backup is deleted after that. A kill at any
moment therefore leaves `latest` naming a complete backup (the new one or the previous one), never a torn one.

Under `MultiWorkerMirroredStrategy` only the chief writes, and every worker reads the same `directory` when it
starts again, so the directory must be on storage all workers see (a shared file system); the workers check that
they resume from the same point.

Example:

>>> import tempfile
>>> backup = TrainingBackup(tempfile.mkdtemp(), save_every=10)
>>> backup.latest() is None                 # nothing saved yet: a training starts from the beginning
True
>>> # model.fit(train, epochs=5, backup=backup)   # killed? the same call, in a new process, resumes
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.atomic_write import atomic_directory, atomic_file, flush_to_disk, sync_directory
from mtl_keras.distribute import is_chief, is_multi_worker

FORMAT = 2


@dataclass
class ResumePoint:
    """Where a restored training goes on: `epoch` (0-based), `batch` (batches of it already done), `stopped`."""

    epoch: int
    batch: int = 0
    stopped: bool = False


class BackupSettingsError(ValueError):
    """A backup was made with other settings than the training about to resume from it."""


class TrainingBackup:
    """A directory of training backups (see the module docstring).

    Args:
        directory: where the backups live; created when the first one is written. One directory per training.
        save_every: also save every `save_every` training batches (None: at the end of each epoch only).
        keep: complete backups kept (at least 1; the newest ones).
        settings: what the training was started with (a JSON-able dict), recorded in each backup; resuming from a
            backup that recorded other settings raises `BackupSettingsError` (None: nothing recorded or checked).
    """

    def __init__(self, directory: str | os.PathLike, save_every: int | None = None, keep: int = 1,
                 settings: dict | None = None):
        if save_every is not None and (isinstance(save_every, bool) or not isinstance(save_every, int)
                                       or save_every < 1):
            raise ValueError(f"save_every must be a positive number of batches or None, got {save_every!r}.")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a positive integer, got {keep!r}.")
        self.directory = Path(directory)
        self.save_every = save_every
        self.keep = keep
        # JSON's view of the settings (tuples become lists), as they will read back from a backup.
        self.settings = None if settings is None else json.loads(json.dumps(settings))
        self.restored_from: Path | None = None  # the backup the last `restore` put back, if any
        self._pending: dict | None = None  # the state a mid-epoch resume still has to put back

    def __repr__(self) -> str:
        return f"TrainingBackup({str(self.directory)!r}, save_every={self.save_every})"

    # --- reading --------------------------------------------------------------------------------------------------
    def latest(self) -> Path | None:
        """The newest complete backup's folder, or None."""
        pointer = self.directory / "latest"
        if not pointer.is_file():
            return None
        folder = self.directory / pointer.read_text().strip()
        if not (folder / "state.json").is_file():
            raise RuntimeError(f"{pointer} names {folder.name}, which is incomplete; the backup directory was changed "
                               f"by something other than TrainingBackup.")
        return folder

    def check_settings(self) -> None:
        """Raises `BackupSettingsError` if the newest backup recorded other settings than this training's, listing
        each one that differs (nothing to check without a backup, or without settings on either side)."""
        folder = self.latest()
        if folder is None or self.settings is None:
            return
        recorded = json.loads((folder / "state.json").read_text()).get("settings")
        if recorded is None:
            return
        differences = [f"{key}: {_shown(recorded.get(key, '(not set)'))} in the backup, "
                       f"{_shown(self.settings.get(key, '(not set)'))} now"
                       for key in sorted(set(recorded) | set(self.settings))
                       if recorded.get(key, "(not set)") != self.settings.get(key, "(not set)")]
        if differences:
            raise BackupSettingsError(
                f"The backup in {self.directory} was made with other settings than this training's, so it cannot "
                f"resume from it: " + "; ".join(differences) + f". Run again with the backup's settings to resume, "
                f"or delete {self.directory} (or choose another backup directory) to start fresh.")

    def restore(self, model: keras.Model, callbacks=None) -> ResumePoint | None:
        """Puts the newest backup's state back into `model`, its optimizer and `callbacks` (a `CallbackList` or a
        list, after their `on_train_begin`; None: the model's state only); returns where training goes on, or None
        when there is no backup."""
        self.restored_from = None
        folder = self.latest()
        if folder is None:
            return None
        self.check_settings()
        state = json.loads((folder / "state.json").read_text())
        if state.get("format") != FORMAT:
            raise RuntimeError(f"{folder} was written by another version of TrainingBackup (format "
                               f"{state.get('format')!r}, expected {FORMAT}).")
        with np.load(folder / "arrays.npz") as stored:
            arrays = {key: stored[key] for key in stored.files}
        with model.distribute_strategy.scope():
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None and not optimizer.built:
                optimizer.build(model.trainable_variables)
            for group, variables in _variable_groups(model).items():
                if group == "metrics" and not all(getattr(metric, "built", True) for metric in model.metrics):
                    continue  # not built yet (fit_distributed builds them first): a fresh epoch resets them anyway
                _assign(variables, _stacked(arrays, group, state["counts"][group]), group, folder,
                        model.distribute_strategy)
        if callbacks is not None:
            _restore_callbacks(_callback_list(callbacks), state["callbacks"], arrays)
        point = ResumePoint(**state["resume"])
        self.restored_from = folder
        self._pending = {"arrays": arrays, "state": state} if point.batch else None
        return point

    def restore_epoch_state(self, model: keras.Model) -> None:
        """For a resume in the middle of an epoch, after the epoch's start (which resets metrics and the epoch's
        running means): puts the metric accumulators and model variables of the backup back once more."""
        if self._pending is None:
            return
        arrays, counts = self._pending["arrays"], self._pending["state"]["counts"]
        groups = _variable_groups(model)
        with model.distribute_strategy.scope():
            for group in ("model", "metrics"):
                _assign(groups[group], _stacked(arrays, group, counts[group]), group, self.directory,
                        model.distribute_strategy)
        self._pending = None

    # --- writing --------------------------------------------------------------------------------------------------
    def due(self, batches_done: int) -> bool:
        """Whether a mid-epoch backup is due after `batches_done` batches of the epoch."""
        return self.save_every is not None and batches_done % self.save_every == 0

    def save(self, model: keras.Model, callbacks, resume: ResumePoint) -> Path | None:
        """Writes a backup from which training goes on at `resume`; returns its folder (None on a worker that is
        not the chief: every worker reads the values, in the same order, since reading a metric's sync-on-read
        variable is an all-reduce that every worker must join; only the chief writes)."""
        arrays, counts = {}, {}
        for group, variables in _variable_groups(model).items():
            counts[group] = len(variables)
            arrays.update({f"{group}/{i}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(variables)})
        if not is_chief(model.distribute_strategy):
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        callback_states = []
        for key, callback in _keyed(_callback_list(callbacks)).items():
            found = _callback_state(callback)
            if found is None:
                continue
            state, callback_arrays = found
            callback_states.append({"key": key, "state": state,
                                    "arrays": {name: len(values) for name, values in callback_arrays.items()}})
            for name, values in callback_arrays.items():
                arrays.update({f"callbacks/{key}/{name}/{i}": np.asarray(v) for i, v in enumerate(values)})
        state = {"format": FORMAT, "resume": vars(resume), "counts": counts, "callbacks": callback_states,
                 "settings": self.settings}
        return self._write(state, arrays)

    def _write(self, state: dict, arrays: dict[str, np.ndarray]) -> Path:
        number = self._next_number()
        name = f"backup-{number:06d}"
        with atomic_directory(self.directory / name) as staging:
            with open(staging / "arrays.npz", "wb") as file:
                np.savez(file, **arrays)
                flush_to_disk(file)
            with open(staging / "state.json", "w") as file:  # written last: a folder with it is complete
                json.dump(state, file)
                flush_to_disk(file)
        with atomic_file(self.directory / "latest", "w") as file:
            file.write(name + "\n")  # the rename is the moment the new backup becomes the one to resume from
        sync_directory(self.directory)
        self._prune(keep={name})
        return self.directory / name

    def _backups(self) -> list[Path]:
        return sorted(self.directory.glob("backup-[0-9]*"))

    def _next_number(self) -> int:
        numbers = [int(folder.name.split("-")[1]) for folder in self._backups()]
        return max(numbers, default=0) + 1

    def _prune(self, keep: set[str]) -> None:
        """Deletes older backups beyond `self.keep` and the leftovers of interrupted writes."""
        complete = [folder for folder in self._backups() if folder.name not in keep]
        for folder in complete[:max(0, len(complete) - (self.keep - len(keep)))]:
            shutil.rmtree(folder, ignore_errors=True)
        for leftover in self.directory.glob(".backup-*.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.directory.glob(".latest.*"):
            leftover.unlink(missing_ok=True)

    def delete(self) -> None:
        """Removes the backup directory (e.g. once the training's results are safely written elsewhere)."""
        shutil.rmtree(self.directory, ignore_errors=True)


# --- what is saved ------------------------------------------------------------------------------------------------
def _variable_groups(model: keras.Model) -> dict[str, list]:
    optimizer = getattr(model, "optimizer", None)
    return {"model": list(model.variables),
            "optimizer": list(optimizer.variables) if optimizer is not None else [],
            "metrics": list(model.metrics_variables)}


def _stacked(arrays: dict[str, np.ndarray], group: str, count: int) -> list[np.ndarray]:
    return [arrays[f"{group}/{i}"] for i in range(count)]


def _assign(variables: list, values: list[np.ndarray], group: str, folder: Path, strategy=None) -> None:
    if len(variables) != len(values):
        raise RuntimeError(f"The backup in {folder} holds {len(values)} {group} variables and this training has "
                           f"{len(variables)}: it was written by another model or optimizer; use another backup "
                           f"directory (or delete this one) to train from the beginning.")
    for variable, value in zip(variables, values, strict=True):
        if tuple(variable.shape) != tuple(value.shape):
            raise RuntimeError(f"The backup in {folder} holds a {group} variable of shape {tuple(value.shape)} where "
                               f"this training's {variable.path!r} has shape {tuple(variable.shape)}: it was written "
                               f"by another model; use another backup directory to train from the beginning.")
        if strategy is not None and is_multi_worker(strategy) and _is_sync_on_read_sum(variable):
            _assign_global_sum(variable, value, strategy)
        else:
            variable.assign(value)


def _is_sync_on_read_sum(variable) -> bool:
    value = getattr(variable, "value", variable)
    return (isinstance(value, tf.distribute.DistributedValues)
            and value.synchronization == tf.VariableSynchronization.ON_READ
            and value.aggregation == tf.VariableAggregation.SUM)


def _assign_global_sum(variable, total: np.ndarray, strategy) -> None:
    """A metric's accumulator (sync-on-read, summed over every replica of every worker when read) takes `total`
    (saved as read: the global sum) on the chief's first replica and zero on the others, so that the next read
    gives `total` again. (A plain assign would give every worker's replicas their share of `total` once per
    worker.)"""
    for index, component in enumerate(strategy.experimental_local_results(variable.value)):
        component.assign(total if index == 0 and is_chief(strategy) else np.zeros_like(total))


def _callback_list(callbacks) -> list:
    return list(getattr(callbacks, "callbacks", callbacks) or [])


def _callback_state(callback) -> tuple[dict, dict[str, list]] | None:
    """A callback's state as (JSON-able dict, named lists of arrays), or None for a callback with none we know."""
    if hasattr(callback, "backup_state") and hasattr(callback, "restore_backup_state"):
        return callback.backup_state(), {}
    if isinstance(callback, keras.callbacks.History):
        return {"epoch": list(callback.epoch), "history": _jsonable(callback.history)}, {}
    if isinstance(callback, keras.callbacks.EarlyStopping):
        state = {"wait": callback.wait, "stopped_epoch": callback.stopped_epoch, "best": _jsonable(callback.best),
                 "best_epoch": callback.best_epoch, "has_best_weights": callback.best_weights is not None}
        return state, {"best_weights": list(callback.best_weights or [])}
    if isinstance(callback, keras.callbacks.ReduceLROnPlateau):
        return {"wait": callback.wait, "cooldown_counter": callback.cooldown_counter,
                "best": _jsonable(callback.best)}, {}
    return None


def _keyed(callbacks: list) -> dict:
    """Callbacks by class name and rank among those of their class ("EarlyStopping/0"), so that a state finds its
    callback again however many stateless callbacks come and go around it."""
    keyed, seen = {}, {}
    for callback in callbacks:
        name = type(callback).__name__
        keyed[f"{name}/{seen.get(name, 0)}"] = callback
        seen[name] = seen.get(name, 0) + 1
    return keyed


def _restore_callbacks(callbacks: list, states: list[dict], arrays: dict[str, np.ndarray]) -> None:
    """Puts each saved state back into the callback of the same class and rank; a state whose callback is gone is
    left out, and a callback without a saved state keeps its fresh one."""
    keyed = _keyed(callbacks)
    for saved in states:
        key = saved["key"]
        if key not in keyed:
            continue
        callback, state = keyed[key], saved["state"]
        lists = {name: [arrays[f"callbacks/{key}/{name}/{i}"] for i in range(count)]
                 for name, count in saved["arrays"].items()}
        if hasattr(callback, "restore_backup_state"):
            callback.restore_backup_state(state)
        elif isinstance(callback, keras.callbacks.History):
            callback.epoch = list(state["epoch"])
            callback.history = {key: list(values) for key, values in state["history"].items()}
        elif isinstance(callback, keras.callbacks.EarlyStopping):
            callback.wait, callback.stopped_epoch = state["wait"], state["stopped_epoch"]
            callback.best, callback.best_epoch = state["best"], state["best_epoch"]
            callback.best_weights = lists["best_weights"] if state["has_best_weights"] else None
        elif isinstance(callback, keras.callbacks.ReduceLROnPlateau):
            callback.wait, callback.cooldown_counter, callback.best = (state["wait"], state["cooldown_counter"],
                                                                       state["best"])


def _shown(value) -> str:
    """A setting as the refusal shows it: short values whole, long ones (a task list) cut."""
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if hasattr(value, "numpy"):
        return np.asarray(value).tolist()
    return value


