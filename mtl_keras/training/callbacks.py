"""Callbacks that guard training."""

from __future__ import annotations

import math
import warnings

import keras

from mtl_keras.backbones.trunk import pretrained_trunks


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first batch whose loss (total or any task's) is NaN or infinite, and remembers where.

    Unlike `keras.callbacks.TerminateOnNaN`, it names the task whose loss went bad, and `raise_if_failed()` turns the
    stop into an error, so a caller can refuse to save or export a diverged model.
    """

    # Keras may call the batch hooks from a thread (training does not wait on each step's logs), since this callback
    # only reads them: training stops a step or two after the bad one, and the message names the bad one.
    async_safe = True

    def __init__(self):
        super().__init__()
        self.failure: str | None = None

    def on_train_batch_begin(self, batch, logs=None):
        self._first_batch = batch  # of this call: Keras may run several steps per call (steps_per_execution)

    def on_train_batch_end(self, batch, logs=None):
        bad = {key: value for key, value in (logs or {}).items()
               if key.endswith("loss") and not math.isfinite(float(value))}
        if bad and self.failure is None:
            steps = (self.params or {}).get("steps")
            batch = batch if steps is None else min(batch, steps - 1)  # Keras gives a short last call's full span
            first = min(getattr(self, "_first_batch", batch), batch)
            where = f"batch {batch + 1}" if first == batch else f"batches {first + 1}-{batch + 1} (one call)"
            self.failure = (f"non-finite loss at epoch {self._epoch + 1}, {where}: "
                            + ", ".join(f"{key}={value}" for key, value in sorted(bad.items()))
                            + "; training stopped (try a lower learning rate, or check inputs and targets).")
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_begin(self, logs=None):
        self.failure = None
        self._epoch = 0
        self._first_batch = 0

    def raise_if_failed(self) -> None:
        if self.failure:
            raise NonFiniteLossError(self.failure)

    def backup_state(self) -> dict:
        """What a `TrainingBackup` keeps of this callback, to resume a training."""
        return {"failure": self.failure}

    def restore_backup_state(self, state: dict) -> None:
        self.failure = state["failure"]


class MeanRelativeValidationLoss(keras.callbacks.Callback):
    """Adds `val_mean_relative_loss` to the epoch logs: the mean over tasks of each task's validation loss divided by
    its value after the first epoch.

    Total validation loss mixes scales (an MSE in squared rating units beside cross-entropies), so stopping on it
    follows whichever task has the largest loss. The relative version gives each task an equal say, whatever its
    units or loss weight. Put this callback before `EarlyStopping(monitor="val_mean_relative_loss")`.
    """

    def __init__(self, task_names):
        super().__init__()
        self.task_names = list(task_names)
        self.reference: dict[str, float] | None = None

    def on_train_begin(self, logs=None):
        self.reference = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        keys = {name: f"val_{name}_loss" for name in self.task_names}
        if not all(key in logs for key in keys.values()):
            keys = {"total": "val_loss"}  # a single-output model logs only its total loss
        current = {name: float(logs[key]) for name, key in keys.items()}
        if self.reference is None:
            self.reference = current
        ratios = [value / self.reference[name] if self.reference[name] > 0 else 0.0 for name, value in current.items()]
        logs["val_mean_relative_loss"] = sum(ratios) / len(ratios)

    def backup_state(self) -> dict:
        """What a `TrainingBackup` keeps of this callback (the first epoch's losses), to resume a training."""
        return {"reference": self.reference}

    def restore_backup_state(self, state: dict) -> None:
        self.reference = state["reference"]


class EpochHooks(keras.callbacks.Callback):
    """Calls the weighting's epoch-level update (DWA), restarts the epoch means of the balancing logs, and applies
    pretrained backbones' fine-tuning schedules (`PretrainedTrunk.set_epoch`: unfrozen after N epochs, also when a
    training resumes past them)."""

    def on_epoch_begin(self, epoch, logs=None):
        if getattr(self.model, "_multitask_step", None) is not None:
            self.model.balancing_monitor.reset()
        if any([trunk.set_epoch(epoch) for trunk in pretrained_trunks(self.model)]):
            self.model.make_train_function(force=True)  # as Keras asks after a change of `trainable`

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self.model, "_multitask_step", None) is not None:
            self.model.weighting.on_epoch_end()


class TaskLossScaleWarning(UserWarning):
    """One task's weighted loss is much larger than another's at the start of training (see `LossScaleCheck`)."""


class LossScaleCheck(keras.callbacks.Callback):
    """After the first training batch, warns (`TaskLossScaleWarning`) when, under equal static weights, one task's
    loss is more than `ratio` times another's: the larger task then dominates the shared layers' gradients, often
    only because its target is in larger units (a regression target in hours, say). Weights that differ are taken as
    chosen with the scales in mind: no warning then. The warning gives every task's first loss and the remedies.
    `MultiTaskModel.fit` adds it under static weighting; filter the warning class to silence it.
    """

    async_safe = True  # reads the logs only

    def __init__(self, task_names, ratio: float = 10.0):
        super().__init__()
        self.task_names, self.ratio = list(task_names), float(ratio)
        self._checked = False

    def on_train_begin(self, logs=None):
        self._checked = False

    def on_train_batch_end(self, batch, logs=None):
        if self._checked or not logs:
            return
        self._checked = True
        losses = {name: (float(logs[f"{name}_loss"]), float(logs.get(f"{name}_weight", 1.0)))
                  for name in self.task_names if f"{name}_loss" in logs}
        weighted = {name: loss * weight for name, (loss, weight) in losses.items()
                    if math.isfinite(loss * weight) and loss * weight > 0}
        if len(weighted) < 2 or len({weight for _, weight in losses.values()}) > 1:
            return  # weights the user chose apart have been set with the scales in mind
        largest, smallest = max(weighted, key=weighted.get), min(weighted, key=weighted.get)
        factor = weighted[largest] / weighted[smallest]
        if factor <= self.ratio:
            return
        first = ", ".join(f"{name} {loss:.4g} (weight {weight:g})" for name, (loss, weight) in losses.items())
        matching = weighted[smallest] / losses[largest][0]
        warnings.warn(
            f"At the first logged step, the weighted loss of task {largest!r} is {factor:.0f}x that of task "
            f"{smallest!r} (first losses: {first}): {largest!r} will dominate the shared layers. Remedies: a smaller "
            f"loss weight for it (e.g. loss_weights={{{largest!r}: {matching:.3g}}} puts it on the scale of "
            f"{smallest!r}), a scale-free weighting (weighting='uncertainty' or 'gls'), or a target in smaller units "
            f"(standardize a regression target).",
            TaskLossScaleWarning, stacklevel=2)


def with_multitask_callbacks(model, callbacks) -> list:
    """`callbacks` with what a compiled `MultiTaskModel`'s training needs in front (`EpochHooks`) and, under equal
    static weights, `LossScaleCheck` at the end; each only once, so that `fit` and our loop (which `fit` may call)
    can both ask."""
    callbacks = list(callbacks or [])
    if getattr(model, "_multitask_step", None) is None:
        return callbacks
    if not any(isinstance(c, EpochHooks) for c in callbacks):
        callbacks.insert(0, EpochHooks())
    if (model.weighting.method_name == "static" and len(model.output) > 1
            and not any(isinstance(c, LossScaleCheck) for c in callbacks)):
        callbacks.append(LossScaleCheck(list(model.output)))
    return callbacks
