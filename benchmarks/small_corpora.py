"""The text job on small corpora: `mtl-keras train text --train-limit N` at N = 500, 2000 and the whole training
split, against the TF-IDF + linear baselines that `benchmarks/baselines.py` fitted on the very same subsets.

    python benchmarks/small_corpora.py [--sizes 500 2000 full] [--seeds 1337 1] [--set embedding_dim=64 ...]
                                       [--baselines benchmarks/results/baselines.json] [--output FILE]

Each size and seed trains the job's multi-task model exactly as the CLI does (`TextJob(train_limit=N, seed=S)`:
its defaults, its early stopping on the validation split, the whole validation and test splits), then scores the
test split with accuracy and macro F1 for the two classification tasks (macro F1: the mean per-class F1 over every
class, scikit-learn's `f1_score(average="macro")`, so sentiment's counts the negative class too) and Pearson r for
intensity. `--set key=value` overrides a `TextJobConfig` field (values parsed as JSON where they parse), to try
other defaults for small corpora. The baselines' subsets are `Split.sample(N, seed)` too, so a row compares two
models trained on the same texts; baselines.json holds them for one seed (its own), the others print without.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from scipy.stats import pearsonr  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

from mtl_keras.jobs.base import predict_in_batches  # noqa: E402
from mtl_keras.jobs.text import TextJob  # noqa: E402
from mtl_keras.labels import MISSING  # noqa: E402
from mtl_keras.seeds import DEFAULT_SEED  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_BASELINES = HERE / "results" / "baselines.json"


def test_scores(job: TextJob, model, split) -> dict[str, dict[str, float]]:
    """Accuracy and macro F1 (sentiment, domain) and Pearson r (intensity) on `split`, labelled examples only."""
    predictions = predict_in_batches(model, job.model_inputs(split.inputs))
    scores = {}
    for task in model.tasks:
        labels = split.labels[task.name]
        keep = labels != MISSING
        if task.name in split.masks:
            keep &= split.masks[task.name].astype(bool)
        predicted, labels = np.asarray(predictions[task.name])[keep], labels[keep]
        if task.kind == "regression":
            scores[task.name] = {"pearson_r": float(pearsonr(labels, predicted.reshape(-1)).statistic)}
            continue
        classes = (predicted.reshape(-1) > 0.5).astype(int) if task.kind == "binary" else predicted.argmax(-1)
        scores[task.name] = {"accuracy": float(accuracy_score(labels, classes)),
                             "macro_f1": float(f1_score(labels, classes, average="macro", zero_division=0))}
    return scores


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["500", "2000", "full"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[DEFAULT_SEED])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TextJobConfig overrides")
    parser.add_argument("--baselines", type=Path, default=DEFAULT_BASELINES)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    baselines = json.loads(args.baselines.read_text()) if args.baselines.exists() else None
    results = []
    for size in args.sizes:
        for seed in args.seeds:
            started = time.perf_counter()
            job = TextJob(seed=seed, train_limit=None if size == "full" else int(size), **overrides)
            splits = job.data()
            model, history = job.train(splits.tasks, splits, verbose=0)
            scores = test_scores(job, model, splits.test)
            row = {"size": size, "train_size": len(splits.train), "seed": seed, "epochs": len(history["loss"]),
                   "seconds": time.perf_counter() - started, "test": scores}
            if baselines and baselines["seed"] == seed and size in baselines["text"]:
                base = baselines["text"][size]
                row["tfidf"] = {"sentiment": {k: base["sentiment"]["test"][k] for k in ("accuracy", "macro_f1")},
                                "domain": {k: base["domain"]["test"][k] for k in ("accuracy", "macro_f1")},
                                "intensity": {"pearson_r": base["intensity"]["test"]["pearson_r"]}}
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"\noverrides: {overrides or 'none (the job defaults)'}")
    columns = [("sentiment", "accuracy"), ("sentiment", "macro_f1"), ("domain", "accuracy"), ("domain", "macro_f1"),
               ("intensity", "pearson_r")]
    print(f"{'size':>6} {'seed':>5} {'ep':>3} " + " ".join(f"{t[:4]} {m[:8]:>8}" for t, m in columns)
          + "   (TF-IDF beside, where baselines.json has the seed)")
    for row in results:
        cells = []
        for task, metric in columns:
            ours = row["test"][task][metric]
            theirs = row.get("tfidf", {}).get(task, {}).get(metric)
            cells.append(f"{ours:.3f}" + (f"/{theirs:.3f}" if theirs is not None else "      "))
        print(f"{row['size']:>6} {row['seed']:>5} {row['epochs']:>3} " + " ".join(f"{c:>13}" for c in cells))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"overrides": overrides, "results": results}, indent=1) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
