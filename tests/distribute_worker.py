"""One training process of the distribution tests (tests/test_distribute.py): a tiny text model, trained under the
strategy asked for, its final weights and history written to `--out`.

    python tests/distribute_worker.py --out DIR [--strategy multi_worker] [--gradients static,pcgrad]
                                      [--backup DIR --save-every N] [--exit-at EPOCH:BATCH]

Under `--strategy multi_worker` the process reads its place in the cluster from TF_CONFIG. `--exit-at 1:3` kills
the process (os._exit, no clean-up) after batch 3 of epoch 1 (both 0-based) of the last training it runs (the last
of `--gradients`), to test resuming from a backup.
The test imports this module for the data and the model, so that its reference training is the same one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

TEXTS = ["I love it :)", "terrible, awful service", "the market fell today", "what a great movie!!!",
         "not good at all", "stocks and bonds rallied", "meh", "best phone ever"]
EXAMPLES, BATCH, EPOCHS, SEED, LEARNING_RATE = 64, 16, 2, 7, 0.01
EXIT_CODE = 17


def data():
    """64 texts, three tasks with missing sentiment labels, and their datasets (training: shuffled every epoch)."""
    from mtl_keras import Task, make_text_dataset, set_global_seed

    set_global_seed(SEED)  # a shuffle's order depends on TensorFlow's global seed too, whatever ran before
    rng = np.random.default_rng(0)
    texts = np.array([f"{TEXTS[i % len(TEXTS)]} {word}" for i, word in enumerate(rng.integers(0, 50, EXAMPLES))],
                     dtype=object)
    labels = {"sentiment": rng.integers(-1, 2, EXAMPLES), "intensity": rng.normal(size=EXAMPLES).astype("float32"),
              "domain": rng.integers(0, 3, EXAMPLES)}
    # One metric each, none of them a mean of per-example values: the logs check that metrics add up over workers.
    tasks = [Task("sentiment", "binary", metrics=["auc"]), Task("intensity", "regression", metrics=["pearson_r"]),
             Task("domain", "multiclass", num_classes=3, metrics=["f1"])]
    train = make_text_dataset(texts, labels, tasks, batch_size=BATCH, shuffle=True, seed=SEED)
    validation = make_text_dataset(texts[:24], {k: v[:24] for k, v in labels.items()}, tasks, batch_size=BATCH)
    return texts, tasks, train, validation


def build(texts, tasks, gradient: str):
    """The tiny text model, compiled; dropout 0, so that one device and several replicas compute the same."""
    import keras

    from mtl_keras import build_text_model, compile_multitask, set_global_seed

    set_global_seed(SEED)
    model = build_text_model(tasks, texts=texts, embedding_dim=8, max_length=8, head_hidden_units=(8,), dropout=0.0,
                             encoder_options={"filters": 8, "kernel_sizes": (2, 3)})
    compile_multitask(model, tasks, optimizer=keras.optimizers.Adam(LEARNING_RATE),
                      gradient=None if gradient == "static" else gradient)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--strategy", default="multi_worker")
    parser.add_argument("--gradients", default="static")
    parser.add_argument("--backup", type=Path, default=None)
    parser.add_argument("--save-every", type=int, default=None)
    parser.add_argument("--exit-at", default=None, help="EPOCH:BATCH, 0-based")
    args = parser.parse_args(argv)

    from mtl_keras.distribute import get_strategy

    strategy = get_strategy(args.strategy)  # first: a multi-worker strategy must exist before other TF work

    import keras

    from mtl_keras.training.backup import TrainingBackup

    cluster = json.loads(os.environ.get("TF_CONFIG", "{}"))
    name = f"worker{cluster.get('task', {}).get('index', 0)}"
    workers = len(cluster.get("cluster", {}).get("worker", [None]))

    class ExitAt(keras.callbacks.Callback):
        """Kills the process after a batch, once every worker has finished it: a collective's receiver fetches
        its buffers from the sender after the sender's step has returned, so a worker that died at once could
        take its peer down with "Socket closed" in the middle of the same step."""

        def __init__(self, epoch: int, batch: int):
            super().__init__()
            self.exit_epoch, self.exit_batch, self.epoch = epoch, batch, -1

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) != (self.exit_epoch, self.exit_batch):
                return
            (args.out / f"exit-{name}").touch()
            deadline = time.monotonic() + 120
            while len(list(args.out.glob("exit-worker*"))) < workers and time.monotonic() < deadline:
                time.sleep(0.05)
            os._exit(EXIT_CODE)

    args.out.mkdir(parents=True, exist_ok=True)
    gradients = args.gradients.split(",")
    for gradient in gradients:
        texts, tasks, train, validation = data()  # fresh datasets: each training draws its own epochs' orders
        with strategy.scope():
            model = build(texts, tasks, gradient)
        killed = args.exit_at and gradient == gradients[-1]
        callbacks = [ExitAt(*map(int, args.exit_at.split(":")))] if killed else []
        backup = TrainingBackup(args.backup / gradient, save_every=args.save_every) if args.backup else None
        history = model.fit(train, validation_data=validation, epochs=EPOCHS, verbose=0, callbacks=callbacks,
                            backup=backup, loop="custom")
        np.savez(args.out / f"{gradient}-{name}.npz", *model.get_weights())
        (args.out / f"{gradient}-{name}.json").write_text(json.dumps(history.history))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the results are written; skip the seconds TensorFlow takes to tear a multi-worker runtime down
