"""Static task weights searched with keras-tuner (grid, random or Bayesian search) on the validation split.

`search_loss_weights(job)` trains the job's model once per trial, each time with other loss weights, and ranks the
trials by one number measured on the validation split:

**The objective** (`relative_validation_loss`, lower is better) is the mean over tasks of each task's *unweighted*
validation loss divided by the same task's validation loss in the *reference trial*, the first one, which trains
with the job's own weights (all 1.0 for the text and census jobs: equal weights). Each task's loss is taken at the
epoch its training keeps (early stopping with the best weights restored). The reference scores 1.0; 0.95 means 5 %
less validation loss than the job's weights, on average over the tasks. Why this number:

- the weighted total `val_loss` that Keras reports is not comparable across trials: it changes with the weights
  themselves (doubling a task's weight doubles its share);
- the unweighted per-task losses are comparable across trials but not across tasks (a mean squared error in squared
  rating units beside cross-entropies); dividing by the reference gives each task an equal say whatever its units;
- losses rather than metrics: every task has one, they are the smooth scores the model is trained on, and they stay
  informative on a small validation split, where a thresholded metric (precision, F1) moves in steps and a metric
  of 0 in the reference leaves a relative gain undefined. Each trial's validation metrics are recorded beside it.

Inside every trial after the reference, early stopping watches this same number (the job's `val_mean_relative_loss`,
made relative to the reference instead of the trial's first epoch), so the epoch a trial keeps is the one with its
best objective. The reference itself trains exactly as `mtl-keras train` does.

**What is searched.** Only ratios of loss weights matter (the optimizer adapts to the scale of the total loss), so
one task keeps its weight: with a list of candidates, the first task keeps its weight in the job and every other task's
weight is chosen among the candidates; with a dict `{task: candidates}`, the tasks it names are searched and the
others keep theirs. Candidates are factors on a task's weight in the job, which is 1.0 unless the job says otherwise
(`loss_weights=`, `--loss-weight`, or the vision scenes preset's box weight of 10), so for the text and census jobs
they are the weights themselves. Each list must hold 1.0, the reference trial's choice.

Data are loaded once; each trial builds the job's model from the same seed (the same initial weights), compiles it
through the job with the trial's weights and fits it with the job's datasets and callbacks. keras-tuner's scratch
folder is a temporary one unless `directory=` is given.

Example (about a minute on 2 CPU cores: four trials of 10 to 15 s, not run as a doctest):

```python
from mtl_keras.jobs import TextJob
from mtl_keras.tuning import search_loss_weights

search = search_loss_weights(TextJob(limit=2000, epochs=2), tuner="random", max_trials=4)
print(search.table())          # every trial, best first: weights, objective, each task's relative loss
search.best_weights            # {"sentiment": 1.0, "intensity": ..., "domain": ...}
print(search.train_command())  # mtl-keras train text --loss-weight sentiment=1 --loss-weight intensity=...
```

The command line does the same: `mtl-keras tune text --limit 2000 --epochs 2 --max-trials 4`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import keras_tuner
import numpy as np

from mtl_keras.atomic_write import atomic_file
from mtl_keras.datasets.splits import Splits
from mtl_keras.jobs.base import Job, check_splits_not_empty
from mtl_keras.seeds import set_global_seed
from mtl_keras.tasks import Task, as_task_dict
from mtl_keras.training.callbacks import MeanRelativeValidationLoss, NonFiniteLossError
from mtl_keras.training.compile import resolve_loss_weights

DEFAULT_CANDIDATES = (0.25, 0.5, 1.0, 2.0, 4.0)
OBJECTIVE = keras_tuner.Objective("relative_validation_loss", direction="min")
TUNERS = ("grid", "random", "bayesian")
DEFAULT_MAX_TRIALS = 10  # random and Bayesian search; grid search covers the whole grid unless told otherwise


@dataclasses.dataclass(frozen=True)
class WeightTrial:
    """One trial: the loss weights it trained with and how it did on the validation split.

    `validation` holds, per task, the unweighted loss and each metric at the epoch the trial kept (`best_epoch`,
    counted from 1). A trial whose loss diverged has `objective=None` and says why in `message`.
    """

    trial_id: str
    loss_weights: dict[str, float]
    objective: float | None
    best_epoch: int | None
    validation: dict[str, dict[str, float]]
    status: str = "COMPLETED"
    message: str | None = None

    def relative_losses(self, reference: WeightTrial) -> dict[str, float]:
        """Each task's validation loss divided by the reference trial's: the objective is their mean."""
        # As `MeanRelativeValidationLoss` computes it (a reference loss of 0 gives 0).
        return {name: values["loss"] / reference.validation[name]["loss"] if reference.validation[name]["loss"] > 0
                else 0.0 for name, values in self.validation.items()}


@dataclasses.dataclass(frozen=True)
class WeightSearch:
    """The result of `search_loss_weights`: every trial, best first (failed trials last)."""

    job: str
    config: dict  # the job's settings, shared by every trial
    tuner: str
    candidates: dict[str, list[float]]  # the weights tried, per searched task
    reference: WeightTrial  # trained with the job's own weights; the objective is relative to it
    trials: list[WeightTrial]

    @property
    def best(self) -> WeightTrial:
        return self.trials[0]

    @property
    def best_weights(self) -> dict[str, float]:
        return dict(self.best.loss_weights)

    def train_command(self) -> str:
        """The `mtl-keras train` command line that trains with the best weights."""
        weights = " ".join(f"--loss-weight {name}={weight:g}" for name, weight in self.best_weights.items())
        return f"mtl-keras train {self.job} {weights}"

    def table(self) -> str:
        """Every trial, best first: its weights, its objective and each task's validation loss / the reference's."""
        names = list(self.reference.loss_weights)
        width = max(9, *(len(name) for name in names))
        header = (f"{'rank':>4} {'trial':>5}  " + " ".join(f"{name:>{width}}" for name in names)
                  + f"  {'objective':>9}  " + " ".join(f"{name:>{width}}" for name in names) + f"  {'epoch':>5}")
        groups = (" " * 12 + f"{'loss weight':^{(width + 1) * len(names) - 1}}" + " " * 13
                  + f"{'validation loss / reference':^{(width + 1) * len(names) - 1}}")
        lines = [groups.rstrip(), header]
        for rank, trial in enumerate(self.trials, start=1):
            weights = " ".join(f"{trial.loss_weights[name]:>{width}g}" for name in names)
            if trial.objective is None:
                lines.append(f"{rank:>4} {trial.trial_id:>5}  {weights}  {'failed':>9}  {trial.message or ''}")
                continue
            relative = trial.relative_losses(self.reference)
            ratios = " ".join(f"{relative[name]:>{width}.4f}" for name in names)
            note = "  (reference)" if trial.trial_id == self.reference.trial_id else ""
            lines.append(f"{rank:>4} {trial.trial_id:>5}  {weights}  {trial.objective:>9.4f}  {ratios}  "
                         f"{trial.best_epoch:>5}{note}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "job": self.job,
            "config": self.config,
            "tuner": self.tuner,
            "objective": {"name": OBJECTIVE.name, "direction": OBJECTIVE.direction,
                          "definition": "mean over tasks of the unweighted validation loss at the kept epoch divided "
                                        "by the reference trial's (trained with the job's own weights)"},
            "candidates": self.candidates,
            "reference_trial": self.reference.trial_id,
            "best_weights": self.best_weights,
            "train_command": self.train_command(),
            "trials": [dataclasses.asdict(trial) for trial in self.trials],
        }

    def write_json(self, path: str | Path, extra: Mapping | None = None) -> Path:
        """Writes `to_json()` (and `extra` entries) to `path` atomically: a temporary name, then a rename."""
        path = Path(path)
        payload = {**self.to_json(), **(extra or {})}
        with atomic_file(path, "w") as file:
            file.write(json.dumps(payload, indent=2) + "\n")
        return path


def search_loss_weights(
    job: Job,
    tuner: str = "random",
    max_trials: int | None = None,
    candidates: Sequence[float] | Mapping[str, Sequence[float]] = DEFAULT_CANDIDATES,
    directory: str | Path | None = None,
    overwrite: bool = True,
    seed: int | None = None,
    verbose: int = 1,
) -> WeightSearch:
    """Searches static loss weights for `job`'s tasks with keras-tuner; see the module docstring for the objective.

    Args:
        job: a job (`mtl_keras.jobs.JOBS`); its settings (epochs, limit, ...) apply to every trial.
        tuner: "grid" (every combination, the job's weights first), "random" or "bayesian" (Gaussian process);
            random and Bayesian search also start with the job's weights, the reference.
        max_trials: the most trials; default: the whole grid for grid search, 10 otherwise.
        candidates: factors on the job's weights, for every task but the first, or a dict `{task: factors}` for the
            tasks to search; each must include 1.0.
        directory: keras-tuner's folder (default: a temporary one, removed afterwards).
        overwrite: False resumes the search saved in `directory`, which must have had the same job settings and
            candidates (keras-tuner keeps the search space it saved; the reference trial's losses are read back).
        seed: the search's seed (default: the job's seed; each trial's training always uses the job's seed).
        verbose: 0 silent, 1 one summary per trial, 2 also Keras' progress bars.
    """
    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {list(TUNERS)}, got {tuner!r}.")
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"max_trials must be at least 1, got {max_trials!r}.")
    splits = job.data()
    check_splits_not_empty(splits, job.config.limit)
    tasks = as_task_dict(splits.tasks)
    job_weights = resolve_loss_weights(tasks, job.config.loss_weights)
    searched = candidate_weights(tasks, candidates, job_weights)
    hypermodel = LossWeightHyperModel(job, splits, searched, job_weights)
    if max_trials is None and tuner != "grid":
        max_trials = DEFAULT_MAX_TRIALS
    seed = job.config.seed if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="mtl-keras-tune-") as scratch:
        search = _LossWeightTuner(
            oracle=ORACLES[tuner](objective=OBJECTIVE, max_trials=max_trials, seed=seed),
            hypermodel=hypermodel,
            directory=str(directory or scratch),
            project_name=f"{job.name}_loss_weights",
            overwrite=overwrite,
        )
        hypermodel.resume(search.oracle)
        try:
            search.search(verbose=verbose)
        except _SearchStopped as stop:
            raise stop.__cause__ from stop.__cause__.__cause__  # the original error, as if keras-tuner were not there
        trials = [_as_weight_trial(trial, tasks, job_weights) for trial in search.oracle.trials.values()]
    reference = next(trial for trial in trials if trial.trial_id == search.oracle.start_order[0])
    trials.sort(key=lambda trial: (trial.objective is None, trial.objective or 0.0, trial.trial_id))
    return WeightSearch(job.name, dataclasses.asdict(job.config), tuner, searched, reference, trials)


def candidate_weights(
    tasks: Mapping[str, Task], candidates: Sequence[float] | Mapping[str, Sequence[float]],
    job_weights: Mapping[str, float],
) -> dict[str, list[float]]:
    """The weights to try per searched task: each candidate factor times the task's weight in the job.

    >>> tasks = {name: Task(name, "regression") for name in ("a", "b", "c")}
    >>> candidate_weights(tasks, (0.5, 1, 2), {"a": 1.0, "b": 1.0, "c": 10.0})
    {'b': [0.5, 1.0, 2.0], 'c': [5.0, 10.0, 20.0]}
    """
    if len(tasks) < 2:
        raise ValueError(f"Searching loss weights needs at least two tasks, got {sorted(tasks)}.")
    if isinstance(candidates, Mapping):
        unknown = sorted(set(candidates) - set(tasks))
        if unknown:
            raise ValueError(f"candidates name unknown task(s) {unknown}; the tasks are {list(tasks)}.")
        if set(candidates) == set(tasks):
            raise ValueError(f"candidates name every task ({list(tasks)}); leave one out to keep its weight: only "
                             f"the ratios of the weights matter.")
        per_task = dict(candidates)
    else:
        per_task = {name: candidates for name in list(tasks)[1:]}  # the first task keeps its weight
    searched = {}
    for name in tasks:
        if name not in per_task:
            continue
        given = per_task[name]
        if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__") or not len(given := list(given)):
            raise ValueError(f"candidates for task {name!r} must be a non-empty list of numbers, got {given!r}.")
        factors = {_factor(name, value) for value in given}
        if 1.0 not in factors:
            raise ValueError(f"candidates for task {name!r} must include 1.0, the job's own weight, which the "
                             f"reference trial uses; got {given}.")
        searched[name] = sorted({factor * job_weights[name] for factor in factors})
    return searched


def _factor(task_name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < math.inf:
        raise ValueError(f"candidates for task {task_name!r} must be finite numbers > 0, got {value!r}.")
    return float(value)


class LossWeightHyperModel(keras_tuner.HyperModel):
    """One trial: the job's model compiled with the trial's loss weights (one `hp.Choice` per searched task), fitted
    with the job's datasets and callbacks; `fit` returns the objective and each task's validation numbers."""

    def __init__(self, job: Job, splits: Splits, candidates: Mapping[str, Sequence[float]],
                 job_weights: Mapping[str, float]):
        super().__init__(name=f"{job.name}_loss_weights")
        self.job, self.splits = job, splits
        self.tasks = list(splits.tasks)
        self.candidates, self.job_weights = dict(candidates), dict(job_weights)
        self.reference: dict[str, float] | None = None  # each task's validation loss in the reference trial

    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        self.loss_weights(hp)

    def loss_weights(self, hp: keras_tuner.HyperParameters) -> dict[str, float]:
        """Every task's weight in this trial: the searched ones from `hp`, the others as in the job."""
        chosen = {name: hp.Choice(name, weights, default=self.job_weights[name])
                  for name, weights in self.candidates.items()}
        return {name: float(chosen.get(name, weight)) for name, weight in self.job_weights.items()}

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        set_global_seed(self.job.config.seed)  # every trial starts from the same initial weights
        with self.job.distribute_strategy().scope():  # model, optimizer and metrics on the job's replicas
            model = self.job.new_model(self.tasks, self.splits)
            return self.job.compile(model, self.tasks, loss_weights=self.loss_weights(hp))

    def fit(self, hp, model, *args, callbacks=(), verbose=1, **kwargs) -> dict[str, float]:
        """Trains `model`; returns the objective, the kept epoch and every validation number at that epoch. With
        `verbose` 2, Keras' progress bars."""
        names = [task.name for task in self.tasks]
        is_reference = self.reference is None
        if is_reference and self.loss_weights(hp) != self.job_weights:
            raise RuntimeError("The reference trial (the job's own weights) must run first.")
        # After the reference, early stopping watches the objective itself: the loss relative to the reference's.
        relative = None if is_reference else _RelativeToReference(names, self.reference)
        try:
            history = self.job.fit(model, self.tasks, self.splits, verbose="auto" if verbose >= 2 else 0,
                                   callbacks=self.job.callbacks(self.tasks, relative) + list(callbacks))
        except NonFiniteLossError as error:
            if is_reference:
                raise  # nothing to compare with: the search stops
            raise keras_tuner.errors.FailedTrialError(str(error)) from error
        missing = [f"val_{name}_loss" for name in names if f"val_{name}_loss" not in history]
        if missing:
            raise RuntimeError(f"The validation logs lack {missing}: the objective needs each task's unweighted "
                               f"validation loss (compile the model with `compile_multitask`).")
        best = int(np.argmin(history["val_mean_relative_loss"]))  # the epoch early stopping restored
        results = {key[4:]: values[best] for key, values in history.items()
                   if key.startswith("val_") and key != "val_mean_relative_loss"}
        if is_reference:
            self.reference = {name: results[f"{name}_loss"] for name in names}
        results = {f"val_{key}": value for key, value in results.items()}
        return {OBJECTIVE.name: 1.0 if is_reference else history["val_mean_relative_loss"][best],
                "best_epoch": best + 1, **results}

    def resume(self, oracle: keras_tuner.Oracle) -> None:
        """Takes the reference losses from a reloaded search whose reference trial is complete."""
        if oracle.start_order and oracle.trials[oracle.start_order[0]].status == "COMPLETED":
            metrics = oracle.trials[oracle.start_order[0]].metrics
            self.reference = {task.name: float(metrics.get_last_value(f"val_{task.name}_loss")) for task in self.tasks}


class _RelativeToReference(MeanRelativeValidationLoss):
    """`val_mean_relative_loss` relative to fixed per-task losses (the reference trial's) instead of the first
    epoch's, so that it is the search objective at every epoch."""

    def __init__(self, task_names, reference: Mapping[str, float]):
        super().__init__(task_names)
        self.fixed_reference = dict(reference)

    def on_train_begin(self, logs=None):
        self.reference = dict(self.fixed_reference)


class _SearchStopped(keras_tuner.errors.FatalError):
    """An error that is not a bad trial (bad input, a diverged reference): the search stops and re-raises it."""


class _LossWeightTuner(keras_tuner.Tuner):
    """Runs each trial once and keeps its numbers, not its model: keras-tuner's default `run_trial` would also
    checkpoint the model at every epoch."""

    def run_trial(self, trial, *args, **kwargs):
        keras.backend.clear_session()  # nothing of the previous trial's model stays in memory
        hp = trial.hyperparameters
        try:
            return self.hypermodel.fit(hp, self.hypermodel.build(hp), *args, **kwargs)
        except keras_tuner.errors.FailedTrialError:
            raise
        except Exception as error:
            raise _SearchStopped(str(error)) from error


def _reference_first(oracle_class: type) -> type:
    """`oracle_class` whose first trial takes every weight's default, the job's own: the reference trial."""

    class ReferenceFirst(oracle_class):
        def populate_space(self, trial_id):
            if self.start_order:
                return super().populate_space(trial_id)
            space = self.get_space()
            return {"status": "RUNNING",
                    "values": {hp.name: hp.default for hp in space.space if space.is_active(hp)}}

    ReferenceFirst.__name__ = f"ReferenceFirst{oracle_class.__name__}"
    return ReferenceFirst


ORACLES = {
    "grid": keras_tuner.oracles.GridSearchOracle,  # starts with the defaults by itself
    "random": _reference_first(keras_tuner.oracles.RandomSearchOracle),
    "bayesian": _reference_first(keras_tuner.oracles.BayesianOptimizationOracle),
}


def _as_weight_trial(trial: keras_tuner.engine.trial.Trial, tasks: Mapping[str, Task],
                     job_weights: Mapping[str, float]) -> WeightTrial:
    values, metrics = trial.hyperparameters.values, trial.metrics
    weights = {name: float(values.get(name, weight)) for name, weight in job_weights.items()}
    validation = {}
    for name, task in tasks.items():
        keys = {metric: f"val_{name}_{metric}" for metric in ("loss", *task.metric_names)}
        validation[name] = {metric: float(metrics.get_last_value(key)) for metric, key in keys.items()
                            if metrics.exists(key)}
    if trial.status == "COMPLETED" and metrics.exists(OBJECTIVE.name):
        return WeightTrial(trial.trial_id, weights, float(metrics.get_last_value(OBJECTIVE.name)),
                           int(metrics.get_last_value("best_epoch")), validation)
    last_line = ((trial.message or "").strip().splitlines() or [None])[-1]  # the error, after keras-tuner's traceback
    return WeightTrial(trial.trial_id, weights, None, None, validation, trial.status, last_line)
