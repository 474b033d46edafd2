"""How task relatedness moves the gap between sharing architectures (the MMoE paper's synthetic experiment).

    python benchmarks/synthetic_relatedness.py [--correlations 1.0 0.9 0.5] [--seeds 1337 1338 1339]
                                               [--plot relatedness.png]

Data: `mtl_keras.datasets.synthetic.synthetic_relatedness` (d=100, c=1, m=10 sines, noise sd 0.01; 50,000 training,
1,000 validation, 1,000 test examples), two regression tasks whose weight vectors have cosine p. (With 10,000
training examples every model overfits heavily, and the comparison measures regularisation rather than sharing.)
Models of similar size (about 13k weights in the sharing part), each with towers of 8 units per task:
shared-bottom (one layer of 128), MMoE (8 experts of 16), PLE/CGC (4 shared experts and 2 per task, of 16).
Adam (1e-3, batch 256). Test MSE (mean of the two tasks) is taken twice: after 10 epochs (how fast a model learns
both tasks), and at convergence (at most 100 epochs, stopping on the validation loss with patience 8, best
weights restored). Prints mean ± sd over seeds per p and model, and MMoE's and PLE's relative gain over the shared
bottom.
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


def test_mse(model, splits) -> float:
    predictions = model.predict(splits.test.inputs, batch_size=4096, verbose=0)
    return float(np.mean([np.mean((predictions[t.name][:, 0] - splits.test.labels[t.name]) ** 2)
                          for t in splits.tasks]))


def train_and_test(model_name: str, p: float, seed: int, args) -> tuple[float, float, int]:
    """Test MSE after `args.early` epochs and at convergence, and the epochs run."""
    splits = synthetic_relatedness(p, num_train=args.train_size, seed=seed)
    set_global_seed(seed)
    sharing, options = MODELS[model_name]
    inputs = keras.Input((splits.train.inputs.shape[1],), name="x")
    model = keras.Model(inputs, attach_shared_heads(inputs, splits.tasks, sharing, options, head_hidden_units=(8,)))
    compile_multitask(model, splits.tasks, optimizer=keras.optimizers.Adam(1e-3))
    train = make_dataset(splits.train.inputs, splits.train.labels, splits.tasks, batch_size=256, shuffle=True,
                         seed=seed)
    validation = make_dataset(splits.validation.inputs, splits.validation.labels, splits.tasks, batch_size=4096)
    model.fit(train, validation_data=validation, epochs=args.early, verbose=0)
    early = test_mse(model, splits)
    history = model.fit(train, validation_data=validation, initial_epoch=args.early, epochs=args.epochs, verbose=0,
                        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                                                 restore_best_weights=True)])
    return early, test_mse(model, splits), args.early + len(history.history["loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--correlations", type=float, nargs="+", default=[1.0, 0.9, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-size", type=int, default=50000)
    parser.add_argument("--early", type=int, default=10, help="epochs after which the early test MSE is taken")
    parser.add_argument("--epochs", type=int, default=100, help="most epochs in all")
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--plot", default=None, help="save a plot of test MSE against p here (needs matplotlib)")
    parser.add_argument("--output", default=None, help="write every result as JSON here")
    args = parser.parse_args()

    results = {}
    for p in args.correlations:
        for name in args.models:
            runs = [train_and_test(name, p, seed, args) for seed in args.seeds]
            results[(p, name, "early")] = [run[0] for run in runs]
            results[(p, name, "converged")] = [run[1] for run in runs]
            print(f"p={p:<4} {name:<14} test MSE per seed after {args.early} epochs: "
                  + ", ".join(f"{run[0]:.4f}" for run in runs) + "; converged: "
                  + ", ".join(f"{run[1]:.4f} ({run[2]} epochs)" for run in runs), flush=True)

    for stage, title in (("early", f"after {args.early} epochs"), ("converged", "at convergence")):
        print(f"\nTest MSE {title} (mean of the two tasks), mean ± sd over seeds {args.seeds}; "
              f"gain = 1 - MSE / shared-bottom MSE")
        print(f"{'p':>5} " + " ".join(f"{name:>17}" for name in args.models) + "   gains")
        for p in args.correlations:
            values = {n: results[(p, n, stage)] for n in args.models}
            cells = [f"{np.mean(v):.4f} ± {statistics.pstdev(v):.4f}" for v in values.values()]
            base = np.mean(values.get("shared_bottom", [np.nan]))
            gains = ", ".join(f"{n} {1 - np.mean(v) / base:+.1%}" for n, v in values.items() if n != "shared_bottom")
            print(f"{p:>5} " + " ".join(f"{c:>17}" for c in cells) + f"   {gains}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump([{"p": p, "model": n, "stage": stage, "test_mse": v} for (p, n, stage), v in results.items()],
                      handle, indent=2)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for axis, (stage, title) in zip(axes, (("early", f"after {args.early} epochs"),
                                               ("converged", "at convergence")), strict=True):
            for name in args.models:
                means = [np.mean(results[(p, name, stage)]) for p in args.correlations]
                spreads = [statistics.pstdev(results[(p, name, stage)]) for p in args.correlations]
                axis.errorbar(args.correlations, means, yerr=spreads, marker="o", capsize=3, label=name)
            axis.set_title(f"test MSE {title}")
            axis.set_xlabel("task correlation p (cosine of w1, w2)")
            axis.invert_xaxis()
            axis.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
