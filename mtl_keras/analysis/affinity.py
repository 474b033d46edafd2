"""Which tasks help each other: inter-task affinity measured during training.

`TaskAffinity` is a callback that, every `every_n_steps` training steps, takes the batch the model is about to train
on and measures, for every ordered pair of tasks (i, j):

- the **lookahead affinity** of Fifty et al. (2021, "Efficiently Identifying Task Groupings in Multi-Task Learning",
  TAG, eq. 3): `Z[i->j] = 1 - L_j(theta_shared - lr * grad_shared L_i, theta_j) / L_j(theta)`, the relative change of
  task j's loss after one SGD step on the shared weights along task i's gradient alone (task heads unchanged; the
  weights are restored exactly afterwards). Positive: a step on task i lowered task j's loss;
- the **cosine similarity** of task i's and task j's gradients on the shared weights.

Both are averaged over the measurements (`affinity`, `cosine`) and kept per measurement (`history`). The shared
weights are found from gradient connectivity (`mtl_keras.training.shared`), not from layer names.

Example:

>>> import numpy as np
>>> from mtl_keras import MultiTaskModel, Task
>>> inputs = keras.Input((4,))
>>> trunk = keras.layers.Dense(8, name="trunk")(inputs)
>>> model = MultiTaskModel(inputs, {n: keras.layers.Dense(1, name=n)(trunk) for n in ("a", "b")},
...                        tasks=[Task("a", "regression"), Task("b", "regression")])
>>> model.compile("sgd")
>>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
>>> y = {"a": x[:, :1], "b": x[:, :1] + x[:, 1:2]}
>>> affinity = TaskAffinity(every_n_steps=2)
>>> _ = model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[affinity])
>>> affinity.task_names, affinity.affinity.shape, len(affinity.history)
(['a', 'b'], (2, 2), 2)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.training.shared import VariablePartition, partition_variables, task_gradients, task_losses


@dataclasses.dataclass(frozen=True)
class AffinityMeasurement:
    """One measurement, on one batch. Entries a batch cannot define are NaN: those of a task with no labelled example
    in the batch, a lookahead onto a task whose loss is 0, a cosine with a zero gradient."""

    step: int  # training steps done before this batch
    learning_rate: float  # of the lookahead step
    losses: np.ndarray  # (T,) each task's loss before the step
    lookahead: np.ndarray  # (T, T) Z[i->j]
    cosine: np.ndarray  # (T, T)

    def to_dict(self) -> dict:
        return {"step": self.step, "learning_rate": self.learning_rate, "losses": _json_list(self.losses),
                "lookahead": _json_list(self.lookahead), "cosine": _json_list(self.cosine)}


def lookahead_affinity(losses: np.ndarray, lookahead_losses: np.ndarray) -> np.ndarray:
    """`Z[i, j] = 1 - lookahead_losses[i, j] / losses[j]`; NaN where `losses[j]` is not positive.

    Example:

    >>> lookahead_affinity(np.array([2.0, 1.0]), np.array([[1.0, 0.5], [2.5, 0.0]])).tolist()
    [[0.5, 0.5], [-0.25, 1.0]]
    """
    losses = np.asarray(losses, "float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(losses[None, :] > 0, 1.0 - np.asarray(lookahead_losses, "float64") / losses[None, :], np.nan)


def cosine_from_gram(gram: np.ndarray) -> np.ndarray:
    """Cosine similarities from a Gram matrix of dot products; NaN where a vector is zero.

    Example:

    >>> cosine_from_gram(np.array([[4.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))[:2, :2].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    gram = np.asarray(gram, "float64")
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.clip(gram / np.outer(norms, norms), -1.0, 1.0)
    return np.where(np.outer(norms, norms) > 0, cosine, np.nan)


class TaskAffinity(keras.callbacks.Callback):
    """Measures inter-task affinity every `every_n_steps` training steps (see the module docstring).

    Which batch: by default, the very batch that the next training step trains on, before its update, so the figures
    are those of TAG. The model hands the callback that batch (`MultiTaskModel.observe_training_batches`, what every
    builder's model has), then trains on it; nothing else about the step changes. Pass `data` (a `tf.data.Dataset`
    or any iterable of `(x, y, sample_weight)` batches, e.g. a validation set) to measure on those batches instead,
    cycled; that also works with a plain `keras.Model`, `train_on_batch` or a custom loop.

    Args:
        every_n_steps: measure before steps 0, n, 2n, ... (counted over the whole training, across epochs).
        lookahead_learning_rate: the lookahead's SGD step size; None: the model's optimizer's current learning
            rate (read at each measurement, so a schedule is followed).
        data: batches to measure on instead of the training batches (see above).
        training: run the forward passes in training mode (dropout, batch statistics), as the training step does.
            The random state and batch-norm statistics are restored after each pass, so every pass of a measurement
            uses the same dropout masks, and the training step that follows draws the masks it would have drawn.
            False: inference mode.

    Attributes (after training): `task_names`, `affinity` (T x T mean lookahead affinity, rows = the task that took
    the step), `cosine` (T x T mean cosine), `counts` (T x T: measurements that defined each entry), `history` (one
    `AffinityMeasurement` per measurement), `partition` (which trainable variables are shared); `table()` and
    `to_dict()` report them.

    A model built under a tf.distribute strategy is refused (NotImplementedError): the lookahead changes and
    restores the shared weights from outside any replica, which distributed variables do not allow.
    """

    def __init__(self, every_n_steps: int = 10, lookahead_learning_rate: float | None = None,
                 data: Iterable | None = None, training: bool = True):
        super().__init__()
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}.")
        if lookahead_learning_rate is not None and not 0 < lookahead_learning_rate < math.inf:
            raise ValueError(f"lookahead_learning_rate must be a positive number or None, got "
                             f"{lookahead_learning_rate!r}.")
        self.every_n_steps = every_n_steps
        self.lookahead_learning_rate = lookahead_learning_rate
        self.data = data
        self.training = training
        self._reset()

    # --- results --------------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.task_names: list[str] = []
        self.history: list[AffinityMeasurement] = []
        self.partition: VariablePartition | None = None
        self._step = 0
        self._measure_function = None
        self._data_iterator = None

    def _mean(self, field: str) -> np.ndarray:
        if not self.history:
            raise ValueError("No measurement yet: train with this callback, or call measure(batch).")
        values = np.stack([getattr(measurement, field) for measurement in self.history])
        with np.errstate(invalid="ignore"):
            totals = np.nansum(values, axis=0)
        counts = np.sum(~np.isnan(values), axis=0)
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)

    @property
    def affinity(self) -> np.ndarray:
        """Mean lookahead affinity `Z[i->j]` over the measurements that define it (NaN: none did)."""
        return self._mean("lookahead")

    @property
    def cosine(self) -> np.ndarray:
        """Mean cosine similarity of the tasks' gradients on the shared weights."""
        return self._mean("cosine")

    @property
    def counts(self) -> np.ndarray:
        """How many measurements defined each lookahead entry."""
        return np.sum([~np.isnan(measurement.lookahead) for measurement in self.history], axis=0)

    def table(self, kind: str = "lookahead") -> str:
        """The mean affinity (`kind="lookahead"`) or cosine similarity (`kind="cosine"`) as a printable table: row i,
        column j is what a step on task i does to task j."""
        if kind == "lookahead":
            values = self.affinity
            finite = np.abs(values[np.isfinite(values)])
            exponent = math.floor(math.log10(finite.max())) if finite.size and finite.max() > 0 else 0
            exponent = exponent if exponent < -1 else 0  # small values (a small learning rate): a common scale
            title = ("Lookahead affinity Z[i->j] = 1 - L_j(after a step on task i) / L_j"
                     + (f", x 1e{exponent}" if exponent else "")
                     + f" (lookahead learning rate {self.history[-1].learning_rate:.3g})")
            values = values / 10.0 ** exponent
        elif kind == "cosine":
            values, title = self.cosine, "Cosine similarity of the task gradients on the shared weights"
        else:
            raise ValueError(f"kind must be 'lookahead' or 'cosine', got {kind!r}.")
        counts = self.counts
        title += f"; mean over {len(self.history)} measurements"
        if kind == "lookahead" and counts.min() < len(self.history):
            title += " (fewer where a task had no labelled example in the batch)"
        width = max(10, *(len(name) + 2 for name in self.task_names))
        lines = [title] + (["row i: the task that took the step; column j: the task whose loss changed"]
                           if kind == "lookahead" else [])
        lines.append(" " * width + "".join(f"{name:>{width}}" for name in self.task_names))
        for name, row in zip(self.task_names, values, strict=True):
            cells = "".join(f"{'n/a':>{width}}" if np.isnan(value) else f"{value:>+{width}.3f}" for value in row)
            lines.append(f"{name:<{width}}{cells}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Everything measured, for JSON (NaN as null)."""
        variables = self.model.trainable_variables if self.model is not None else None
        return {
            "tasks": list(self.task_names),
            "lookahead_affinity": _json_list(self.affinity),
            "cosine_similarity": _json_list(self.cosine),
            "measurements": self.counts.tolist(),
            "every_n_steps": self.every_n_steps,
            "training_mode": self.training,
            "variables": self.partition.paths(variables) if self.partition and variables is not None else None,
            "history": [measurement.to_dict() for measurement in self.history],
        }

    # --- measuring ------------------------------------------------------------------------------------------------
    def measure(self, batch) -> AffinityMeasurement:
        """Measures on one batch `(x, y, sample_weight)` at the current weights, records and returns the result; the
        model's weights and state are left exactly as they were."""
        if any(isinstance(getattr(v, "value", v), tf.distribute.DistributedValues) for v in self.model.variables):
            raise NotImplementedError("TaskAffinity measures on one device; this model's variables are distributed "
                                      "(built under a tf.distribute strategy): train it without one to measure.")
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        if not isinstance(y, Mapping):
            raise ValueError(f"Expected labels as a dict keyed by task name, got {type(y).__name__}.")
        if self._measure_function is None:
            self._prepare(x, y, sample_weight)
        labelled = np.array([sample_weight is None or sample_weight.get(name) is None
                             or float(tf.reduce_sum(sample_weight[name])) > 0 for name in self.task_names])
        learning_rate = self._learning_rate()
        losses, lookahead_losses, gram = (value.numpy() for value in self._measure_function(
            x, y, sample_weight, tf.constant(learning_rate, tf.float32)))
        defined = np.outer(labelled, labelled) & (np.diag(gram) > 0)[:, None]
        measurement = AffinityMeasurement(
            step=self._step, learning_rate=learning_rate, losses=np.where(labelled, losses, np.nan),
            lookahead=np.where(defined, lookahead_affinity(losses, lookahead_losses), np.nan),
            cosine=np.where(np.outer(labelled, labelled), cosine_from_gram(gram), np.nan))
        self.history.append(measurement)
        return measurement

    def _learning_rate(self) -> float:
        if self.lookahead_learning_rate is not None:
            return float(self.lookahead_learning_rate)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("The model has no optimizer to read the learning rate from; pass "
                             "lookahead_learning_rate=.")
        return float(np.asarray(optimizer.learning_rate))

    def _prepare(self, x, y, sample_weight) -> None:
        """Finds the shared variables (from which tasks' gradients reach each variable) and builds the measurement."""
        self.task_names = list(self.model.loss) if isinstance(self.model.loss, Mapping) else []
        if len(self.task_names) < 2:
            raise ValueError(f"Task affinity needs a model compiled with one loss per task, for two or more tasks; "
                             f"model {self.model.name!r} has loss {self.model.loss!r}.")
        variables = self.model.trainable_variables
        restore = list(self.model.non_trainable_variables)  # a training-mode pass moves them
        saved = [np.array(variable.numpy()) for variable in restore]
        _, gradients = tf.function(lambda x, y, sample_weight: task_gradients(
            self.model, x, y, sample_weight, variables, self.training))(x, y, sample_weight)
        for variable, value in zip(restore, saved, strict=True):
            variable.assign(value)
        self.partition = partition_variables(gradients)
        if not self.partition.shared:
            raise ValueError(f"No trainable variable of model {self.model.name!r} is reached by two tasks' losses: "
                             f"the tasks share nothing to measure.")
        self._measure_function = _measure_function(self.model, self.task_names,
                                                   [variables[k] for k in self.partition.shared], self.training)

    # --- where the batches come from ------------------------------------------------------------------------------
    def set_model(self, model):
        if model is not getattr(self, "model", None):
            self._measure_function = None
        super().set_model(model)

    def on_train_begin(self, logs=None):
        self._reset()
        if self.data is not None:
            return
        if not hasattr(self.model, "observe_training_batches"):
            raise TypeError(f"TaskAffinity measures on the training batches through a MultiTaskModel's "
                            f"observe_training_batches (what every mtl_keras builder returns); model "
                            f"{self.model.name!r} is a {type(self.model).__name__}: build it as "
                            f"mtl_keras.MultiTaskModel(inputs, outputs, tasks=...), or pass data= (batches to "
                            f"measure on).")
        self.on_train_end()  # a training that raised never called it: stop that observing first
        self._stop_observing = self.model.observe_training_batches(
            self.measure, when=lambda: self._step % self.every_n_steps == 0)

    def on_train_batch_begin(self, batch, logs=None):
        if self.data is not None and self._step % self.every_n_steps == 0:
            self.measure(self._next_probe_batch())

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1

    def on_train_end(self, logs=None):
        stop, self._stop_observing = getattr(self, "_stop_observing", None), None
        if stop is not None:
            stop()

    def _next_probe_batch(self):
        if self._data_iterator is None:
            self._data_iterator = iter(self.data)
        try:
            return next(self._data_iterator)
        except StopIteration:  # cycle
            self._data_iterator = iter(self.data)
            return next(self._data_iterator)


def _measure_function(model: keras.Model, task_names: list[str], shared: list, training: bool):
    """A tf.function `(x, y, sample_weight, learning_rate) -> (losses (T,), lookahead_losses (T, T), gram (T, T))`:
    the tasks' losses, each task's losses after an SGD step on the shared variables along task i's gradient (row i),
    and the dot products of the tasks' gradients on the shared variables. Every variable it changes is restored
    exactly (from a copy, not by undoing the step)."""
    # Training-mode passes advance the random state and move batch-norm statistics: restoring them before each pass
    # gives every pass the same dropout masks, and leaves the training step that follows as it would have been.
    state = list(model.non_trainable_variables) if training else []

    def forward_losses(x, y, sample_weight):
        losses = task_losses(model, y, model(x, training=training), sample_weight)
        return [tf.cast(losses[name], tf.float32) for name in task_names]

    def restore(variables, values):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)

    @tf.function(reduce_retracing=True)
    def measure(x, y, sample_weight, learning_rate):
        saved_state = [tf.identity(variable) for variable in state]
        saved_shared = [tf.identity(variable) for variable in shared]
        with tf.GradientTape(persistent=True) as tape:
            losses = forward_losses(x, y, sample_weight)
        gradients = [[_dense(g, v) for g, v in zip(tape.gradient(losses[i], shared), shared, strict=True)]
                     for i in range(len(task_names))]
        del tape
        flat = tf.stack([tf.concat([tf.reshape(tf.cast(g, tf.float32), [-1]) for g in task], 0)
                         for task in gradients])
        gram = tf.matmul(flat, flat, transpose_b=True)
        lookahead = []
        for task in gradients:
            restore(state, saved_state)
            for variable, gradient in zip(shared, task, strict=True):
                variable.assign_sub(tf.cast(learning_rate, variable.dtype) * gradient)
            lookahead.append(tf.stack(forward_losses(x, y, sample_weight)))
            restore(shared, saved_shared)
        restore(state, saved_state)
        return tf.stack(losses), tf.stack(lookahead), gram

    return measure


def _dense(gradient, variable):
    """A gradient as a dense tensor of the variable's shape (an embedding's gradient comes as IndexedSlices; a
    variable one task does not reach, as None)."""
    if gradient is None:
        return tf.zeros(variable.shape, variable.dtype)
    return tf.convert_to_tensor(gradient)


def _json_list(values: np.ndarray) -> list:
    return [_json_list(row) for row in values] if np.ndim(values) > 1 else [
        None if np.isnan(value) else float(value) for value in np.asarray(values, "float64")]
