"""What do the default metrics add to a short `fit`? A small three-task model (binary, regression, multiclass with
three classes) trained with `fit(data, validation_data=data, epochs=2)`, with no metrics, with the metrics of an
earlier commit (Keras' own update paths: `keras.metrics.AUC`, `Precision`, `Recall`, `F1Score`, and our metric
classes as they were then) and with the kinds' current defaults (`Task.build_metrics()`), in one process.

    python benchmarks/metric_trace_cost.py [--before 90ca614] [--rounds 5]

For small models the metrics' cost is mostly fixed: Keras traces them three times per fit (the symbolic build, the
train function, the test function), and tracing is Python work. Rounds alternate the order of the three variants so
that drift in machine speed hits each alike; every fit builds a fresh model, so each pays its tracing. Prints the
median fit seconds of each variant, the metrics' overhead (fit seconds minus the fit without metrics), the ratio of
the overheads before / after, and the median second-epoch seconds (the steps once traced).

`--before` names the commit whose `mtl_keras/metrics.py` is read (with `git show`) for the earlier classes; loading
it re-registers those names for `.keras` loading in this process only, which this script never does.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl_keras import Task, set_global_seed  # noqa: E402
from mtl_keras.tasks import AUC_THRESHOLDS  # noqa: E402

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
TASKS = [Task("binary", "binary"), Task("amount", "regression"), Task("topic", "multiclass", num_classes=3)]


def load_metrics_module(commit: str) -> types.ModuleType:
    """`mtl_keras/metrics.py` as it was at `commit`, as a module of its own."""
    source = subprocess.run(["git", "show", f"{commit}:mtl_keras/metrics.py"], cwd=REPOSITORY, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"metrics_at_{commit}")
    exec(compile(source, f"{commit}:mtl_keras/metrics.py", "exec"), module.__dict__)
    return module


def metrics_before(old) -> dict[str, list[keras.metrics.Metric]]:
    """The defaults of the kinds at the earlier commit, with that commit's own metric classes (`old`)."""
    return {
        "binary": [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.Precision(name="precision"),
                   keras.metrics.Recall(name="recall"),
                   keras.metrics.F1Score(average="micro", threshold=0.5, name="f1"),
                   keras.metrics.AUC(num_thresholds=AUC_THRESHOLDS, name="auc")],
        "amount": [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse"),
                   old.PearsonR(name="pearson_r")],
        "topic": [keras.metrics.SparseCategoricalAccuracy(name="accuracy"), old.MacroPrecision(3, name="precision"),
                  old.MacroRecall(3, name="recall"), old.MacroF1(3, name="f1"),
                  old.SparseMacroAUC(3, num_thresholds=AUC_THRESHOLDS, name="auc")],
    }


def metrics_now() -> dict[str, list[keras.metrics.Metric]]:
    return {task.name: task.build_metrics() for task in TASKS}


def make_data(examples: int, batch_size: int) -> tf.data.Dataset:
    """Features, labels per task and sample weights with some zeros (missing labels), as `make_dataset` gives."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(examples, 8)).astype("float32")
    labels = {"binary": (features[:, :1] > 0).astype("float32"), "amount": features[:, 1:2] * 2.0,
              "topic": rng.integers(0, 3, size=(examples, 1)).astype("float32")}
    weights = {name: (rng.random(examples) > 0.1).astype("float32") for name in labels}
    return tf.data.Dataset.from_tensor_slices((features, labels, weights)).batch(batch_size).cache()


def build_model(metrics: dict[str, list] | None) -> keras.Model:
    inputs = keras.Input((8,), name="features")
    shared = keras.layers.Dense(16, activation="relu")(inputs)
    outputs = {"binary": keras.layers.Dense(1, activation="sigmoid", name="binary")(shared),
               "amount": keras.layers.Dense(1, name="amount")(shared),
               "topic": keras.layers.Dense(3, activation="softmax", name="topic")(shared)}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss={"binary": "binary_crossentropy", "amount": "mse",
                                          "topic": "sparse_categorical_crossentropy"},
                  weighted_metrics=metrics, jit_compile=False)
    return model


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def time_fit(metrics, data) -> tuple[float, float]:
    """Seconds of one `fit` of a fresh model (its tracing included), and of its second epoch."""
    keras.utils.clear_session()
    timer = EpochTimer()
    start = time.perf_counter()
    build_model(metrics).fit(data, validation_data=data, epochs=2, verbose=0, shuffle=False, callbacks=[timer])
    return time.perf_counter() - start, timer.seconds[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="90ca614", help="the commit whose metric classes are 'before'")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    set_global_seed()
    old = load_metrics_module(args.before)
    data = make_data(args.examples, args.batch_size)
    variants = {"none": lambda: None, "before": lambda: metrics_before(old), "after": metrics_now}
    time_fit(metrics_now(), data)  # warm-up: first-use costs of TensorFlow, paid once per process
    fits = {name: [] for name in variants}
    epochs = {name: [] for name in variants}
    order = list(variants)
    for round_number in range(args.rounds):
        for name in order[round_number % 3:] + order[:round_number % 3]:
            fit_seconds, epoch_seconds = time_fit(variants[name](), data)
            fits[name].append(fit_seconds)
            epochs[name].append(epoch_seconds)
        print(f"round {round_number + 1}: " + ", ".join(f"{name} {fits[name][-1]:.2f} s" for name in variants),
              flush=True)

    median = {name: statistics.median(values) for name, values in fits.items()}
    overhead = {name: median[name] - median["none"] for name in ("before", "after")}
    steps = args.examples // args.batch_size
    print(f"\n{args.rounds} rounds, {steps} steps an epoch, fit(data, validation_data=data, epochs=2), medians:")
    for name in variants:
        print(f"{name:>7}: fit {median[name]:6.2f} s   second epoch {statistics.median(epochs[name]):6.3f} s")
    print(f"metrics' overhead per fit: before {overhead['before']:.2f} s, after {overhead['after']:.2f} s; "
          f"ratio before / after {overhead['before'] / max(overhead['after'], 1e-3):.1f}x")
    print(f"whole fit, before / after: {median['before'] / median['after']:.2f}x")
    print(f"device: {tf.config.list_physical_devices('GPU') or 'CPU'}; tensorflow {tf.__version__}, "
          f"keras {keras.__version__}; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
