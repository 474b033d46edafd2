"""What every job shares: training with guards, test metrics, single-task baselines and Δm, the run folder.

A run folder holds:

- `saved_model/`: a SavedModel serving raw inputs and returning every task;
- `model.keras`: the Keras model;
- `metrics.json`: per-task test (and validation) metrics, and with baselines the single-task metrics and Δm;
- `history.json`: the per-epoch training logs (of the multi-task model and of each baseline);
- `config.json`: the job, its settings and the tasks, enough for `mtl-keras evaluate` to rebuild the test split.

The folder is written to a temporary place and moved into position only when complete, so a failed or diverged run
never leaves a half-written folder nor damages an earlier one.

Training runs under `config.strategy` (`mtl_keras.distribute.get_strategy`: models, optimizers and metrics are
created in its scope); under a multi-worker strategy every worker trains (our loop, `mtl_keras.training.loop`),
evaluates a copy of the model on its own device, and only the chief writes the run folder. With
`config.backup_dir`, each training backs up as it goes (`mtl_keras.training.backup`) and a run started again after
a kill resumes where its backup left off; the backups are removed once the run folder is written.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import shutil
import sys
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from mtl_keras import __version__
from mtl_keras.atomic_write import atomic_directory
from mtl_keras.datasets.splits import Split, Splits
from mtl_keras.distribute import get_strategy, is_chief, is_multi_worker
from mtl_keras.evaluation import compute_metrics, delta_m, task_deltas
from mtl_keras.export import export_saved_model
from mtl_keras.precision import loss_scaled, mixed_precision
from mtl_keras.seeds import DEFAULT_SEED, set_global_seed
from mtl_keras.sharing import check_sharing_options
from mtl_keras.tasks import Task, as_task_dict
from mtl_keras.training.backup import TrainingBackup
from mtl_keras.training.callbacks import MeanRelativeValidationLoss, NonFiniteLossError, StopOnNonFiniteLoss
from mtl_keras.training.compile import compile_multitask, resolve_loss_weights
from mtl_keras.training.gradients import get_gradient_method
from mtl_keras.training.weighting import get_weighting


@dataclasses.dataclass
class JobConfig:
    """Settings every job has; a job's own config adds to them."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 2
    seed: int = DEFAULT_SEED
    limit: int | None = None
    train_limit: int | None = None  # train on a seeded random N of the training split; validation and test whole
    standardize_targets: bool = False  # regression tasks train on standardized targets (Task.standardize_target)
    balance_classes: bool = False  # classification tasks weigh classes n / (k n_c): Task(class_weight="balanced")
    loss_weights: dict[str, float] | None = None
    weighting: str = "static"
    weighting_options: dict[str, Any] | None = None
    gradient: str | None = None
    gradient_options: dict[str, Any] | None = None
    baselines: bool = False
    mixed_precision: bool = False  # mixed_float16 on a GPU, mixed_bfloat16 on CPUs (mtl_keras.precision)
    strategy: str = "none"  # none, mirrored[:DEVICE,...], multi_worker (TF_CONFIG), auto: mtl_keras.distribute
    backup_dir: str | None = None  # back training up here; a restarted run resumes from it (training/backup.py)
    backup_every: int | None = None  # batches between backups, beside the one at each epoch's end


@dataclasses.dataclass
class BackboneConfig:
    """A pretrained trunk and how it is fine-tuned (text and vision jobs; see `mtl_keras.backbones`)."""

    freeze_backbone_epochs: int | None = None  # keep a pretrained backbone frozen this long (-1: throughout)
    unfreeze_from: str | None = None  # the backbone's first layer to train once unfrozen
    lora_rank: int | None = None  # keras-hub LoRA on the backbone's attention instead of fine-tuning it whole
    backbone_learning_rate_multiplier: float = 1.0  # the backbone's learning rate over the heads'

    def fine_tuning(self) -> dict[str, Any]:
        """The builders' fine-tuning arguments."""
        epochs = self.freeze_backbone_epochs
        return {"freeze_backbone": True if epochs == -1 else (epochs or False), "unfreeze_from": self.unfreeze_from,
                "lora_rank": self.lora_rank,
                "backbone_learning_rate_multiplier": self.backbone_learning_rate_multiplier}

    def check_fine_tuning(self, job: str, pretrained: bool) -> None:
        """Refuses fine-tuning options without a pretrained backbone, before any data is loaded."""
        if not pretrained:
            from mtl_keras.backbones import check_no_fine_tuning
            check_no_fine_tuning(f"mtl-keras train {job}", **self.fine_tuning())


