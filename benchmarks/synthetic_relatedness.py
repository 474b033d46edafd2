"""How task relatedness moves the gap between sharing architectures (the MMoE paper's synthetic experiment).

    python benchmarks/synthetic_relatedness.py [--correlations 1.0 0.9 0.5] [--seeds 1337 1338 1339]
                                               [--plot relatedness.png]

Data: `mtl_keras.datasets.synthetic.synthetic_relatedness` (d=100, c=1, m=10 sines, noise sd 0.01; 10,000 training,
1,000 validation, 1,000 test examples), two regression tasks whose weight vectors have cosine p. Models of similar
size (about 13k weights in the sharing part), each with towers of 8 units per task:
shared-bottom (one layer of 128), MMoE (8 experts of 16), PLE/CGC (4 shared experts and 2 per task, of 16).
Trained with Adam (1e-3, batch 128) for at most 60 epochs, stopping on the validation loss (patience 5, best
weights restored). Prints the test MSE averaged over the two tasks, mean ± sd over seeds, per p and model, and
MMoE's and PLE's relative gain over the shared bottom.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mtl_keras import attach_shared_heads, compile_multitask, make_dataset, set_global_seed  # noqa: E402
from mtl_keras.datasets.synthetic import synthetic_relatedness  # noqa: E402

MODELS = {
    "shared_bottom": ("hard", {"units": (128,)}),
    "mmoe": ("mmoe", {"num_experts": 8, "expert_units": (16,)}),
    "ple": ("ple", {"num_levels": 1, "num_shared_experts": 4, "num_task_experts": 2, "expert_units": (16,)}),
}


def test_mse(model_name: str, p: float, seed: int, epochs: int) -> float:
    splits = synthetic_relatedness(p, seed=seed)
    set_global_seed(seed)
    sharing, options = MODELS[model_name]
    inputs = keras.Input((splits.train.inputs.shape[1],), name="x")
    model = keras.Model(inputs, attach_shared_heads(inputs, splits.tasks, sharing, options, head_hidden_units=(8,)))
    compile_multitask(model, splits.tasks, optimizer=keras.optimizers.Adam(1e-3))
    train = make_dataset(splits.train.inputs, splits.train.labels, splits.tasks, batch_size=128, shuffle=True,
                         seed=seed)
    validation = make_dataset(splits.validation.inputs, splits.validation.labels, splits.tasks, batch_size=1000)
    model.fit(train, validation_data=validation, epochs=epochs, verbose=0, callbacks=[
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)])
    predictions = model.predict(splits.test.inputs, batch_size=1000, verbose=0)
    return float(np.mean([np.mean((predictions[t.name][:, 0] - splits.test.labels[t.name]) ** 2)
                          for t in splits.tasks]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--correlations", type=float, nargs="+", default=[1.0, 0.9, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--plot", default=None, help="save a plot of test MSE against p here (needs matplotlib)")
    parser.add_argument("--output", default=None, help="write every result as JSON here")
    args = parser.parse_args()

    results = {}
    for p in args.correlations:
        for name in args.models:
            results[(p, name)] = [test_mse(name, p, seed, args.epochs) for seed in args.seeds]
            print(f"p={p:<4} {name:<14} test MSE per seed: "
                  + ", ".join(f"{v:.4f}" for v in results[(p, name)]), flush=True)

    print(f"\nTest MSE (mean of the two tasks), mean ± sd over seeds {args.seeds}; gain = 1 - MSE / shared-bottom MSE")
    print(f"{'p':>5} " + " ".join(f"{name:>17}" for name in args.models) + "   gains")
    for p in args.correlations:
        cells = [f"{np.mean(results[(p, n)]):.4f} ± {statistics.pstdev(results[(p, n)]):.4f}" for n in args.models]
        base = np.mean(results.get((p, "shared_bottom"), [np.nan]))
        gains = ", ".join(f"{n} {1 - np.mean(results[(p, n)]) / base:+.1%}" for n in args.models
                          if n != "shared_bottom")
        print(f"{p:>5} " + " ".join(f"{c:>17}" for c in cells) + f"   {gains}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump([{"p": p, "model": n, "test_mse": v} for (p, n), v in results.items()], handle, indent=2)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.5))
        for name in args.models:
            means = [np.mean(results[(p, name)]) for p in args.correlations]
            spreads = [statistics.pstdev(results[(p, name)]) for p in args.correlations]
            axis.errorbar(args.correlations, means, yerr=spreads, marker="o", capsize=3, label=name)
        axis.set_xlabel("task correlation p (cosine of w1, w2)")
        axis.set_ylabel("test MSE (mean of 2 tasks)")
        axis.invert_xaxis()
        axis.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
