"""Transfer of our own trunk on the bundled VADER corpus: a trunk trained on most of the corpus, reused for a small
labelled part with another task, against the same model trained from scratch on the small part.

    python benchmarks/transfer_text.py [--seeds 1337 1338] [--small 300] [--output results.json]

For each seed (the split, the initialisation, the shuffling and which texts form the small part):
- source: the text job's model (`mtl-keras train text`: shared embedding with the VADER lexicon channels, CNN
  encoder) trained on intensity and domain over the training split less the small part (about 18,700 texts);
  its shared part is saved with `save_trunk`;
- target task: sentiment, labelled on `--small` training texts only (validation: as many again), tested on the
  whole test split; three models, each with the text job's early stopping:
  scratch (the same architecture, its vocabulary from the small part), transfer-frozen (the saved trunk frozen,
  a new head) and transfer-fine-tuned (frozen for 2 epochs, then trained whole).
Prints test accuracy and AUC per model, mean and spread over the seeds, and the elapsed time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mtl_keras.backbones import save_trunk  # noqa: E402
from mtl_keras.datasets.splits import Splits  # noqa: E402
from mtl_keras.evaluation import compute_metrics  # noqa: E402
from mtl_keras.jobs.base import predict_in_batches  # noqa: E402
from mtl_keras.jobs.text import TextJob  # noqa: E402

# README's figures were measured with the text job's defaults before 2026-12-03; these keep them reproducible.
EARLIER_DEFAULTS = {"tfidf_units": 0, "balance_classes": False, "epochs": 10}
TARGETS = {"scratch": {}, "transfer_frozen": {"freeze_backbone_epochs": -1},
           "transfer_fine_tuned": {"freeze_backbone_epochs": 2}}


def run_seed(seed: int, small: int, folder: Path) -> dict[str, dict[str, float]]:
    full = TextJob(seed=seed, **EARLIER_DEFAULTS).load_data()
    by_name = {task.name: task for task in full.tasks}
    order = np.random.default_rng(seed).permutation(len(full.train))
    labelled, validation, rest = order[:small], order[small:2 * small], order[2 * small:]
    source_tasks = [by_name["intensity"], by_name["domain"]]
    source_splits = Splits(full.train.take(rest).for_tasks(["intensity", "domain"]),
                           full.validation.for_tasks(["intensity", "domain"]), full.test, source_tasks)
    source, _ = TextJob(seed=seed, **EARLIER_DEFAULTS).train(source_tasks, source_splits, verbose=0)
    trunk = save_trunk(source, folder / f"trunk-{seed}")
    target = [by_name["sentiment"]]
    target_splits = Splits(full.train.take(labelled).for_tasks(["sentiment"]),
                           full.train.take(validation).for_tasks(["sentiment"]), full.test, target)
    results = {}
    for name, options in TARGETS.items():
        job = TextJob(seed=seed, **EARLIER_DEFAULTS, **({"backbone": str(trunk), **options} if options else {}))
        model, _ = job.train(target, target_splits, verbose=0)
        predictions = predict_in_batches(model, job.model_inputs(full.test.inputs))
        test = full.test.for_tasks(["sentiment"])
        metrics = compute_metrics(target, predictions, test.labels, test.masks)["sentiment"]
        results[name] = {"accuracy": metrics["accuracy"], "auc": metrics["auc"]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--small", type=int, default=300, help="labelled texts of the target task")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    per_seed = {}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            per_seed[seed] = run_seed(seed, args.small, Path(folder))
            print(f"seed {seed}: " + ", ".join(f"{name} acc {m['accuracy']:.4f} AUC {m['auc']:.4f}"
                                               for name, m in per_seed[seed].items()), flush=True)
    print(f"\nsentiment on the test split, {args.small} labelled training texts, seeds {args.seeds} "
          f"({time.perf_counter() - started:.0f} s):")
    summary = {}
    for name in TARGETS:
        summary[name] = {}
        for metric in ("accuracy", "auc"):
            values = [per_seed[seed][name][metric] for seed in args.seeds]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[name][metric] = {"mean": statistics.mean(values), "stdev": spread, "values": values}
        print(f"  {name:20s} accuracy {summary[name]['accuracy']['mean']:.4f} ± "
              f"{summary[name]['accuracy']['stdev']:.4f}   AUC {summary[name]['auc']['mean']:.4f} ± "
              f"{summary[name]['auc']['stdev']:.4f}")
    if args.output:
        args.output.write_text(json.dumps({"small": args.small, "seeds": args.seeds, "summary": summary,
                                           "per_seed": per_seed}, indent=1))


if __name__ == "__main__":
    main()