# Settings that a resumed training may change: they do not alter the state a backup restores.
RESUMABLE_CHANGES = ("backup_dir", "backup_every", "strategy", "baselines")


def with_job_data_options(splits: Splits, config: JobConfig) -> Splits:
    """The splits as the job's options ask: a training split of `train_limit` examples (a seeded random sample of
    it; validation and test unchanged), tasks with standardized regression targets (`standardize_targets`), tasks
    whose classes are weighed by their frequency (`balance_classes`: every task with classes that has no
    class_weight of its own; one whose loss cannot take it is refused by `Task`, naming it)."""
    if config.train_limit is not None and config.train_limit < len(splits.train):
        splits = dataclasses.replace(splits, train=splits.train.sample(config.train_limit, config.seed))
    if config.standardize_targets:
        splits = dataclasses.replace(splits, tasks=[
            dataclasses.replace(task, standardize_target=task.standardize_target or True)
            if task.spec.continuous_labels else task for task in splits.tasks])
    if config.balance_classes:
        splits = dataclasses.replace(splits, tasks=[
            dataclasses.replace(task, class_weight="balanced")
            if task.spec.class_weighting and task.class_weight is None else task for task in splits.tasks])
    return splits


class RunFolderError(ValueError):
    """A run folder that is incomplete or damaged; the message names the file and what to do."""


def check_job_config(config: JobConfig) -> None:
    """Refuses settings that would train nothing or make no sense, naming the option, before any data is loaded."""
    why = {"epochs": " (0 epochs would write a run folder of an untrained model)", "batch_size": ""}
    for name, reason in why.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}{reason}.")
    if isinstance(config.patience, bool) or not isinstance(config.patience, int) or config.patience < 0:
        raise ValueError(f"patience must be a whole number >= 0, got {config.patience!r}.")
    if not isinstance(config.learning_rate, int | float) or not 0 < config.learning_rate < float("inf"):
        raise ValueError(f"--learning-rate must be a finite number > 0, got {config.learning_rate!r}.")
    for name in ("limit", "train_limit"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}.")
    if config.backup_every is not None and not config.backup_dir:
        raise ValueError("--backup-every needs --backup-dir (where the backups go).")
    if isinstance(getattr(config, "sharing", None), str):  # a job of several sharings (text, census, vision)
        # (a job whose sharings are not the dense layers of mtl_keras.sharing says how it checks them)
        check = getattr(type(config), "check_sharing", check_sharing_options)
        check(config.sharing, getattr(config, "sharing_options", None))


def check_splits_not_empty(splits: Splits, limit: int | None = None) -> None:
    """Raises, naming the empty split and every split's size, when a split has no examples (e.g. a tiny --limit)."""
    sizes = {name: len(getattr(splits, name)) for name in ("train", "validation", "test")}
    empty = [name for name, size in sizes.items() if size == 0]
    if empty:
        cause = f"--limit {limit} leaves" if limit is not None else "the data leave"
        named = " and ".join([", ".join(empty[:-1]), empty[-1]] if len(empty) > 1 else empty)
        raise ValueError(f"{cause} the {named} split{'s' if len(empty) > 1 else ''} empty "
                         f"({', '.join(f'{name} {size}' for name, size in sizes.items())} examples); every split "
                         f"needs examples{': give a larger --limit' if limit is not None else ''}.")


