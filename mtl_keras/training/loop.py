"""`fit_distributed`: our own training loop, for the strategies where Keras' `fit` cannot run, and for backups.

Keras 3's `fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585: "Attempt to convert a value
(PerReplica...)", raised where it reduces the step's per-replica logs). This loop runs
the model's own `train_step` (for a `MultiTaskModel`, `MultiTaskStep`'s: global masked means, the weighting, the
gradient method) with `strategy.run` inside a `tf.function`, over `strategy.experimental_distribute_dataset`, and
keeps the rest of `fit`'s contract:

- the same callbacks, called at the same points (`on_train_begin`, `on_epoch_begin`, `on_train_batch_begin/end`,
  `on_test_*` during validation, `on_epoch_end`, `on_train_end`) through a `keras.callbacks.CallbackList` with a
  `History` and, unless `verbose=0`, Keras' progress bar (on the chief only); `model.stop_training` is honoured, so
  `EarlyStopping(restore_best_weights=True)` works; a `MultiTaskModel`'s `EpochHooks` (DWA's epoch update, the
  epoch means of the balancing logs) is added when missing;
- logs: each batch's are the step's logs averaged over this process's replicas (a progress report, as Keras'
  `fit` gives them on one machine); each epoch's (and validation's) are read from the metrics outside the
  replicas: Keras' metric variables are sync-on-read sums, so that read adds up every replica of every worker and
  AUC, F1 or Pearson r come out as one device computes them on the whole global batches (Keras' `fit` under
  `MirroredStrategy` logs the mean of per-replica results instead). Logs the step adds beyond the metrics (a
  `MultiTaskModel`'s `<task>_weight` and `cosine_*`, identical on every replica) come from the last step;
  validation logs are prefixed `val_`;
- a `MultiTaskModel`'s batch observers (`observe_training_batches`, as `TaskAffinity` uses them); the model's
  `train_function` is restored afterwards;
- the data order of Keras' `fit` on one device: epoch `e` trains on the iterator of `dataset` that `fit` would draw
  for it (two draws per epoch for a dataset of known length, see `_EpochOrder`), whatever the strategy, so a seeded
  reshuffling dataset gives the batches one device would see. (Keras' own `fit` under a strategy drew one iterator
  more, to build the model, shifting its shuffled epochs by one draw; `MultiTaskModel` builds from the dataset's
  element spec, so its `fit` too gives one device's batches.)

Under `MultiWorkerMirroredStrategy` every worker passes the same dataset; its auto-shard policy, if left at AUTO,
is set to DATA, so that each global batch is split across the workers' replicas and their union is the batch one
process would train on.

`backup=TrainingBackup(directory)` saves the training state at each epoch's end (and every `save_every` batches)
and resumes from it when started again (see `mtl_keras.training.backup`).

Example:

>>> import keras, numpy as np, tensorflow as tf
>>> from mtl_keras.training.model import MultiTaskModel
>>> inputs = keras.Input((3,))
>>> model = MultiTaskModel(inputs, {"a": keras.layers.Dense(1, name="a")(inputs),
...                                 "b": keras.layers.Dense(1, name="b")(inputs)})
>>> model.compile("sgd", loss={"a": "mse", "b": "mse"}, gradient="pcgrad")
>>> x = np.ones((8, 3), "float32")
>>> data = tf.data.Dataset.from_tensor_slices((x, {"a": x[:, :1], "b": -x[:, :1]})).batch(4)
>>> history = fit_distributed(model, data, epochs=2, verbose=0)
>>> history.epoch, sorted(history.history)[:3]
([0, 1], ['a_loss', 'a_weight', 'b_loss'])
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mtl_keras import keras_compat
from mtl_keras.distribute import is_chief, is_multi_worker
from mtl_keras.training.backup import ResumePoint, TrainingBackup
from mtl_keras.training.callbacks import with_multitask_callbacks
from mtl_keras.training.label_statistics import resolve_label_statistics

SUM = tf.distribute.ReduceOp.SUM


def fit_distributed(
    model: keras.Model,
    x: tf.data.Dataset | None = None,
    *,
    epochs: int = 1,
    validation_data: tf.data.Dataset | None = None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
    initial_epoch: int = 0,
    validation_freq: int | list[int] = 1,
    backup: TrainingBackup | None = None,
    shuffle: bool = True,
    **unsupported,
) -> keras.callbacks.History:
    """Trains a compiled `model` on `x`, a `tf.data.Dataset` of batches `(inputs, labels[, sample_weights])`, under
    the strategy the model was built in (see the module docstring); returns the `History`, as `model.fit` does.

    `shuffle` is accepted for `fit`'s sake and ignored (a dataset shuffles itself).
    """
    if unsupported:
        raise TypeError(f"fit_distributed takes a tf.data.Dataset and fit's epochs, validation_data, callbacks, "
                        f"verbose, initial_epoch and validation_freq; not {sorted(unsupported)}.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError(f"Model {model.name!r} is not compiled: call compile() before fit_distributed().")
    for name, data in (("x", x), ("validation_data", validation_data)):
        if data is not None and not isinstance(data, tf.data.Dataset):
            raise TypeError(f"fit_distributed takes {name} as a tf.data.Dataset of batches, e.g. "
                            f"tf.data.Dataset.from_tensor_slices((x, y)).batch(32); got {type(data).__name__}.")
    if x is None:
        raise ValueError("fit_distributed needs a training dataset (x).")
    resolve_label_statistics(model, dataset=x)
    strategy = model.distribute_strategy
    _build(model, x)
    train_data, steps = _distribute(strategy, x), _known_steps(x)
    val_data = None if validation_data is None else _distribute(strategy, validation_data)
    val_steps = None if validation_data is None else _known_steps(validation_data)

    callbacks = with_multitask_callbacks(model, callbacks)
    chief = is_chief(strategy)
    callbacks = keras.callbacks.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0 and chief,
                                             verbose=verbose if chief else 0, epochs=epochs, steps=steps, model=model)
    previous_train_function = getattr(model, "train_function", None)
    _use_loop_train_function(model, lambda: _step_function(model, model.train_step))
    test_function = _step_function(model, model.test_step)
    read_metrics = _metrics_reader(model)
    model.stop_training = False
    try:
        callbacks.on_train_begin()
        restored = backup.restore(model, callbacks) if backup is not None else None
        resume = restored or ResumePoint(epoch=initial_epoch)
        if is_multi_worker(strategy):
            _check_same_resume_point(strategy, resume)
        model.stop_training = resume.stopped
        training_logs = _last_epoch_logs(model)
        order = _EpochOrder(train_data, steps)
        if restored is not None and not restored.stopped:
            order.skip(min(restored.epoch, epochs))
        for epoch in range(resume.epoch, epochs):
            if model.stop_training:
                break
            model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            iterator = order.start()
            done = resume.batch if epoch == resume.epoch else 0
            if done:
                backup.restore_epoch_state(model)
                for _ in range(done):
                    next(iterator)
            logs, complete = _train_epoch(model, iterator, callbacks, steps, done, epoch, backup)
            order.end(complete)
            epoch_logs = {**_python(logs), **read_metrics()}
            if val_data is not None and _validates(epoch, validation_freq):
                val_logs = _evaluate(model, val_data, val_steps, test_function, read_metrics, callbacks)
                epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
            callbacks.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if backup is not None:
                backup.save(model, callbacks, ResumePoint(epoch + 1, 0, bool(model.stop_training)))
        optimizer = model.optimizer
        if isinstance(optimizer, keras.optimizers.Optimizer) and epochs > 0:
            optimizer.finalize_variable_values(model.trainable_weights)
        callbacks.on_train_end(logs=training_logs)
    finally:
        _use_loop_train_function(model, None)
        model.train_function = previous_train_function
    return model.history


def _use_loop_train_function(model, factory) -> None:
    """Makes the model's train function this loop's (`factory()`), or no longer (`factory=None`). A
    `MultiTaskModel` builds it through `make_train_function` from its `train_function_factory`, so its batch
    observers see the loop's batches and `make_train_function(force=True)` (what Keras asks for after a change of
    `trainable` during training) rebuilds this loop's function, not Keras'."""
    if hasattr(model, "observe_training_batches"):
        model.train_function_factory = factory
        if factory is not None:
            model.make_train_function(force=True)
    elif factory is not None:
        model.train_function = factory()


def _validates(epoch: int, frequency: int | list[int]) -> bool:
    """As `fit`'s `validation_freq`: every `frequency` epochs, or at the (1-based) epochs listed."""
    return epoch + 1 in frequency if isinstance(frequency, list | tuple) else (epoch + 1) % frequency == 0


