"""Sharing architectures on UCI Census-Income (KDD) against the published table, over several seeds.

    python benchmarks/census_sharing.py [--seeds 1337 1338 1339] [--models single hard mmoe ple cross_stitch]
                                        [--limit N] [--output results.json]

Each model is the census job's (`mtl-keras train census --sharing NAME`), trained the same way (Adam, batch 512,
early stopping on the mean relative validation loss, best weights restored); "single" is one plain network per
task (the job's `--baselines`). AUCs are exact (Mann-Whitney), on the whole official test file (99,762 records),
mean and standard deviation over the seeds (each seed changes the validation split, the initialisation and the
shuffling). The published figures (IJANMC 2024, DeepCTR-style models, as quoted in the project's data notes) are
printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mtl_keras.evaluation import roc_auc  # noqa: E402
from mtl_keras.jobs.base import predict_in_batches  # noqa: E402
from mtl_keras.jobs.census import CensusJob  # noqa: E402

PUBLISHED = {  # income AUC, marital AUC
    "single": (0.9198, 0.9748),
    "hard": (0.9148, 0.9754),
    "mmoe": (0.9152, 0.9756),
    "ple": (0.9161, 0.9764),
}
BEST_PUBLISHED = (0.9216, 0.9764)  # the best figure of the table on each task
TASKS = ("income", "marital")


def test_aucs(job: CensusJob, splits, models_by_task) -> dict[str, float]:
    aucs = {}
    for task, model in models_by_task.items():
        predictions = predict_in_batches(model, job.model_inputs(splits.test.inputs), batch_size=4096)
        aucs[task] = roc_auc(splits.test.labels[task], predictions[task])
    return aucs


def run_one(name: str, seed: int, limit: int | None) -> tuple[dict[str, float], float]:
    # README's table was measured with standardised numeric columns, the census default before 2026-12-03.
    job = CensusJob(sharing="hard" if name == "single" else name, seed=seed, limit=limit,
                    numeric_encoding="standardize")
    splits = job.data()
    started = time.perf_counter()
    if name == "single":
        models = {task.name: job.train([task], splits, verbose=0)[0] for task in splits.tasks}
    else:
        model = job.train(splits.tasks, splits, verbose=0)[0]
        models = {task: model for task in TASKS}
    elapsed = time.perf_counter() - started
    return test_aucs(job, splits, models), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    parser.add_argument("--models", nargs="+", default=["single", "hard", "mmoe", "ple", "cross_stitch"])
    parser.add_argument("--limit", type=int, default=None, help="train on a subset (quick check only)")
    parser.add_argument("--output", default=None, help="write every result as JSON here")
    args = parser.parse_args()

    results: dict[str, list] = {}
    for name in args.models:
        for seed in args.seeds:
            aucs, seconds = run_one(name, seed, args.limit)
            results.setdefault(name, []).append({"seed": seed, "seconds": seconds, **aucs})
            print(f"{name:<13} seed {seed}: income AUC {aucs['income']:.4f}  marital AUC {aucs['marital']:.4f}  "
                  f"({seconds:.0f} s)", flush=True)

    print(f"\nTest AUC, mean ± sd over seeds {args.seeds} (published beside; best published "
          f"{BEST_PUBLISHED[0]} / {BEST_PUBLISHED[1]})")
    print(f"{'model':<13} {'income':>17} {'marital':>17} {'published':>17} {'train s':>8}")
    for name, runs in results.items():
        cells = []
        for task in TASKS:
            values = [run[task] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{np.mean(values):.4f} ± {spread:.4f}")
        published = PUBLISHED.get(name)
        published_text = f"{published[0]:.4f} / {published[1]:.4f}" if published else "-"
        seconds = np.mean([run["seconds"] for run in runs])
        print(f"{name:<13} {cells[0]:>17} {cells[1]:>17} {published_text:>17} {seconds:>8.0f}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"seeds": args.seeds, "limit": args.limit, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
