"""What `steps_per_execution="auto"` (the default of `MultiTaskModel.compile`) buys: ms per training step with one
step per call of the train function against `AUTO_STEPS_PER_EXECUTION` per call, side by side.

The model is issue 18's 3-task MLP (64 inputs, shared 256-256, heads 64-1, batch 256, Adam) and, with `--text`,
the text job's model on 4,096 VADER texts. Each round builds a fresh model for each setting (alternating which goes
first) and times one epoch after a warm-up epoch; the figures are medians over the rounds and their ratio.

    python benchmarks/steps_per_execution.py --rounds 7 [--text]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mtl_keras as mk  # noqa: E402
from mtl_keras.training.model import AUTO_STEPS_PER_EXECUTION  # noqa: E402

BATCH, STEPS = 256, 64


def mlp_model_and_data():
    tasks = [mk.Task(f"t{k}", "regression") for k in range(3)]
    inputs = keras.Input((64,))
    shared = keras.layers.Dense(256, activation="relu")(keras.layers.Dense(256, activation="relu")(inputs))
    outputs = {task.name: keras.layers.Dense(1, name=task.name)(keras.layers.Dense(64, activation="relu")(shared))
               for task in tasks}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, 64)).astype("float32")
    y = {task.name: x[:, k:k + 1] * 0.5 for k, task in enumerate(tasks)}
    return mk.MultiTaskModel(inputs, outputs, tasks=tasks), tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def text_model_and_data():
    splits = mk.load_vader(limit=4096)
    model = mk.build_text_model(splits.tasks, texts=splits.train.inputs)
    data = mk.make_text_dataset(splits.train.inputs, splits.train.labels, splits.tasks, batch_size=32)
    return model, data


def ms_per_step(build, steps_per_execution) -> float:
    model, data = build()
    model.compile(optimizer="adam", steps_per_execution=steps_per_execution)
    model.fit(data, epochs=1, verbose=0)  # traces, builds
    steps = int(model.optimizer.iterations)
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    return (time.perf_counter() - start) * 1000.0 / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--text", action="store_true", help="the text job's model instead of the MLP")
    args = parser.parse_args()
    build = text_model_and_data if args.text else mlp_model_and_data
    times = {1: [], "auto": []}
    for round_ in range(args.rounds):
        for setting in ((1, "auto") if round_ % 2 == 0 else ("auto", 1)):
            times[setting].append(ms_per_step(build, setting))
        print(f"round {round_ + 1}: 1 step/call {times[1][-1]:.2f} ms, auto ({AUTO_STEPS_PER_EXECUTION}) "
              f"{times['auto'][-1]:.2f} ms", flush=True)
    one, auto = statistics.median(times[1]), statistics.median(times["auto"])
    print(f"{'text job model' if args.text else '3-task MLP'}: median ms/step over {args.rounds} rounds: one step per "
          f"call {one:.2f}, steps_per_execution='auto' {auto:.2f}; speed ratio {one / auto:.2f}x")


if __name__ == "__main__":
    main()