class Job:
    """A job: how to load its data, build its model and feed it. Subclasses fill in the class attributes."""

    name: ClassVar[str]
    config_class: ClassVar[type] = JobConfig

    def __init__(self, config: JobConfig | None = None, **overrides):
        config = config or self.config_class()
        self.config = dataclasses.replace(config, **overrides)
        check_job_config(self.config)

    # --- what a job defines -------------------------------------------------------------------------------------
    def load_data(self) -> Splits:
        """The job's data as it comes; `data()` is what training, tuning and the reports use."""
        raise NotImplementedError

    def data(self) -> Splits:
        """The splits and tasks as the job's options ask (`with_job_data_options`: --train-limit,
        --standardize-targets, --balance-classes), the one way every command gets them."""
        return with_job_data_options(self.load_data(), self.config)

    def build_model(self, tasks: list[Task], splits: Splits) -> keras.Model:
        raise NotImplementedError

    def dataset(self, split: Split, tasks: list[Task], training: bool) -> tf.data.Dataset:
        raise NotImplementedError

    def model_inputs(self, inputs) -> Any:
        """Inputs as `model.predict` takes them."""
        return inputs

    # --- shared machinery ----------------------------------------------------------------------------------------
    def compile(self, model: keras.Model, tasks: list[Task], loss_weights: dict[str, float] | None = None
                ) -> keras.Model:
        """Compiles `model` with the job's optimizer and loss weights (`loss_weights`, where given, instead)."""
        given = self.config.loss_weights if loss_weights is None else loss_weights
        # A baseline has one of the job's tasks: it takes that task's weight (its scale does not matter alone).
        loss_weights = {k: v for k, v in (given or {}).items() if k in {t.name for t in tasks}}
        return compile_multitask(model, tasks, loss_weights=loss_weights,
                                 optimizer=loss_scaled(self.optimizer(), model.dtype_policy), **self.balancing(tasks))

    def balancing(self, tasks: list[Task]) -> dict[str, Any]:
        """The loss weighting and gradient method objects for a training of `tasks` (none for a single task: a
        single-task baseline trains plainly)."""
        if len(tasks) < 2:
            return {}
        return {"weighting": get_weighting(self.config.weighting, **(self.config.weighting_options or {})),
                "gradient": get_gradient_method(self.config.gradient, **(self.config.gradient_options or {}))}

    def new_model(self, tasks: list[Task], splits: Splits) -> keras.Model:
        """`build_model` under the job's dtype policy: mixed precision with `config.mixed_precision`, the global
        policy restored afterwards."""
        with mixed_precision(self.config.mixed_precision):
            return self.build_model(tasks, splits)

    def optimizer(self) -> keras.optimizers.Optimizer:
        """A fresh optimizer for one training (`compile` wraps it for loss scaling where float16 needs it)."""
        return keras.optimizers.Adam(self.config.learning_rate)

    def distribute_strategy(self) -> tf.distribute.Strategy:
        """The job's tf.distribute strategy (`config.strategy`, see `mtl_keras.distribute.get_strategy`)."""
        return get_strategy(self.config.strategy)

    def backup(self, tasks: list[Task]) -> TrainingBackup | None:
        """Where the training of `tasks` backs up to (`config.backup_dir`, one folder per model), or None."""
        if not self.config.backup_dir:
            return None
        name = "multitask" if len(tasks) > 1 else f"single-{tasks[0].name}"
        return TrainingBackup(Path(self.config.backup_dir) / name, save_every=self.config.backup_every,
                              settings=self.backup_settings(tasks))

    def backup_settings(self, tasks: list[Task]) -> dict[str, Any]:
        """What a backup records of the training it belongs to, and refuses to resume under if it differs: every
        setting of the job but where and how often it backs up, on which devices it runs, and whether baselines
        follow (which do not change a training's state), and the tasks."""
        settings = {key: value for key, value in dataclasses.asdict(self.config).items()
                    if key not in RESUMABLE_CHANGES}
        return {"job": self.name, **settings, "tasks": [task.get_config() for task in tasks]}

    def train(self, tasks: list[Task], splits: Splits, verbose: int | str = "auto",
              callbacks: list | None = None) -> tuple[keras.Model, dict]:
        """Builds, compiles and fits a model for `tasks` under the job's strategy (model, optimizer, metrics and loss
        weighting are created in its scope); returns it (best validation weights) and its history. `callbacks` run
        after the job's own (`self.callbacks(tasks)`). With `config.backup_dir`, a training killed before its end
        resumes from its backup when started again."""
        set_global_seed(self.config.seed)
        with self.distribute_strategy().scope():
            model = self.compile(self.new_model(tasks, splits), tasks)
        return model, self.fit(model, tasks, splits, verbose, callbacks=[*self.callbacks(tasks), *(callbacks or [])],
                               backup=self.backup(tasks))

    def callbacks(self, tasks: list[Task], relative_loss: MeanRelativeValidationLoss | None = None) -> list:
        """One training's callbacks: the non-finite loss guard, `val_mean_relative_loss` (as `relative_loss` computes
        it, by default relative to the first epoch) and early stopping on it, keeping the best epoch's weights."""
        return [
            StopOnNonFiniteLoss(),
            relative_loss or MeanRelativeValidationLoss([task.name for task in tasks]),
            keras.callbacks.EarlyStopping(monitor="val_mean_relative_loss", mode="min",
                                          patience=self.config.patience, restore_best_weights=True),
        ]

    def fit(self, model: keras.Model, tasks: list[Task], splits: Splits, verbose: int | str = "auto",
            callbacks: list | None = None, backup: TrainingBackup | None = None) -> dict[str, list[float]]:
        """Fits a compiled model on the training split, validated on the validation split, with `callbacks` (default
        `self.callbacks(tasks)`) and, if given, backing up to `backup` (our loop, `mtl_keras.training.loop`, as
        under a multi-worker strategy; otherwise Keras' `fit`); raises `NonFiniteLossError` if the loss diverged;
        returns the per-epoch logs."""
        callbacks = self.callbacks(tasks) if callbacks is None else callbacks
        fit = model.fit
        if backup is not None:
            from mtl_keras.training.loop import fit_distributed

            fit = functools.partial(fit_distributed, model, backup=backup)
        history = fit(
            self.dataset(splits.train, tasks, training=True),
            validation_data=self.dataset(splits.validation, tasks, training=False),
            epochs=self.config.epochs,
            shuffle=False,  # the dataset shuffles itself, with the job's seed
            verbose=verbose,
            callbacks=callbacks,
        )
        for callback in callbacks:
            if isinstance(callback, StopOnNonFiniteLoss):
                try:
                    callback.raise_if_failed()
                except NonFiniteLossError as error:
                    if backup is None:
                        raise
                    # The backup keeps the diverged state: the same command would only stop there again.
                    origin = (f"this training resumed from the backup in {backup.directory}, which holds the diverged "
                              f"state" if backup.restored_from is not None else
                              f"the backup in {backup.directory} now holds the diverged state")
                    raise NonFiniteLossError(f"{error} Note: {origin}; to start fresh, delete "
                                             f"{Path(self.config.backup_dir)} or pass another --backup-dir."
                                             ) from None
        return {key: [float(v) for v in values] for key, values in history.history.items()}

    def evaluate(self, model, tasks: list[Task] | None, split: Split) -> dict[str, dict[str, float]]:
        """Each task's metrics on `split` (`tasks` None: the tasks the model carries)."""
        tasks = list(as_task_dict(model if tasks is None else tasks).values())
        split = split.for_tasks(task.name for task in tasks)
        predictions = predict_in_batches(model, self.model_inputs(split.inputs))
        return compute_metrics(tasks, predictions, split.labels, split.masks)

    def run(self, output: str | Path | None = None, overwrite: bool = False, verbose: int | str = "auto"
            ) -> Path | None:
        """Trains the multi-task model (and baselines if asked), then writes the run folder; returns its path (None on
        a multi-worker strategy's workers other than the chief, which alone writes the folder)."""
        output = Path(output or Path("runs") / f"{self.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
        if output.exists() and not overwrite:  # checked again when writing; this saves loading data and training
            raise FileExistsError(f"{output} already exists; choose another --output or pass --overwrite.")
        splits = self.data()
        check_splits_not_empty(splits, self.config.limit)
        tasks = splits.tasks
        resolve_loss_weights(as_task_dict(tasks), self.config.loss_weights)  # bad names fail before any training
        for task_set in [tasks, *([[task] for task in tasks] if self.config.baselines else [])]:
            backup = self.backup(task_set)
            if backup is not None:
                backup.check_settings()  # a backup of other settings fails now, not after the first training
        model, history = self.train(tasks, splits, verbose)
        model = self.local_copy(model, tasks, splits)
        metrics = {"test": self.evaluate(model, model.tasks, splits.test),
                   "validation": self.evaluate(model, model.tasks, splits.validation)}
        histories = {"multitask": history}
        if self.config.baselines:
            single = {}
            for task in tasks:
                _log(f"baseline: single-task model for {task.name!r}")
                baseline, histories[task.name] = self.train([task], splits, verbose)
                baseline = self.local_copy(baseline, [task], splits)
                single[task.name] = self.evaluate(baseline, baseline.tasks, splits.test)[task.name]
            metrics["single_task_test"] = single
            try:
                metrics["task_delta_m_percent"] = task_deltas(tasks, metrics["test"], single)
                metrics["delta_m_percent"] = delta_m(tasks, metrics["test"], single)
            except ValueError as error:  # a baseline metric of 0 (e.g. a tiny run): keep the models, say why
                metrics["delta_m_error"] = str(error)
                _log(f"Δm not computed: {error}")
        if not is_chief(self.distribute_strategy()):
            return None  # the chief writes the run folder
        with atomic_directory(output, overwrite=overwrite) as folder:
            model.save(folder / "model.keras")
            export_saved_model(model, folder / "saved_model")  # the signature and masks from the model itself
            _write_json(folder / "metrics.json", metrics)
            _write_json(folder / "history.json", histories)
            self.save_extras(model, folder)
            _write_json(folder / "config.json", {
                "job": self.name,
                "config": dataclasses.asdict(self.config),
                # As trained: with what fit read from the labels ("balanced" class weights, target statistics).
                "tasks": [task.get_config() for task in model.tasks or tasks],
                "versions": {"mtl_keras": __version__, "tensorflow": tf.__version__, "keras": keras.__version__},
            })
        self.delete_backups(tasks)  # the run folder holds the results now
        return output

    def save_extras(self, model: keras.Model, folder: Path) -> None:
        """Writes what a job adds to its run folder beside the model (the text job: its trunk, for reuse)."""

    def local_copy(self, model: keras.Model, tasks: list[Task], splits: Splits) -> keras.Model:
        """`model` itself, or, when it was trained under a multi-worker strategy, the same model (weights and
        optimizer state) rebuilt on this process's device: evaluation, `model.save` and SavedModel export then run
        in each process alone, with no collective op that every worker would have to join."""
        if not is_multi_worker(self.distribute_strategy()):
            return model
        set_global_seed(self.config.seed)
        tasks = model.tasks or tasks  # with what fit read from the labels (class weights, target statistics)
        copy = self.compile(self.new_model(tasks, splits), tasks)
        copy.set_weights(model.get_weights())
        copy.optimizer.build(copy.trainable_variables)
        for target, source in zip(copy.optimizer.variables, model.optimizer.variables, strict=True):
            target.assign(source.numpy())
        return copy

    def delete_backups(self, tasks: list[Task]) -> None:
        """Removes the backups of this run's trainings (and `config.backup_dir` itself, if nothing else is left)."""
        if not self.config.backup_dir:
            return
        for task_set in [tasks, *([[task] for task in tasks] if self.config.baselines else [])]:
            self.backup(task_set).delete()
        folder = Path(self.config.backup_dir)
        if folder.is_dir() and not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)


