"""`MultiTaskModel`: the functional Keras model every builder returns.

It is a `keras.Model` built from inputs and dict outputs, as `keras.Model(inputs, outputs)` would be, registered so
that `.keras` files load back as it. What it adds:

- its tasks: `MultiTaskModel(inputs, outputs, tasks=[...])` (every builder passes them) keeps the `Task`s, one per
  output of the same name, in its config, so `.keras` files and `from_config` bring them back, and nothing else asks
  for them again: `compile`, `mtl_keras.compute_metrics(model, ...)`, export and the command line read them here.
- `compile(optimizer, loss="auto", metrics="auto", loss_weights=None, ...)`: with tasks, each task's loss and
  metrics come from its kind (`mtl_keras.training.task_defaults`); a dict overrides single tasks, keras-hub style
  (`loss={"intensity": "huber"}`), and `loss_weights` defaults to each `Task.weight`.
- `compile(..., weighting=..., gradient=...)`: a loss weighting (static by default, uncertainty, GradNorm, DWA, RLW,
  FAMO, GLS, STCH) and a gradient method (PCGrad, CAGrad, MGDA-UB, IMTL-G, Nash-MTL, Aligned-MTL, UPGrad,
  DualProj, GradVac, FairGrad, ConFIG, SDMGrad, MoDo, GradDrop, MoCo, DB-MTL, ExcessMTL), by name or as objects;
  both
  travel in the compile config, so a `.keras` file reloads with its method and the method's state (uncertainty's
  log-variances, GradNorm's weights...). Training then runs `mtl_keras.training.step.MultiTaskStep`; logs
  gain `<task>_weight` and, with a gradient method, `cosine_<a>_<b>` (epoch means).
- `fit(...)` shows, when verbose, the total loss and each task's loss and headline metric on one line
  (`mtl_keras.training.progress.TaskProgressBar`; every metric still goes to History and the callbacks).
- `fit(..., loop="auto"|"keras"|"custom", backup=None)`: Keras' `fit`, or our loop
  (`mtl_keras.training.loop.fit_distributed`), which it takes by itself under `MultiWorkerMirroredStrategy` (where
  Keras' `fit` fails) and with a `backup` (a `TrainingBackup`: resume after a kill).
- building before the first step from the dataset's element spec, with or without a strategy: Keras draws a batch
  under a strategy (an extra pass over a reshuffling dataset, so training saw other batches than on one device;
  averaging it over replicas fails on strings) and builds inside the first trace without one (which traces the train
  function twice).

Example:

>>> import keras
>>> from mtl_keras.tasks import Task
>>> inputs = keras.Input((3,))
>>> model = MultiTaskModel(inputs, {"a": keras.layers.Dense(1, name="a")(inputs),
...                                 "b": keras.layers.Dense(1, name="b")(inputs)},
...                        tasks=[Task("a", "regression"), Task("b", "binary")])
>>> model.compile("sgd", weighting="uncertainty", gradient="pcgrad")
>>> type(model.weighting).__name__, type(model.gradient_method).__name__
('UncertaintyWeighting', 'PCGrad')
>>> [m.name for m in MultiTaskModel.from_config(model.get_config()).tasks]
['a', 'b']
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from mtl_keras import keras_compat
from mtl_keras.backbones.trunk import learning_rate_multipliers, pretrained_trunks
from mtl_keras.datasets.pipeline import check_model_inputs, prepare_arrays, prepare_columns
from mtl_keras.distribute import is_multi_worker
from mtl_keras.tasks import Task, as_task_dict
from mtl_keras.training.callbacks import LossScaleCheck, StopOnNonFiniteLoss, with_multitask_callbacks
from mtl_keras.training.gradients import get_gradient_method
from mtl_keras.training.label_statistics import check_standardized_heads, resolve_label_statistics
from mtl_keras.training.loop import fit_distributed
from mtl_keras.training.progress import TaskProgressBar
from mtl_keras.training.step import BalancingMonitor, MultiTaskStep
from mtl_keras.training.task_defaults import compile_arguments, is_auto
from mtl_keras.training.weighting import get_weighting


def _tasks_for_outputs(tasks, outputs, model_name: str) -> tuple[Task, ...]:
    """The tasks (Task objects or their configs) in output order, checked to name exactly the model's outputs."""
    tasks = [Task.from_config(task) if isinstance(task, Mapping) else task for task in tasks]
    by_name = as_task_dict(tasks)
    if not isinstance(outputs, Mapping) or sorted(outputs) != sorted(by_name):
        names = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise ValueError(f"Model {model_name!r}: the outputs {names} and the tasks {sorted(by_name)} differ; each "
                         f"task needs an output of the same name.")
    return tuple(by_name[name] for name in outputs)


