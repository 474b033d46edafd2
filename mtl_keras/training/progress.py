"""`TaskProgressBar`: Keras' progress bar, reading one line per step for several tasks.

Keras shows every logged number: for three tasks with their default metrics, 21 per step, wrapped over several
terminal lines. This bar shows the total loss and, per task, its loss and one headline metric (`Task.headline_metric`,
the first of the task's metrics: its kind's first in `mtl_keras.tasks.KINDS` by default), as `task LOSS METRIC
VALUE`; at the end of an epoch the validation figures follow on a line of their own. Three tasks fit on 160 columns.
Only the display is filtered: History, the logs other callbacks get, TensorBoard and `history.json` keep every
metric. `MultiTaskModel.fit` installs it when it is verbose and the callbacks hold no progress bar of the user's.

Example:

>>> from mtl_keras.tasks import Task
>>> bar = TaskProgressBar([Task("sentiment", "binary"), Task("intensity", "regression")])
>>> bar.shown({"loss": 1.5, "sentiment_loss": 0.69314, "sentiment_accuracy": 0.5, "sentiment_auc": 0.61,
...            "intensity_loss": 0.80686, "intensity_mae": 0.7})
{'loss': '1.5000', 'sentiment': '0.6931 accuracy 0.5000', 'intensity': '0.8069 mae 0.7000'}
>>> bar.line(3, {"loss": 1.5, "sentiment_loss": 0.69314, "sentiment_accuracy": 0.5}).split(" - ", 1)[1]
'loss 1.5000 - sentiment 0.6931 accuracy 0.5000'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence

import keras

from mtl_keras.tasks import Task


def _number(value) -> str:
    value = float(value)
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3e}"


class TaskProgressBar(keras.callbacks.ProgbarLogger):
    """A `keras.callbacks.ProgbarLogger` that shows the total loss and each task's loss and headline metric.

    It is a `ProgbarLogger` so that Keras adds no bar of its own; the line is drawn here (`keras.utils.Progbar` shows
    one `name: value` pair per number, which is what takes the room). Validation inside `fit` is silent, as in Keras.

    Args:
        tasks: the tasks to show (default: the tasks the model carries, `MultiTaskModel.tasks`).
    """

    def __init__(self, tasks: Sequence[Task] | None = None):
        super().__init__()
        self.tasks = None if tasks is None else list(tasks)
        self._started = time.monotonic()
        self._last_width = 0
        self._dynamic = False

    def _tasks(self) -> list[Task]:
        if self.tasks is None:
            self.tasks = list(getattr(self.model, "tasks", None) or [])
        return self.tasks

    def shown(self, logs: Mapping | None, prefix: str = "") -> dict[str, str]:
        """What the bar shows of `logs` (entries starting with `prefix`, e.g. `val_`), as formatted text."""
        logs = logs or {}
        shown = {}
        if f"{prefix}loss" in logs:
            shown["loss"] = _number(logs[f"{prefix}loss"])
        for task in self._tasks():
            parts = []
            if f"{prefix}{task.name}_loss" in logs:
                parts.append(_number(logs[f"{prefix}{task.name}_loss"]))
            headline = f"{prefix}{task.name}_{task.headline_metric}"
            if headline in logs:
                parts.append(f"{task.headline_metric} {_number(logs[headline])}")
            if parts:
                shown[task.name] = " ".join(parts)
        return shown

    def line(self, step: int, logs: Mapping | None, prefix: str = "") -> str:
        """One line of the bar: steps, elapsed time, then `name value` pairs separated by ` - `."""
        target = self.target or step
        done = int(10 * step / target) if target else 10
        elapsed = time.monotonic() - self._started
        head = f"{step}/{target} [{'=' * done}{'.' * (10 - done)}] {elapsed:.0f}s"
        return " - ".join([head, *(f"{key} {value}" for key, value in self.shown(logs, prefix).items())])

    def _print(self, text: str, final: bool):
        if self._dynamic:
            padding = " " * max(0, self._last_width - len(text))
            sys.stdout.write(f"\r{text}{padding}" + ("\n" if final else ""))
            self._last_width = 0 if final else len(text)
        elif final:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._dynamic = sys.stdout.isatty()  # as Keras: redraw one line on a terminal, print whole lines elsewhere

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._last_width, self.seen = time.monotonic(), 0, 0
        if self.verbose and self.epochs > 1:
            self._print(f"Epoch {epoch + 1}/{self.epochs}", final=True)

    def on_train_batch_end(self, batch, logs=None):
        self.seen = batch + 1
        if self.verbose == 1 and self._tasks():
            self._print(self.line(self.seen, logs), final=False)
        elif not self._tasks():
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if not self._tasks():
            return super().on_epoch_end(epoch, logs)
        if not self.verbose:
            return None
        self._print(self.line(self.seen, logs), final=True)
        validation = self.shown(logs, prefix="val_")
        if validation:
            self._print(" - ".join(["validation", *(f"{key} {value}" for key, value in validation.items())]),
                        final=True)
        return None
