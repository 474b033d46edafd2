"""Would one batched Jacobian beat T backward passes for the per-task gradients? Timed side by side.

    python benchmarks/batched_task_gradients.py [--rounds 60] [--tasks 3]

On the 3-task MLP of issue 18 (64 inputs, shared 256-256 ReLU, heads 64-1, batch 256), the per-task gradients of
the shared weights (the matrix the gradient methods combine) are computed two ways inside one `tf.function` each:
T `tape.gradient` calls on a persistent tape (what the step does) and one `tape.jacobian` of the stacked task
losses (pfor: the T backward passes vectorised into one). The two are checked equal, then called alternately
(which goes first alternates), and the medians printed. The step keeps T passes unless the Jacobian is faster.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--tasks", type=int, default=3)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(256, activation="relu")(keras.layers.Dense(256, activation="relu")(inputs))
    outputs = [keras.layers.Dense(1)(keras.layers.Dense(64, activation="relu")(hidden)) for _ in range(args.tasks)]
    model = keras.Model(inputs, outputs)
    shared = model.trainable_variables[:4]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(256, 64)), tf.float32)
    labels = [tf.constant(rng.normal(size=(256, 1)), tf.float32) for _ in range(args.tasks)]

    def task_losses():
        predictions = model(x, training=True)
        return [tf.reduce_mean((p - y) ** 2) for p, y in zip(predictions, labels, strict=True)]

    @tf.function
    def backward_passes():
        with tf.GradientTape(persistent=True) as tape:
            losses = task_losses()
        per_task = [tape.gradient(loss, shared) for loss in losses]
        return tf.stack([tf.concat([tf.reshape(g, [-1]) for g in gradients], 0) for gradients in per_task])

    @tf.function
    def jacobian():
        with tf.GradientTape() as tape:
            losses = tf.stack(task_losses())
        blocks = tape.jacobian(losses, shared, experimental_use_pfor=True)
        return tf.concat([tf.reshape(block, [args.tasks, -1]) for block in blocks], 1)

    difference = float(tf.reduce_max(tf.abs(backward_passes() - jacobian())))
    print(f"largest difference between the two: {difference:.2e}")
    times = {"backward passes": [], "jacobian": []}
    functions = {"backward passes": backward_passes, "jacobian": jacobian}
    for round_index in range(args.rounds):
        order = list(functions) if round_index % 2 == 0 else list(functions)[::-1]
        for name in order:
            start = time.perf_counter()
            functions[name]().numpy()
            times[name].append(time.perf_counter() - start)
    passes, batched = (statistics.median(times[name]) for name in ("backward passes", "jacobian"))
    print(f"median ms over {args.rounds} rounds: T backward passes {1000 * passes:.2f}, one jacobian "
          f"{1000 * batched:.2f}; jacobian / passes {batched / passes:.3f}")


if __name__ == "__main__":
    main()