class _BatchObservers:
    """The `(observer, when)` pairs of `observe_training_batches`, in a plain object that Keras does not track."""

    def __init__(self):
        self.entries = []


@keras.saving.register_keras_serializable(package="mtl_keras")
class MultiTaskModel(keras_compat.BuildsFromElementSpec, keras.Model):
    """A functional multi-task model: one named output per task, and the tasks themselves.

    Args (beside `keras.Model`'s `inputs`, `outputs`, `name`):
        tasks: the `Task` of each output (names equal to the output names), or None for a model that is compiled
            with explicit losses.
        input_columns: for tabular models, the user's column name of each input (input name -> column name), so
            that `predict` and the SavedModel take the columns under their own names (see
            `mtl_keras.datasets.features.input_name`).
    """

    def __init__(self, *args, tasks=None, input_columns=None, **kwargs):
        # Varargs keep Keras' functional constructor and `from_config` (which passes the rest of the config here).
        super().__init__(*args, **kwargs)
        self._tasks = None if tasks is None else _tasks_for_outputs(tasks, self.output, self.name)
        self.input_columns = None if input_columns is None else dict(input_columns)
        self.train_function_factory = None  # set by our loop while it runs (see make_train_function)
        self._batch_observers = _BatchObservers()

    @property
    def tasks(self) -> list[Task] | None:
        """The model's tasks, in output order (None if it was built without them)."""
        return None if self._tasks is None else list(self._tasks)

    @tasks.setter
    def tasks(self, tasks):
        self._tasks = None if tasks is None else _tasks_for_outputs(tasks, self.output, self.name)

    def get_config(self):
        config = super().get_config()
        if self._tasks is not None:
            config["tasks"] = [task.get_config() for task in self._tasks]
        if self.input_columns is not None:
            config["input_columns"] = dict(self.input_columns)
        return config

    def prepare_columns(self, columns) -> dict:
        """A tabular model's raw columns (a dict or a pandas DataFrame, under the user's column names or the input
        names) as its inputs: keyed by input name, categorical values as its vocabulary holds them, numbers float32;
        an `InputError` naming the column otherwise."""
        wanted = [(self.input_columns.get(name, name), name, tensor.dtype == "string")
                  for name, tensor in self.input.items()]
        return prepare_columns(columns, wanted)

    def predict(self, x, *args, **kwargs):
        """Keras' `predict`. A tabular model also takes its raw columns as the user has them (`prepare_columns`);
        array inputs are checked as `make_text_dataset` and `make_image_dataset` do
        (`mtl_keras.datasets.pipeline.check_model_inputs`): non-strings for a text model, or float images in [0, 1]
        for a uint8 image model, fail naming the input instead of giving other outputs."""
        if self.input_columns and (isinstance(x, Mapping) or hasattr(x, "columns")):
            x = self.prepare_columns(x)
        return super().predict(check_model_inputs(x, self.inputs), *args, **kwargs)

    def compile(self, optimizer="rmsprop", loss="auto", loss_weights=None, metrics="auto", weighted_metrics=None,
                *args, weighting=None, gradient=None, jit_compile="auto", steps_per_execution="auto", **kwargs):
        """Keras' `compile`, filled from the tasks: `loss="auto"` and `metrics="auto"` take each task's kind (a
        dict overrides single tasks; one loss or one list of metrics applies to every task), `loss_weights`
        defaults to each `Task.weight`. `weighting` and `gradient` choose how the tasks are balanced (see the
        module docstring). `jit_compile="auto"` means XLA on GPUs only (on CPUs it slowed small models down).
        `steps_per_execution="auto"` runs `AUTO_STEPS_PER_EXECUTION` steps per call of the train function in `fit`
        where no callback needs each batch (see `fit`), and one step per call where one does."""
        given = {"loss": loss, "metrics": metrics, "loss_weights": loss_weights}
        if self._tasks is not None and weighted_metrics is None:
            filled = compile_arguments(as_task_dict(self._tasks), loss, metrics, loss_weights)
            loss, loss_weights, weighted_metrics, metrics = (filled["loss"], filled["loss_weights"],
                                                             filled["weighted_metrics"], None)
        else:
            loss, metrics = (None if is_auto(loss) else loss), (None if is_auto(metrics) else metrics)
        if jit_compile == "auto" and not tf.config.list_physical_devices("GPU"):
            jit_compile = False  # Keras' "auto" would compile with XLA on CPUs too
        if steps_per_execution != "auto" and (isinstance(steps_per_execution, bool)
                                              or not isinstance(steps_per_execution, int) or steps_per_execution < 1):
            raise ValueError(f"steps_per_execution must be 'auto' or a whole number >= 1, got "
                             f"{steps_per_execution!r}.")
        super().compile(optimizer, loss, loss_weights, metrics, weighted_metrics, *args, jit_compile=jit_compile,
                        steps_per_execution=1 if steps_per_execution == "auto" else steps_per_execution, **kwargs)
        self.auto_steps_per_execution = steps_per_execution == "auto"
        keras_compat.update_compile_config(self, {"steps_per_execution": steps_per_execution})
        self._multitask_step = None
        for name in ("weighting", "balancing_monitor", "gradient_state"):
            keras_compat.forget_layer(self, getattr(self, name, None))
        if self._tasks is not None:
            check_standardized_heads(self, self._tasks)
            # The compile config keeps what the user asked for (the tasks rebuild the rest on loading), not the
            # built losses and metrics, which `compile_from_config` would otherwise wrap a second time.
            keras_compat.update_compile_config(self, {**given, "weighted_metrics": None})
        if loss is None:
            self.weighting = self.gradient_method = None
            return
        task_names = list(self.output)
        losses = dict(loss) if isinstance(loss, Mapping) else {name: loss for name in task_names}
        static = dict(loss_weights) if isinstance(loss_weights, Mapping) else {}
        self.weighting = get_weighting(weighting)
        self.weighting.build_for_tasks(task_names, [float(static.get(name, 1.0)) for name in task_names])
        self.gradient_method = get_gradient_method(gradient)
        self.gradient_state = None
        if self.gradient_method is not None:
            # The trainable parameter count bounds the shared parameters', which only the step knows: methods that
            # track gradient vectors size their state by it.
            self.gradient_state = self.gradient_method.build_for_tasks(
                len(task_names), sum(int(np.prod(v.shape)) for v in self.trainable_variables))
        self.balancing_monitor = BalancingMonitor(name="balancing_monitor")
        self.balancing_monitor.build_for_tasks(task_names)
        self._multitask_step = MultiTaskStep(self, losses, static, self.weighting, self.gradient_method,
                                  self.balancing_monitor)
        _check_tracked(self, [*self.weighting.variables, *self.balancing_monitor.variables,
                              *(self.gradient_method.state_variables if self.gradient_method else [])])
        self._build_optimizer_for_schedules()
        if learning_rate_multipliers(self) and getattr(self.optimizer, "use_ema", False):
            raise ValueError("A backbone's learning_rate_multiplier scales its variables' updates after the "
                             "optimizer's, and the optimizer's moving average (use_ema=True) would average the "
                             "unscaled values: use one or the other.")
        keras_compat.update_compile_config(self, {"weighting": self.weighting, "gradient": self.gradient_method})

    def make_train_function(self, force=False):
        """Keras' `make_train_function`, with the batch observers of `observe_training_batches` in front; while our
        loop (`fit_distributed`) runs, it builds the loop's function (`train_function_factory`) instead of Keras'.
        Keras asks for `make_train_function(force=True)` after a callback changes which layers train."""
        if force or self.train_function is None:
            factory = getattr(self, "train_function_factory", None)
            if factory is None:
                super().make_train_function(force=True)
                function = self.train_function
            else:
                function = factory()
            self.train_function = self._observed(function)
        return self.train_function

    def observe_training_batches(self, observer, when=None):
        """Calls `observer(batch)` with the batch a call of the train function is about to train on (as the
        function receives it: `(x, y, sample_weight)`), before it trains, in Keras' `fit` and in our loop, on the
        calls where `when()` is true (every call without `when`). Returns a function that stops the observing.

        This is how a diagnostic measures on the training batches themselves (`TaskAffinity`): Keras' callbacks
        never see the batches. An observed call feeds the batches to the train step from Python, so observe only
        the calls that need it."""
        entry = (observer, when)
        self._batch_observers.entries.append(entry)

        def stop():
            self._batch_observers.entries = [known for known in self._batch_observers.entries if known is not entry]
        return stop

    def _observed(self, function):
        """`function` (a train function, which takes any iterable of batches) with the batch observers in front."""
        def train_function(iterator):
            observers = [observer for observer, when in self._batch_observers.entries if when is None or when()]
            if not observers:
                return function(iterator)
            batch = next(iterator)  # StopIteration at the end of an epoch, as the train function itself would raise
            for observer in observers:
                observer(batch)
            return function(itertools.chain([batch], iterator))
        return train_function

    def _build_optimizer_for_schedules(self):
        """Builds the optimizer for every variable a backbone's fine-tuning schedule will train (`PretrainedTrunk`):
        a Keras optimizer only updates the variables it was built with."""
        trunks = [trunk for trunk in pretrained_trunks(self) if trunk.scheduled]
        if not trunks or getattr(self, "optimizer", None) is None or self.optimizer.built:
            return
        variables = {id(v): v for v in self.trainable_variables}
        for trunk in trunks:
            variables.update({id(v): v for v in trunk.scheduled_variables()})
        with self.distribute_strategy.scope():
            self.optimizer.build(list(variables.values()))

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        if getattr(self, "_multitask_step", None) is None:
            return super().train_step(data)
        return self._multitask_step.train_step(self, data)

    def test_step(self, data):
        if getattr(self, "_multitask_step", None) is None:
            return super().test_step(data)
        return self._multitask_step.test_step(self, data)

    def fit(self, x=None, y=None, *args, callbacks=None, loop: str = "auto", backup=None, masks=None,
            stop_on_nonfinite_loss: bool = True, **kwargs):
        """Keras' `fit`, or our loop (`mtl_keras.training.loop.fit_distributed`, on a tf.data.Dataset) with
        `loop="custom"`, with a `backup` (a `TrainingBackup`), and by default under `MultiWorkerMirroredStrategy`,
        where Keras' `fit` fails; `loop="keras"` insists on Keras' `fit`.

        Arrays and dicts (`x`, `y`, a `(x, y)` `validation_data`) are checked as the dataset helpers check them
        (`mtl_keras.datasets.pipeline.prepare_arrays`): 1-D labels work, `-1` or `masks={task: labelled}` mark
        missing labels, and bad labels fail naming the task before any step. With `stop_on_nonfinite_loss` (the
        default), a NaN or infinite loss stops training and raises `NonFiniteLossError` naming the task and batch
        (unless the callbacks hold their own `StopOnNonFiniteLoss`, whose caller decides)."""
        if loop not in ("auto", "keras", "custom"):
            raise ValueError(f"loop must be 'auto', 'keras' or 'custom', got {loop!r}.")
        x, y, kwargs = self._checked_arrays(x, y, masks, kwargs)
        resolve_label_statistics(self, y, kwargs.get("sample_weight"), x if isinstance(x, tf.data.Dataset) else None)
        if isinstance(kwargs.get("validation_data"), tuple) and self._tasks is not None:
            validation = kwargs["validation_data"]
            if len(validation) not in (2, 3):
                raise ValueError(f"validation_data must be (x, y) or (x, y, sample_weight), got a tuple of "
                                 f"{len(validation)}.")
            vx, vy, vw = prepare_arrays(self, validation[0], validation[1], None,
                                        validation[2] if len(validation) == 3 else None)
            kwargs["validation_data"] = (vx, vy, vw)
        callbacks = with_multitask_callbacks(self, callbacks)
        guard = None
        if stop_on_nonfinite_loss and not any(isinstance(c, StopOnNonFiniteLoss) for c in callbacks):
            guard = StopOnNonFiniteLoss()
            callbacks.append(guard)
        if (self._tasks is not None and kwargs.get("verbose", "auto") != 0
                and not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks)):
            callbacks.append(TaskProgressBar())  # Keras adds its own bar only where the callbacks have none
        if loop == "custom" or (loop == "auto" and (backup is not None or is_multi_worker(self.distribute_strategy))):
            self._use_steps_per_execution(1)  # our loop runs one step per call

            if y is not None:
                raise TypeError("Our loop takes x as a tf.data.Dataset of (inputs, labels[, sample_weights]) "
                                "batches, not y: build one with make_dataset (or its text, image and tabular forms).")
            history = fit_distributed(self, x, *args, callbacks=callbacks, backup=backup, **kwargs)
        elif backup is not None:
            raise ValueError("backup= needs our loop (loop='custom' or 'auto'); Keras' fit has no mid-epoch resume.")
        else:
            if getattr(self, "auto_steps_per_execution", False):
                self._use_steps_per_execution(self._auto_steps(callbacks))
            history = super().fit(x, y, *args, callbacks=callbacks, **kwargs)
        if guard is not None:
            guard.raise_if_failed()
        return history

    def evaluate(self, x=None, y=None, *args, masks=None, **kwargs):
        """Keras' `evaluate`; arrays and dicts are checked as in `fit` (missing labels left out of every metric)."""
        x, y, kwargs = self._checked_arrays(x, y, masks, kwargs)
        callbacks = kwargs.get("callbacks")
        if getattr(self, "auto_steps_per_execution", False) and not isinstance(callbacks, keras.callbacks.CallbackList):
            # (fit's own validation passes its CallbackList: it runs with fit's choice)
            self._use_steps_per_execution(self._auto_steps(callbacks or []))
        return super().evaluate(x, y, *args, **kwargs)

    def _auto_steps(self, callbacks) -> int:
        """What `steps_per_execution="auto"` runs per call: `AUTO_STEPS_PER_EXECUTION` on one device where every
        callback does with it what it would do with one step per call, else 1. (Keras' several-steps loop fails
        under MirroredStrategy, TF 2.21 / Keras 3.15: an InvalidArgumentError in its while loop's cond.)"""
        strategy = self.distribute_strategy
        if strategy.num_replicas_in_sync > 1 or isinstance(
                strategy, tf.distribute.MirroredStrategy | tf.distribute.MultiWorkerMirroredStrategy):
            return 1
        return AUTO_STEPS_PER_EXECUTION if all(_takes_several_steps_per_call(c) for c in callbacks) else 1

    def _use_steps_per_execution(self, steps: int) -> None:
        """Runs `steps` training steps per call of the train, test and predict functions (traced again when it
        changes: they unroll that count)."""
        if getattr(self, "auto_steps_per_execution", False) and self.steps_per_execution != steps:
            self.steps_per_execution = steps
            self.train_function = self.test_function = self.predict_function = None

    def _checked_arrays(self, x, y, masks, kwargs):
        if masks is not None and (self._tasks is None or y is None):
            raise ValueError("masks= marks missing labels of array labels (y) of a model that carries its tasks; "
                             "a dataset carries them in its sample weights (see make_dataset).")
        x, y, sample_weight = prepare_arrays(self, x, y, masks, kwargs.pop("sample_weight", None))
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        return x, y, kwargs