def predict_in_batches(model, inputs, batch_size: int = 512) -> dict[str, np.ndarray]:
    """`model.predict` for a dict-output model, as NumPy arrays."""
    return {name: np.asarray(values) for name, values in model.predict(inputs, batch_size=batch_size,
                                                                        verbose=0).items()}


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _log(message: str) -> None:
    print(f"[mtl-keras] {message}", file=sys.stderr, flush=True)


def read_run(run: str | Path) -> dict:
    """A run folder's config.json, with a clear error when the folder is not a run."""
    path = Path(run) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run} is not a run folder (no config.json); pass the folder `mtl-keras train` wrote.")
    return json.loads(path.read_text())


def load_run_model(run: str | Path) -> keras.Model:
    """A run folder's `model.keras`, with a `RunFolderError` naming the file when it is missing or cannot be read."""
    path = Path(run) / "model.keras"
    if not path.is_file():
        raise RunFolderError(f"{run} has no model.keras; the run folder is incomplete: train the run again.")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras reports a truncated zip as "File not found"; say which file is damaged
        raise RunFolderError(f"{path} cannot be read as a Keras model ({type(error).__name__}: {error}); the file "
                             f"is damaged or truncated: train the run again.") from error


def load_run_saved_model(run: str | Path, allow_unsafe_ops: bool = False):
    """A run folder's `saved_model/`, after refusing a graph that writes files or runs Python code
    (`mtl_keras.saved_model_check`) unless `allow_unsafe_ops`; `RunFolderError` when it is missing or damaged."""
    from google.protobuf.message import DecodeError

    from mtl_keras.export import load_saved_model
    from mtl_keras.saved_model_check import UnsafeSavedModelError, check_saved_model_ops

    path = Path(run) / "saved_model"
    if not (path / "saved_model.pb").is_file():
        raise RunFolderError(f"{run} has no saved_model/ (no {path / 'saved_model.pb'}); the run folder is "
                             f"incomplete: train the run again.")
    try:
        if not allow_unsafe_ops:
            check_saved_model_ops(path)
        return load_saved_model(path)
    except UnsafeSavedModelError:
        raise
    except (DecodeError, OSError, ValueError, tf.errors.OpError) as error:
        raise RunFolderError(f"{path} cannot be loaded as a SavedModel ({type(error).__name__}: "
                             f"{str(error).strip()[:300]}); it is damaged: train the run again.") from error
