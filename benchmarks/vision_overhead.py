"""Two costs of the vision model, measured in one process.

    python benchmarks/vision_overhead.py [--images 4096] [--repeats 4] [--filters 8,16,32,64]

1. Training throughput of the mtl_keras scenes model (`build_vision_model` + `compile_multitask`) against the same
   architecture written by hand in plain Keras (stock layers, dict outputs, dict losses, loss weights and the same
   metrics), on the same tf.data pipeline. Repetitions alternate (A B A B ...). Prints images/s from the median
   step and the ratio mtl_keras / plain (goal: >= 0.97).
2. Inference: one multi-task model against the four single-task models of the same backbone that it replaces
   (parameters, and milliseconds per batch of 256 images, median of the repeats); goal: well under the sum.
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
from text_overhead import time_epoch  # noqa: E402  (same folder: the step timer both benchmarks use)

from mtl_keras import build_vision_model, compile_multitask, make_dataset, set_global_seed  # noqa: E402
from mtl_keras.datasets.scenes import load_scenes  # noqa: E402
from mtl_keras.jobs.vision import PRESETS  # noqa: E402

HIDDEN, DROPOUT, LOCATION = 64, 0.1, 8  # the vision job's heads and trunk
LOSS_WEIGHTS = {"segmentation": 1.0, "presence": 1.0, "count": 1.0, "box": 10.0}


def plain_keras_model(filters):
    """The scenes model with Keras' own layers only: U-Net trunk, pooled heads, a per-pixel head."""
    def block(x, width, convolutions=2):
        for _ in range(convolutions):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
        return x

    image = keras.Input((64, 64, 1), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(image)
    stages = []
    for depth, width in enumerate(filters):
        x = block(keras.layers.MaxPooling2D()(x) if depth else x, width)
        stages.append(x)
    bottleneck = x
    for depth in range(len(filters) - 2, -1, -1):
        x = keras.layers.UpSampling2D(interpolation="bilinear")(x)
        x = block(keras.layers.Concatenate()([x, stages[depth]]), filters[depth])
    read_only = keras.ops.stop_gradient(x)  # the per-pixel features, read by the image-level heads
    pooled = keras.layers.Concatenate()([
        keras.layers.GlobalAveragePooling2D()(bottleneck), keras.layers.GlobalMaxPooling2D()(bottleneck),
        keras.layers.GlobalAveragePooling2D()(read_only), keras.layers.GlobalMaxPooling2D()(read_only),
        keras.layers.Flatten()(keras.layers.Conv2D(LOCATION, 1, activation="relu")(bottleneck))])
    pooled = keras.layers.Dropout(DROPOUT)(pooled)

    def head(units, activation, name):
        hidden = keras.layers.Dense(HIDDEN, activation="relu")(keras.layers.Dropout(DROPOUT)(pooled))
        return keras.layers.Dense(units, activation=activation, name=name)(keras.layers.Dropout(DROPOUT)(hidden))

    outputs = {"segmentation": keras.layers.Conv2D(11, 1, activation="softmax", name="segmentation")(x),
               "presence": head(10, "sigmoid", "presence"), "count": head(1, None, "count"),
               "box": head(4, None, "box")}
    model = keras.Model(image, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss={"segmentation": "sparse_categorical_crossentropy", "presence": "binary_crossentropy", "count": "mse",
              "box": "mse"},
        loss_weights=LOSS_WEIGHTS,
        weighted_metrics={"segmentation": ["accuracy"], "presence": [keras.metrics.BinaryAccuracy()],
                          "count": ["mae"], "box": ["mae"]},
        jit_compile=False,
    )
    return model


def inference_ms(model, images, repeats):
    model.predict(images[:256], batch_size=256, verbose=0)  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(images, batch_size=256, verbose=0)
        times.append((time.perf_counter() - start) * 1000 * 256 / len(images))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--filters", default=",".join(map(str, PRESETS["scenes"].filters)))
    args = parser.parse_args()
    filters = tuple(int(f) for f in args.filters.split(","))

    set_global_seed()
    splits = load_scenes(num_train=args.images, num_validation=32, num_test=32)
    tasks = splits.tasks
    dataset = make_dataset(splits.train.inputs, splits.train.labels, tasks, batch_size=args.batch_size).cache()
    toolkit = compile_multitask(
        build_vision_model(tasks, filters=filters, head_hidden_units=(HIDDEN,), dropout=DROPOUT), tasks,
        loss_weights=LOSS_WEIGHTS, optimizer=keras.optimizers.Adam(2e-3),
        # the plain model's metric work (the toolkit's defaults compute more: IoU, F1, AUC, box IoU, ...)
        metrics={"segmentation": ["pixel_accuracy"], "presence": ["accuracy"], "count": ["mae"], "box": ["mae"]})
    plain = plain_keras_model(filters)
    print(f"parameters: mtl_keras {toolkit.count_params():,}, plain Keras {plain.count_params():,}")
    for model in (toolkit, plain):
        time_epoch(model, dataset.take(4))
    steps = {"mtl_keras": [], "plain": []}
    for repeat in range(args.repeats):
        order = (("mtl_keras", toolkit), ("plain", plain))
        for name, model in order if repeat % 2 == 0 else order[::-1]:
            steps[name].extend(time_epoch(model, dataset)[1])
    rate = {name: args.batch_size / statistics.median(values) for name, values in steps.items()}
    for name in rate:
        print(f"training {name:>10}: {rate[name]:7.1f} images/s (median of {len(steps[name])} steps)")
    print(f"training ratio mtl_keras / plain: {rate['mtl_keras'] / rate['plain']:.3f} (goal >= 0.97)")

    images = splits.train.inputs[:1024]
    multi = build_vision_model(tasks, filters=filters)
    singles = {task.name: build_vision_model([task], filters=filters) for task in tasks}
    multi_ms = inference_ms(multi, images, args.repeats)
    single_ms = {name: inference_ms(model, images, args.repeats) for name, model in singles.items()}
    single_params = sum(model.count_params() for model in singles.values())
    print(f"inference, 256 images: multi-task {multi_ms:.1f} ms, {multi.count_params():,} parameters")
    for name, ms in single_ms.items():
        print(f"  single-task {name:<13} {ms:6.1f} ms, {singles[name].count_params():,} parameters")
    print(f"  sum of single-task models: {sum(single_ms.values()):.1f} ms, {single_params:,} parameters")
    print(f"multi-task / sum of single-task: latency {multi_ms / sum(single_ms.values()):.2f}, "
          f"parameters {multi.count_params() / single_params:.2f}")
    print(f"device: {tf.config.list_physical_devices('GPU') or 'CPU'}; tensorflow {tf.__version__}, "
          f"keras {keras.__version__}; numpy {np.__version__}")


if __name__ == "__main__":
    main()