# Steps per call of the train function under `steps_per_execution="auto"`: Keras' per-call overhead (several ms on
# a CPU) then counts once per 8 steps (benchmarks/steps_per_execution.py).
AUTO_STEPS_PER_EXECUTION = 8
_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
                "on_test_batch_begin", "on_test_batch_end")


def _takes_several_steps_per_call(callback) -> bool:
    """Whether a callback does what it would do with one step per call when Keras runs several per call (and calls
    the batch hooks once per call, with the call's last batch and its logs): one without batch hooks, or one of ours
    and Keras' that only read the logs (progress bars, the guards)."""
    if isinstance(callback, (StopOnNonFiniteLoss, LossScaleCheck, TaskProgressBar, keras.callbacks.ProgbarLogger,
                             keras.callbacks.History)):
        return True
    return all(getattr(getattr(callback, hook), "__func__", None) is getattr(keras.callbacks.Callback, hook)
               for hook in _BATCH_HOOKS)


def _check_tracked(model: keras.Model, variables: list) -> None:
    """Fails if the model does not track `variables` (the state compile adds): they would then be neither trained
    (uncertainty weighting's log-variances) nor saved nor backed up, without a word. Keras before 3.15 does not track
    a layer set on an already built functional model."""
    tracked = {id(variable) for variable in model.variables}
    untracked = [variable.path for variable in variables if id(variable) not in tracked]
    if untracked:
        raise RuntimeError(f"Keras {keras.__version__} does not track the variables that compile adds to the model "
                           f"({', '.join(untracked)}): they would be neither trained nor saved. mtl_keras needs "
                           f"Keras >= 3.15; upgrade it (pip install -U keras).")
