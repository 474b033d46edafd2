"""Do balancing methods beat (tuned) static weighting? Every method on one job, over seeds, against static weights.

    python benchmarks/balancing_quality.py [--job text|census|multifashion] [--limit N] [--epochs E]
                                           [--seeds 1337 1338 1339] [--methods static uncertainty ... pcgrad ...]
                                           [--tuned [--tuned-trials 10] [--tuner random]] [--output FILE]

Jobs and their headline metric per task (the one the README reports; Δm uses every metric of each task, or with
`--delta-m-metrics headline` these alone):

- `text`: the VADER text job (`mtl_keras.jobs.text.TextJob`): sentiment accuracy, intensity Pearson r, domain
  accuracy. Defaults `--limit 8000 --epochs 6` and the job settings README's table was measured with
  (`EARLIER_DEFAULTS`; `--current-text-defaults` takes the job's defaults of today instead);
- `census`: UCI Census-Income (`CensusJob`, MMoE): income AUC, marital AUC. Defaults: the whole data, 20 epochs;
- `multifashion`: MultiFashion (`VisionJob(dataset="multifashion")`, plain CNN): left accuracy, right accuracy.
  Defaults: the preset's sizes (30,000 training images), 16 epochs.

Each method trains the job with the same split, seed, epochs and early stopping (the job's own: patience on the
validation mean relative loss, best weights restored); gradient methods use static weights. Test metrics come from
the held-out test split. "Δm vs static" is the mean over tasks (and each task's metrics) of the signed relative
change against the static run of the same seed (`mtl_keras.evaluation.delta_m`, as it is computed against
single-task baselines); each seed gives one Δm, and the table shows their mean ± sd over seeds.

`--tuned` adds the row "tuned static" (Xin et al. 2022; Kurin et al. 2022: tuned scalarization): for every seed,
static loss weights are searched with keras-tuner on that seed's validation split by the library's own search
(`mtl_keras.tuning.search_loss_weights`, as `mtl-keras tune` runs it: `--tuned-trials` trials, the first with equal
weights; objective the mean over tasks of the validation loss relative to that first trial), then the best weights
train once more exactly like every other row and are tested. The search is per seed because the text job's splits
depend on the seed (another seed's validation texts can be this seed's test texts). Budget: every row's final
training has the same epochs and early stopping; the tuned row costs `--tuned-trials` extra trainings per seed,
every other row one training per seed. With `--tuned`, "Δm vs tuned" is each row's Δm against the tuned row of the
same seed.

Step time: the median wall time of one training batch over the whole run (a Keras callback; the first batch, which
traces the step, left out). A method that raises is reported as failed in its row; the others still run.

Results: benchmarks/results/balancing_study_<job>.json (rewritten after each training, so a stopped study keeps what
it finished); the markdown table is printed at the end, under the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from mtl_keras.evaluation import delta_m, task_deltas  # noqa: E402
from mtl_keras.jobs import CensusJob, TextJob, VisionJob  # noqa: E402
from mtl_keras.training.gradients import GRADIENT_METHODS  # noqa: E402
from mtl_keras.training.weighting import WEIGHTINGS  # noqa: E402

# README's figures were measured with the text job's defaults before 2026-12-03; these keep them reproducible.
EARLIER_DEFAULTS = {"tfidf_units": 0, "balance_classes": False}
SUMMARY = {"sentiment": "accuracy", "intensity": "pearson_r", "domain": "accuracy"}  # the text job's (as before)
JOBS = {
    "text": {"summary": SUMMARY, "limit": 8000, "epochs": 6},
    "census": {"summary": {"income": "auc", "marital": "auc"}, "limit": None, "epochs": None},
    "multifashion": {"summary": {"left": "accuracy", "right": "accuracy"}, "limit": None, "epochs": None},
}
TUNED = "tuned static"


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training batch (in seconds) and of every epoch."""

    def __init__(self):
        super().__init__()
        self.batches, self.epochs, self._start = [], [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(time.perf_counter() - self._start)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._epoch_batches = time.perf_counter(), len(self.batches)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({"seconds": time.perf_counter() - self._epoch_start,
                            "steps": len(self.batches) - self._epoch_batches})

    def median_ms(self) -> float | None:
        timed = self.batches[1:] or self.batches  # the first batch traces the train step
        return 1000.0 * statistics.median(timed) if timed else None


def make_job(name: str, args, seed: int, **settings):
    """The job `name` with the study's budget (limit, epochs) and seed, and `settings` (balancing, loss weights)."""
    budget = {key: value for key, value in (("limit", args.limit), ("epochs", args.epochs)) if value is not None}
    if name == "text":
        return TextJob(seed=seed, **({} if args.current_text_defaults else EARLIER_DEFAULTS), **budget, **settings)
    if name == "census":
        return CensusJob(seed=seed, **budget, **settings)
    return VisionJob(dataset="multifashion", seed=seed, **budget, **settings)


def balancing(method: str) -> dict:
    return {"gradient": method} if method in GRADIENT_METHODS else {"weighting": method}


def run(job, label: str) -> tuple[dict, list]:
    """Trains `job` once and tests it: test metrics, epochs, seconds, median step time, the last loss weights; and
    the tasks (as Δm needs them)."""
    keras.backend.clear_session()  # nothing of the previous training stays in memory
    splits = job.data()
    timer = StepTimer()
    start = time.perf_counter()
    model, history = job.train(splits.tasks, splits, verbose=0, callbacks=[timer])
    seconds = time.perf_counter() - start
    return {"test": job.evaluate(model, splits.tasks, splits.test), "epochs": len(history["loss"]),
            "seconds": seconds, "step_ms": timer.median_ms(), "steps": len(timer.batches),
            "epoch_seconds": [epoch["seconds"] for epoch in timer.epochs],
            "weights": {t.name: history.get(f"{t.name}_weight", [None])[-1] for t in splits.tasks},
            "method": label}, splits.tasks


def tune(name: str, args, seed: int) -> dict:
    """The keras-tuner search of static loss weights on seed `seed`'s validation split (the library's own)."""
    from mtl_keras.tuning import DEFAULT_CANDIDATES, search_loss_weights

    start = time.perf_counter()
    search = search_loss_weights(make_job(name, args, seed), tuner=args.tuner, max_trials=args.tuned_trials,
                                 candidates=DEFAULT_CANDIDATES, verbose=0)
    return {"best_weights": search.best_weights, "objective": search.best.objective, "seconds":
            time.perf_counter() - start, "trials": len(search.trials), "table": search.table().splitlines(),
            "search": search.to_json()}


def headline_deltas(tasks, multi: dict, single: dict, summary: dict) -> dict[str, float]:
    """`task_deltas` on each task's headline metric alone."""
    deltas = {}
    for task in tasks:
        metric = summary[task.name]
        reference = single[task.name][metric]
        if reference == 0:
            raise ValueError(f"Task {task.name!r}: the reference {metric} is 0, so a relative gain is undefined.")
        sign = 1.0 if task.metric_higher_is_better(metric) else -1.0
        deltas[task.name] = 100.0 * sign * (multi[task.name][metric] - reference) / abs(reference)
    return deltas


def relative(tasks, outcome: dict, reference: dict | None, summary: dict | None
             ) -> tuple[float | None, dict | None, str | None]:
    """Δm (and per task) of `outcome` against `reference`, over every metric of each task (`summary` None) or over
    the headline metrics; (None, None, why) when the reference is missing or Δm undefined."""
    if reference is None or "test" not in reference:
        return None, None, "no reference run for this seed"
    try:
        if summary is None:
            return (delta_m(tasks, outcome["test"], reference["test"]),
                    task_deltas(tasks, outcome["test"], reference["test"]), None)
        per_task = headline_deltas(tasks, outcome["test"], reference["test"], summary)
        return statistics.mean(per_task.values()), per_task, None
    except ValueError as error:  # a reference metric of 0 (a tiny run)
        return None, None, str(error)


def mean_sd(values) -> tuple[float | None, float | None]:
    values = [value for value in values if value is not None]
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def fmt(mean: float | None, sd: float | None, digits: int = 4, sign: str = "") -> str:
    if mean is None:
        return "–"
    return f"{mean:{sign}.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def summarize(results: dict, summary: dict, tuned: bool) -> dict:
    """Per row: mean and sd over the seeds that trained of each headline metric, Δm, step time and seconds."""
    rows = {}
    for method, runs in results.items():
        done = [r for r in runs if "test" in r]
        failed = [r for r in runs if "error" in r]
        row = {"seeds": len(done), "failed": [{"seed": r["seed"], "error": r["error"]} for r in failed]}
        for task, metric in summary.items():
            row[f"{task}_{metric}"] = mean_sd(r["test"][task][metric] for r in done)
        row["delta_m_vs_static_percent"] = mean_sd(r.get("delta_m_vs_static_percent") for r in done)
        if tuned:
            row["delta_m_vs_tuned_percent"] = mean_sd(r.get("delta_m_vs_tuned_percent") for r in done)
        row["step_ms"] = mean_sd(r["step_ms"] for r in done)
        row["seconds"] = mean_sd(r["seconds"] for r in done)
        row["epochs"] = mean_sd(r["epochs"] for r in done)
        rows[method] = row
    return rows


def markdown(rows: dict, summary: dict, tuned: bool) -> str:
    headers = ["method", *(f"{task} {metric}" for task, metric in summary.items()), "Δm vs static %"]
    headers += ["Δm vs tuned %"] if tuned else []
    headers += ["step ms", "train s", "epochs", "seeds"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method, row in rows.items():
        cells = [method, *(fmt(*row[f"{task}_{metric}"]) for task, metric in summary.items()),
                 fmt(*row["delta_m_vs_static_percent"], digits=2, sign="+")]
        cells += [fmt(*row["delta_m_vs_tuned_percent"], digits=2, sign="+")] if tuned else []
        cells += [fmt(*row["step_ms"], digits=1), fmt(row["seconds"][0], None, digits=0),
                  fmt(row["epochs"][0], None, digits=1), str(row["seeds"])]
        if row["failed"]:
            errors = sorted({f["error"] for f in row["failed"]})
            cells[-1] += f" (failed {len(row['failed'])}: {'; '.join(e[:120] for e in errors)})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_note(args, job) -> str:
    config = job.config
    note = (f"Every row's final training: at most {config.epochs} epochs, early stopping (patience {config.patience}, "
            f"on val_mean_relative_loss, best weights restored), batch {config.batch_size}, the same split and "
            f"initial weights per seed; one training per row and seed.")
    if args.tuned:
        note += (f" Tuned static: a {args.tuner} keras-tuner search of {args.tuned_trials} trials per seed (each a "
                 f"training of the same budget; the first with equal weights) on that seed's validation split, "
                 f"then one final training: {args.tuned_trials + 1} trainings per seed against 1 for every other row.")
    return note


def write(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", choices=list(JOBS), default="text")
    parser.add_argument("--limit", type=int, default=None,
                        help="examples (text 8000 by default; census, multifashion: all); 0: all")
    parser.add_argument("--epochs", type=int, default=None, help="most epochs (text 6; otherwise the job's default)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--methods", nargs="+", default=list(WEIGHTINGS) + list(GRADIENT_METHODS))
    parser.add_argument("--tuned", action="store_true", help="add static weights tuned with keras-tuner per seed")
    parser.add_argument("--tuned-trials", type=int, default=10, metavar="N", help="trials of each search (10)")
    parser.add_argument("--tuner", choices=["grid", "random", "bayesian"], default="random")
    parser.add_argument("--current-text-defaults", action="store_true",
                        help="text job: today's defaults (TF-IDF branch, balanced classes) instead of the earlier")
    parser.add_argument("--delta-m-metrics", choices=["all", "headline"], default="all",
                        help="Δm over every metric of each task (all, as mtl_keras.evaluation.delta_m) or over "
                             "each task's headline metric")
    parser.add_argument("--output", default=None, help="default benchmarks/results/balancing_study_<job>.json")
    args = parser.parse_args(argv)
    command = "python benchmarks/balancing_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print("command: " + command, flush=True)
    spec = JOBS[args.job]
    args.limit = spec["limit"] if args.limit is None else (args.limit or None)
    args.epochs = spec["epochs"] if args.epochs is None else args.epochs
    args.output = args.output or f"benchmarks/results/balancing_study_{args.job}.json"
    summary = spec["summary"]
    delta_summary = summary if args.delta_m_metrics == "headline" else None
    methods = ["static"] + [m for m in dict.fromkeys(args.methods) if m != "static"]
    rows = methods + ([TUNED] if args.tuned else [])
    results = {method: [] for method in rows}
    searches = {}
    note = budget_note(args, make_job(args.job, args, args.seeds[0]))
    print(note, flush=True)

    def save(final: bool = False) -> dict:
        table = summarize(results, summary, args.tuned)
        write(args.output, {"command": command, "settings": vars(args), "job": args.job, "headline": summary,
                            "budget": note, "complete": final, "results": results, "searches": searches,
                            "summary": table})
        return table

    for seed in args.seeds:
        outcomes, task_lists = {}, {}
        for method in rows:
            try:
                if method == TUNED:
                    searches[str(seed)] = search = tune(args.job, args, seed)
                    print(f"seed {seed}  search of {search['trials']} trials ({search['seconds']:.0f} s): best "
                          f"{search['best_weights']} (objective {search['objective']:.4f})", flush=True)
                    job = make_job(args.job, args, seed, loss_weights=search["best_weights"])
                else:
                    job = make_job(args.job, args, seed, **balancing(method))
                outcome, tasks = run(job, method)
            except Exception as error:  # a method that fails is a row that says so; the others still run
                message = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
                results[method].append({"seed": seed, "error": message})
                print(f"seed {seed}  {method:12s} FAILED  {message}", flush=True)
                save()
                continue
            outcome["seed"] = seed
            outcomes[method], task_lists[method] = outcome, tasks
            results[method].append(outcome)
            print(f"seed {seed}  {method:12s} trained ({outcome['epochs']} epochs, {outcome['seconds']:.0f} s)",
                  flush=True)
            save()
        # Δm against the static (and tuned) run of the same seed, once every row of the seed has trained.
        for method, outcome in outcomes.items():
            tasks = task_lists[method]
            dm, per_task, why = relative(tasks, outcome, outcomes.get("static"), delta_summary)
            outcome["delta_m_vs_static_percent"], outcome["task_delta_vs_static_percent"] = dm, per_task
            if why:
                outcome["delta_m_vs_static_error"] = why
            if args.tuned:
                dm, per_task, why = relative(tasks, outcome, outcomes.get(TUNED), delta_summary)
                outcome["delta_m_vs_tuned_percent"], outcome["task_delta_vs_tuned_percent"] = dm, per_task
                if why:
                    outcome["delta_m_vs_tuned_error"] = why
            line = "  ".join(f"{task} {metric} {outcome['test'][task][metric]:.4f}" for task, metric in summary.items())
            dm = outcome["delta_m_vs_static_percent"]
            step = f"{outcome['step_ms']:.1f}" if outcome["step_ms"] is not None else "–"
            print(f"seed {seed}  {method:12s} {line}  Δm vs static {'–' if dm is None else f'{dm:+6.2f}%'}  "
                  f"({outcome['epochs']} epochs, {outcome['seconds']:.0f} s, step {step} ms)", flush=True)
        save()
    table = save(final=True)
    print(f"\n{command}\n\n{note}\n")
    print(f"Job {args.job}; limit {args.limit or 'all'}; seeds {' '.join(map(str, args.seeds))}; mean ± sd over "
          f"seeds; Δm in % over {'every metric of each task' if delta_summary is None else 'the headline metrics'}; "
          f"step: median batch ms.\n")
    print(markdown(table, summary, args.tuned))
    print(f"\nResults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
