"""Does the toolkit cost anything? Training throughput of the mtl_keras text model against the same architecture
written by hand in plain Keras (dict outputs, dict losses, dict loss_weights, dict metrics), in one process.

    python benchmarks/text_overhead.py [--examples 8192] [--repeats 5]

The architecture is the text job's (embedding 200, CNN kernels 2/3/4 x 128 filters, heads of 64 units) without
the frozen lexicon channels, which plain Keras would add the same way. Both models see the same texts and labels
through the same tf.data pipeline, with the same batch size and optimizer. Repetitions alternate (A B A B ...) so
that drift in machine speed hits both alike. Prints examples/s from the median training step (robust to pauses of
the machine), and from the best and median epochs, and the ratios mtl_keras / plain (goal: >= 0.97).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl_keras import build_text_model, compile_multitask, load_vader, make_text_dataset, set_global_seed  # noqa: E402
from mtl_keras.datasets.tokenization import build_vocabulary, split_graph, standardize_graph  # noqa: E402

MAX_LENGTH, EMBEDDING_DIM, FILTERS, KERNELS, HIDDEN, DROPOUT = 64, 200, 128, (2, 3, 4), 64, 0.3  # the text job


def plain_keras_model(vocabulary):
    """The default text architecture with Keras' own layers only."""
    text = keras.Input(shape=(), dtype="string", name="text")
    tokens = keras.layers.TextVectorization(standardize=standardize_graph, split=split_graph, vocabulary=vocabulary,
                                            output_sequence_length=MAX_LENGTH)(text)
    embedded = keras.layers.Embedding(len(vocabulary) + 2, EMBEDDING_DIM, mask_zero=True)(tokens)
    pooled = [keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(FILTERS, k, padding="same",
                                                                    activation="relu")(embedded)) for k in KERNELS]
    shared = keras.layers.Dropout(DROPOUT)(keras.layers.Concatenate()(pooled))

    def head(units, activation, name):
        hidden = keras.layers.Dense(HIDDEN, activation="relu")(keras.layers.Dropout(DROPOUT)(shared))
        return keras.layers.Dense(units, activation=activation, name=name)(keras.layers.Dropout(DROPOUT)(hidden))

    model = keras.Model(text, {"sentiment": head(1, "sigmoid", "sentiment"), "intensity": head(1, None, "intensity"),
                               "domain": head(4, "softmax", "domain")})
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={"sentiment": "binary_crossentropy", "intensity": "mse", "domain": "sparse_categorical_crossentropy"},
        loss_weights={"sentiment": 1.0, "intensity": 1.0, "domain": 1.0},
        weighted_metrics={"sentiment": ["accuracy", keras.metrics.AUC(name="auc")],
                          "intensity": ["mae", keras.metrics.RootMeanSquaredError(name="rmse")],
                          "domain": ["accuracy"]},
        jit_compile=False,
    )
    return model


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training step: a pause of the machine shows up in a few steps, not in their median."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def time_epoch(model, dataset) -> tuple[float, list[float]]:
    """Epoch seconds and the seconds of each of its steps."""
    timer = StepTimer()
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    return time.perf_counter() - start, timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    warnings.filterwarnings("ignore", message=".*does not support masking.*")  # the plain convolutions
    set_global_seed()
    splits = load_vader()
    tasks = splits.tasks
    texts = splits.train.inputs[: args.examples]
    labels = {name: values[: args.examples] for name, values in splits.train.labels.items()}
    vocabulary = build_vocabulary(splits.train.inputs, max_tokens=30000)
    dataset = make_text_dataset(texts, labels, tasks, batch_size=args.batch_size).cache()

    toolkit = compile_multitask(
        build_text_model(tasks, vocabulary=vocabulary, max_length=MAX_LENGTH, embedding_dim=EMBEDDING_DIM,
                         encoder_options={"filters": FILTERS, "kernel_sizes": KERNELS}, head_hidden_units=(HIDDEN,),
                         dropout=DROPOUT),
        tasks, optimizer=keras.optimizers.Adam(1e-3),
        # the same metric work as the plain model (the toolkit's defaults compute more: F1, macro metrics, Pearson r)
        metrics={"sentiment": ["accuracy", "auc"], "intensity": ["mae", "rmse"], "domain": ["accuracy"]})
    plain = plain_keras_model(vocabulary)
    print(f"parameters: mtl_keras {toolkit.count_params():,}, plain Keras {plain.count_params():,}")
    for model in (toolkit, plain):  # trace and warm caches
        time_epoch(model, dataset.take(8))

    seconds = {"mtl_keras": [], "plain": []}
    steps = {"mtl_keras": [], "plain": []}
    for repeat in range(args.repeats):
        for name, model in (("mtl_keras", toolkit), ("plain", plain)) if repeat % 2 == 0 else (
                ("plain", plain), ("mtl_keras", toolkit)):
            epoch_seconds, step_seconds = time_epoch(model, dataset)
            seconds[name].append(epoch_seconds)
            steps[name].extend(step_seconds)
    # On shared VMs whole seconds go missing now and then; the median step is the estimate least disturbed by them,
    # the best and median epochs are printed beside it.
    best = {name: args.examples / min(values) for name, values in seconds.items()}
    median = {name: args.examples / statistics.median(values) for name, values in seconds.items()}
    for name in seconds:
        print(f"{name:>10}: {best[name]:8.0f} examples/s best, {median[name]:8.0f} median  "
              f"(epoch seconds: {', '.join(f'{s:.2f}' for s in seconds[name])})")
    step_rate = {name: args.batch_size / statistics.median(values) for name, values in steps.items()}
    for name in steps:
        print(f"{name:>10}: {step_rate[name]:8.0f} examples/s from the median step ({len(steps[name])} steps)")
    print(f"ratio mtl_keras / plain: {step_rate['mtl_keras'] / step_rate['plain']:.3f} (median steps), "
          f"{best['mtl_keras'] / best['plain']:.3f} (best epochs), "
          f"{median['mtl_keras'] / median['plain']:.3f} (median epochs); goal >= 0.97")
    print(f"device: {tf.config.list_physical_devices('GPU') or 'CPU'}; tensorflow {tf.__version__}, "
          f"keras {keras.__version__}; numpy {np.__version__}")


if __name__ == "__main__":
    main()