def _train_epoch(model, iterator, callbacks, steps, done, epoch, backup):
    logs = {}
    step = done
    while steps is None or step < steps:
        callbacks.on_train_batch_begin(step)
        try:
            logs = model.train_function(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            break
        callbacks.on_train_batch_end(step, logs)
        step += 1
        if backup is not None and backup.due(step) and (steps is None or step < steps):
            backup.save(model, callbacks, ResumePoint(epoch, step))
        if model.stop_training:
            break
    return logs, steps is not None and step >= steps


def _evaluate(model, data, steps, test_function, read_metrics, callbacks) -> dict:
    """One pass over the validation data, as Keras' `evaluate` does inside `fit`."""
    callbacks.on_test_begin()
    model.reset_metrics()
    logs = {}
    iterator = iter(data)
    step = 0
    while steps is None or step < steps:
        callbacks.on_test_batch_begin(step)
        try:
            logs = test_function(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            break
        callbacks.on_test_batch_end(step, logs)
        step += 1
    logs = {**_python(logs), **read_metrics()}
    callbacks.on_test_end(logs)
    return logs


def _step_function(model, step):
    """`step` (train or test) run on every replica; its logs are the mean over this process's replicas, as Keras'
    `fit` reduces them on one machine (a progress report: the epoch's logs are read globally, `_metrics_reader`).
    Takes a tf iterator (the batch is drawn inside the function) or any iterable of batches (as Keras' train
    function does; `TaskAffinity` relies on it)."""
    strategy = model.distribute_strategy

    @tf.autograph.experimental.do_not_convert  # as Keras' fit: the step is traced as written
    def one_step(data):
        outputs = strategy.run(step, args=(data,))
        return tf.nest.map_structure(lambda value: _local_mean(strategy, value), outputs)

    @tf.autograph.experimental.do_not_convert
    def from_iterator(iterator):
        return one_step(next(iterator))

    if not model.run_eagerly:
        one_step = tf.function(one_step, reduce_retracing=True, jit_compile=bool(model.jit_compile))
        from_iterator = tf.function(from_iterator, reduce_retracing=True)

    def function(iterator):
        if isinstance(iterator, tf.data.Iterator | tf.distribute.DistributedIterator):
            return from_iterator(iterator)
        return one_step(next(iter(iterator)))

    return function


def _local_mean(strategy, value):
    if isinstance(value, tf.distribute.DistributedValues):
        return tf.reduce_mean(tf.stack(strategy.experimental_local_results(value)), axis=0)
    return value


def _metrics_reader(model):
    """A function returning every metric's result over all replicas of all workers (as Python numbers).

    Keras' metric variables are sync-on-read sums: each replica accumulates its own examples, and a read outside
    the replicas adds them up (an all-reduce across workers). So AUC, F1 or Pearson r come out as one device would
    compute them on the whole global batches, not as a mean of per-replica values.
    """
    strategy = model.distribute_strategy

    @tf.function
    def read():
        return model.get_metrics_result()

    def results() -> dict:
        with strategy.scope():
            return _python(read())

    return results


class _EpochOrder:
    """Draws the iterators of the training data as Keras' `fit` on one device does, so that each epoch trains on the
    same one: with a seeded, reshuffling `shuffle`, the draw decides the order. `fit`'s epoch iterator draws one at
    the start of each epoch and, for a dataset of known length, one more at the end of each complete epoch (for the
    next epoch, which then draws a fresh one anyway). A restart at epoch `e` discards the draws of epochs `0..e-1`."""

    def __init__(self, data, steps: int | None):
        self.data = data
        self.per_epoch = 2 if steps is not None else 1

    def skip(self, epochs: int) -> None:
        for _ in range(self.per_epoch * epochs):
            iter(self.data)

    def start(self):
        return iter(self.data)

    def end(self, complete: bool) -> None:
        if complete and self.per_epoch == 2:
            iter(self.data)


def _build(model, dataset) -> None:
    """Creates the model's, metrics' and optimizer's variables from the dataset's element spec (no batch is drawn, so
    the data order is untouched), under the strategy's scope: variables cannot be created inside `strategy.run`."""
    with model.distribute_strategy.scope():
        keras_compat.symbolic_build(model, dataset.element_spec)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)


def _distribute(strategy, dataset):
    if is_multi_worker(strategy):
        policy = dataset.options().experimental_distribute.auto_shard_policy
        if policy == tf.data.experimental.AutoShardPolicy.AUTO:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            dataset = dataset.with_options(options)
    return strategy.experimental_distribute_dataset(dataset)


def _known_steps(dataset) -> int | None:
    steps = int(dataset.cardinality())
    return steps if steps >= 0 else None


def _check_same_resume_point(strategy, resume: ResumePoint) -> None:
    """Every worker must go on from the same point (a backup directory not shared by the workers would make them
    run different numbers of steps and wait on each other forever): the sums of each value and of its square over
    the replicas match n*v and n*v^2 only when every replica holds v."""
    values = np.array([resume.epoch, resume.batch, float(resume.stopped)], np.float64)
    local = tf.constant(np.concatenate([values, values**2]), tf.float32)

    @tf.function
    def total():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(SUM, local))

    sums = np.asarray(strategy.experimental_local_results(total())[0])
    count = strategy.num_replicas_in_sync
    if not (np.allclose(sums[:3], count * values) and np.allclose(sums[3:], count * values**2)):
        raise RuntimeError(f"The workers resume from different points (this one from epoch {resume.epoch + 1}, batch "
                           f"{resume.batch}): every worker must see the chief's backup directory (shared storage).")


def _last_epoch_logs(model) -> dict | None:
    history = getattr(model, "history", None)
    if history is None or not history.history:
        return None
    return {key: values[-1] for key, values in history.history.items() if values}


def _python(logs) -> dict:
    return {key: float(np.asarray(value)) if np.ndim(value) == 0 else np.asarray(value) for key, value in logs.items()}
