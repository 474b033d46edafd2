"""Every balancing method on the text job: test metrics and the gain over static weighting (Δm against static).

    python benchmarks/balancing_quality.py [--limit 8000] [--epochs 6] [--seeds 1337]
                                           [--methods static uncertainty ... pcgrad ...]

Each method trains the VADER text job (sentiment, intensity, domain; `mtl_keras.jobs.text.TextJob`) with the same
split, seed, budget and early stopping; gradient methods use static weights. Test metrics come from the held-out
test split. "Δm vs static" is the mean over tasks (and each task's metrics) of the signed relative change against
the static run of the same seed, as `mtl_keras.evaluation.delta_m` computes it against single-task baselines.
Results: benchmarks/results/balancing_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mtl_keras.evaluation import delta_m  # noqa: E402
from mtl_keras.jobs.text import TextJob  # noqa: E402
from mtl_keras.training.gradients import GRADIENT_METHODS  # noqa: E402
from mtl_keras.training.weighting import WEIGHTINGS  # noqa: E402

# README's figures were measured with the text job's defaults before 2026-12-03; these keep them reproducible.
EARLIER_DEFAULTS = {"tfidf_units": 0, "balance_classes": False}
SUMMARY = {"sentiment": "accuracy", "intensity": "pearson_r", "domain": "accuracy"}


def run(method: str, limit: int, epochs: int, seed: int) -> dict:
    balancing = {"gradient": method} if method in GRADIENT_METHODS else {"weighting": method}
    job = TextJob(limit=limit, epochs=epochs, seed=seed, **EARLIER_DEFAULTS, **balancing)
    splits = job.data()
    start = time.perf_counter()
    model, history = job.train(splits.tasks, splits, verbose=0)
    seconds = time.perf_counter() - start
    return {"test": job.evaluate(model, splits.tasks, splits.test), "epochs": len(history["loss"]),
            "seconds": seconds, "weights": {t.name: history.get(f"{t.name}_weight", [None])[-1]
                                            for t in splits.tasks}, "tasks": splits.tasks}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--methods", nargs="+", default=list(WEIGHTINGS) + list(GRADIENT_METHODS))
    parser.add_argument("--output", default="benchmarks/results/balancing_quality.json")
    args = parser.parse_args(argv)
    print("command: python benchmarks/balancing_quality.py " + " ".join(sys.argv[1:] if argv is None else argv))
    methods = ["static"] + [m for m in args.methods if m != "static"]
    results = {method: [] for method in methods}
    for seed in args.seeds:
        reference = None
        for method in methods:
            outcome = run(method, args.limit, args.epochs, seed)
            tasks = outcome.pop("tasks")
            if method == "static":
                reference = outcome["test"]
            outcome["delta_m_vs_static_percent"] = delta_m(tasks, outcome["test"], reference)
            results[method].append(outcome)
            summary = "  ".join(f"{task} {metric} {outcome['test'][task][metric]:.4f}"
                                for task, metric in SUMMARY.items())
            print(f"seed {seed}  {method:12s} {summary}  Δm vs static {outcome['delta_m_vs_static_percent']:+6.2f}%  "
                  f"({outcome['epochs']} epochs, {outcome['seconds']:.0f} s)", flush=True)
    print("\nmean over seeds:")
    for method, runs in results.items():
        line = "  ".join(f"{task} {statistics.mean(r['test'][task][metric] for r in runs):.4f}"
                         for task, metric in SUMMARY.items())
        print(f"  {method:12s} {line}  Δm vs static "
              f"{statistics.mean(r['delta_m_vs_static_percent'] for r in runs):+6.2f}%  "
              f"time {statistics.mean(r['seconds'] for r in runs):.0f} s")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump({"settings": vars(args), "results": results}, handle, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
