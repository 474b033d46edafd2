"""The baselines a user would pick instead of a neural multi-task model, for the two bundled jobs' data: linear models
on TF-IDF features for the VADER text tasks, gradient-boosted trees for Census-Income.

    python benchmarks/baselines.py [--seed 1337] [--sizes 500 2000 full] [--output benchmarks/results/baselines.json]

Honest by construction: every hyper-parameter is chosen on the VALIDATION split and the chosen model is reported
once on the TEST split; nothing is tuned on test. All splits are the jobs' own (`load_vader(seed)`,
`load_census(seed)`), examples without a label for a task (-1, e.g. a neutral rating for sentiment) left out of that
task.

Text (`mtl-keras train text`'s data): for each training size N (500, 2000, the whole training split), the training
texts are `splits.train.sample(N, seed)`, the very subset `mtl-keras train text --train-limit N --seed SEED` trains
on; validation and test stay whole. One `TfidfVectorizer` per N, fitted on those training texts only (word unigrams
and bigrams, sublinear tf, min_df=1, lower-cased; char n-grams were not used: on the validation split they helped the
domain task and cost sentiment, at twice the fitting time), then one model per task:
- sentiment: `LogisticRegression` (liblinear), C on a log grid 0.25..16384 picked by validation accuracy;
- domain: multinomial `LogisticRegression` (lbfgs, warm-started along the grid), C as above;
- intensity: `Ridge`, alpha on a log grid 1/1024..32 picked by validation Pearson r.
Ties go to the stronger regularization. Reported on test: sentiment accuracy, F1, macro F1, ROC AUC; domain accuracy,
F1, macro F1; intensity Pearson r, MAE; beside them a majority-class (or training-mean) reference.

F1, two ways. `f1` is the number mtl_keras reports for that task (`mtl_keras.tasks.KINDS`): for a binary task the F1
of the positive class at threshold 0.5 (`ThresholdF1Score(average="micro")` on one sigmoid output), for a multiclass
task the macro F1 (`MacroF1`). `macro_f1` is always the mean of the per-class F1 over every class (scikit-learn's
`f1_score(average="macro")`), so for sentiment it also counts the negative class. For domain the two are equal.
AUCs are exact (scikit-learn's `roc_auc_score`, the Mann-Whitney statistic, like `mtl_keras.evaluation.roc_auc`).

Census (`mtl-keras train census`'s data): one `HistGradientBoostingClassifier` per task (income, marital) with its
defaults (early stopping on 10 % of the training split, as its default does for this size; random_state=seed), the
32 categorical columns ordinal-encoded (fitted on the training split; unseen values are missing) and declared as
`categorical_features`, the 7 numeric columns as they are. Trained on the job's training split, reported on the
whole official test file: AUC, accuracy at 0.5, F1; the job's validation AUC beside it, and the fit time.

Everything runs on one thread (OpenMP and BLAS limited to 1) so that the figures do not depend on a shared machine;
about 4 minutes on 2 busy cores.
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
from scipy.stats import pearsonr  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score  # noqa: E402
from sklearn.preprocessing import OrdinalEncoder  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from mtl_keras.datasets.census import CENSUS_CATEGORICAL, CENSUS_NUMERIC, load_census  # noqa: E402
from mtl_keras.datasets.splits import Split  # noqa: E402
from mtl_keras.datasets.vader import load_vader  # noqa: E402
from mtl_keras.labels import MISSING  # noqa: E402
from mtl_keras.seeds import DEFAULT_SEED  # noqa: E402

C_GRID = tuple(2.0**k for k in range(-2, 15))  # 0.25 .. 16384
ALPHA_GRID = tuple(2.0**k for k in range(-10, 6))  # 1/1024 .. 32
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "baselines.json"
# The README's figures of the neural models (seed 1337, whole training split), printed beside ours.
NEURAL = {
    "sentiment": {"accuracy": 0.800, "f1": 0.814, "auc": 0.881},
    "domain": {"accuracy": 0.908, "f1": 0.900},
    "intensity": {"pearson_r": 0.749, "mae": 0.842},
    "income": {"auc": 0.9512, "accuracy": 0.9551, "f1": 0.566},
    "marital": {"auc": 0.9948, "accuracy": 0.9613, "f1": 0.955},
}
NOTES = (
    "Hyper-parameters chosen on the validation split, reported once on the test split. Text: TF-IDF word 1-2 grams "
    "(sublinear tf, min_df=1) fitted on the training subset, LogisticRegression (sentiment; domain multinomial) and "
    "Ridge (intensity); training subsets are Split.sample(N, seed), as `mtl-keras train text --train-limit N`; "
    "validation and test whole; sentiment leaves out neutral texts (label -1). 'f1' is mtl_keras' F1 for the task "
    "(binary: F1 of the positive class at 0.5; multiclass: macro F1); 'macro_f1' is the mean per-class F1 over all "
    "classes (sklearn average='macro'). 'majority' predicts the training subset's most frequent class; "
    "'training_mean' predicts its mean rating. Census: HistGradientBoostingClassifier defaults (its own early "
    "stopping on 10% of the training split), categorical columns ordinal-encoded as categorical_features, one model "
    "per task, test = the whole official test file. AUCs exact (roc_auc_score). One thread throughout."
)


def labelled(split: Split, task: str) -> np.ndarray:
    """The indices of the examples of `split` labelled for `task` (label not -1, mask true where given)."""
    keep = split.labels[task] != MISSING
    if task in split.masks:
        keep &= split.masks[task].astype(bool)
    return np.flatnonzero(keep)


def classification_scores(labels: np.ndarray, predicted: np.ndarray, binary: bool) -> dict[str, float]:
    """Accuracy, F1 as mtl_keras reports it for the kind, and macro F1 over every class."""
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, average="binary" if binary else "macro", zero_division=0)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }


def fit_classifier(task: str, features: dict, splits: dict[str, Split], binary: bool) -> dict:
    """C picked on validation accuracy; the chosen model's test scores, and a majority-class reference."""
    rows = {name: labelled(split, task) for name, split in splits.items()}
    x = {name: features[name][rows[name]] for name in splits}
    y = {name: splits[name].labels[task][rows[name]] for name in splits}
    if binary:
        make = lambda c: LogisticRegression(C=c, solver="liblinear")
    else:  # lbfgs: multinomial; warm-started from the previous C, as the grid grows (a convex problem: same optimum)
        shared = LogisticRegression(solver="lbfgs", max_iter=2000, warm_start=True)
        make = lambda c: shared.set_params(C=c)
    best = None
    for c in C_GRID:
        model = make(c).fit(x["train"], y["train"])
        score = accuracy_score(y["validation"], model.predict(x["validation"]))
        if best is None or score > best[0]:  # ties: the smaller C (stronger regularization) stays
            best = (score, c, model.predict(x["test"]), model.predict_proba(x["test"]))
    score, c, predicted, probabilities = best
    test = classification_scores(y["test"], predicted, binary)
    if binary:
        test["auc"] = float(roc_auc_score(y["test"], probabilities[:, 1]))
    majority = np.bincount(y["train"]).argmax()
    return {"train_size": len(rows["train"]), "C": c, "validation_accuracy": float(score), "test": test,
            "majority": classification_scores(y["test"], np.full_like(y["test"], majority), binary)}


def fit_regressor(task: str, features: dict, splits: dict[str, Split]) -> dict:
    """Ridge, alpha picked on validation Pearson r; the test r and MAE, and the training mean's MAE for reference."""
    rows = {name: labelled(split, task) for name, split in splits.items()}
    x = {name: features[name][rows[name]] for name in splits}
    y = {name: splits[name].labels[task][rows[name]].astype("float64") for name in splits}
    best = None
    for alpha in ALPHA_GRID:
        model = Ridge(alpha=alpha).fit(x["train"], y["train"])
        score = pearsonr(y["validation"], model.predict(x["validation"])).statistic
        if best is None or score > best[0] + 1e-12 or (abs(score - best[0]) <= 1e-12 and alpha > best[1]):
            best = (score, alpha, model.predict(x["test"]))
    score, alpha, predicted = best
    return {"train_size": len(rows["train"]), "alpha": alpha, "validation_pearson_r": float(score),
            "test": {"pearson_r": float(pearsonr(y["test"], predicted).statistic),
                     "mae": float(mean_absolute_error(y["test"], predicted))},
            "training_mean": {"mae": float(mean_absolute_error(y["test"], np.full_like(y["test"],
                                                                                       y["train"].mean())))}}


def text_baselines(seed: int, sizes: list[str]) -> dict[str, dict]:
    splits = load_vader(seed=seed)
    results = {}
    for size in sizes:
        started = time.perf_counter()
        train = splits.train if size == "full" else splits.train.sample(int(size), seed)
        parts = {"train": train, "validation": splits.validation, "test": splits.test}
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        features = {"train": vectorizer.fit_transform(train.inputs)}
        features.update({name: vectorizer.transform(parts[name].inputs) for name in ("validation", "test")})
        results[size] = {
            "train_size": len(train),
            "vocabulary": len(vectorizer.vocabulary_),
            "sentiment": fit_classifier("sentiment", features, parts, binary=True),
            "domain": fit_classifier("domain", features, parts, binary=False),
            "intensity": fit_regressor("intensity", features, parts),
            "seconds": time.perf_counter() - started,
        }
        print(f"text, {size} training texts: {results[size]['seconds']:.0f} s", flush=True)
    return results


def census_features(encoder: OrdinalEncoder, split: Split) -> np.ndarray:
    """The categorical columns' codes (NaN: a value unseen in training) then the numeric columns, as one matrix."""
    categorical = np.stack([split.inputs[name] for name in CENSUS_CATEGORICAL], axis=1)
    numeric = np.stack([split.inputs[name] for name in CENSUS_NUMERIC], axis=1).astype("float64")
    return np.hstack([encoder.transform(categorical), numeric])


def census_baselines(seed: int) -> dict:
    started = time.perf_counter()
    splits = load_census(seed=seed)
    loaded = time.perf_counter() - started
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    encoder.fit(np.stack([splits.train.inputs[name] for name in CENSUS_CATEGORICAL], axis=1))
    x = {name: census_features(encoder, getattr(splits, name)) for name in ("train", "validation", "test")}
    is_categorical = np.arange(x["train"].shape[1]) < len(CENSUS_CATEGORICAL)
    results = {"load_seconds": loaded, "train_size": len(splits.train), "test_size": len(splits.test)}
    for task in ("income", "marital"):
        rows = {name: labelled(getattr(splits, name), task) for name in x}
        y = {name: getattr(splits, name).labels[task][rows[name]] for name in x}
        model = HistGradientBoostingClassifier(categorical_features=is_categorical, random_state=seed)
        fit_started = time.perf_counter()
        model.fit(x["train"][rows["train"]], y["train"])
        fit_seconds = time.perf_counter() - fit_started
        scores = {name: model.predict_proba(x[name][rows[name]])[:, 1] for name in ("validation", "test")}
        results[task] = {
            "train_size": len(rows["train"]), "iterations": int(model.n_iter_), "fit_seconds": fit_seconds,
            "validation_auc": float(roc_auc_score(y["validation"], scores["validation"])),
            "test": {"auc": float(roc_auc_score(y["test"], scores["test"])),
                     **classification_scores(y["test"], (scores["test"] > 0.5).astype(int), binary=True)},
        }
        print(f"census {task}: {model.n_iter_} iterations, {fit_seconds:.0f} s", flush=True)
    return results


def print_table(text: dict, census: dict | None) -> None:
    print("\nTest split; hyper-parameters picked on validation (reference: majority class / training mean; "
          "neural: README, whole training split)")
    if text:
        header = f"{'task':<10} {'metric':<10}" + "".join(f"{size:>16}" for size in text) + f"{'reference':>11}"
        print(header + f"{'neural':>8}")
        last = next(reversed(text.values()))
        rows = [("sentiment", "accuracy"), ("sentiment", "f1"), ("sentiment", "macro_f1"), ("sentiment", "auc"),
                ("domain", "accuracy"), ("domain", "f1"), ("intensity", "pearson_r"), ("intensity", "mae")]
        for task, metric in rows:
            cells = "".join(f"{text[size][task]['test'][metric]:>16.4f}" for size in text)
            reference = last[task].get("majority", last[task].get("training_mean", {})).get(metric)
            neural = NEURAL[task].get(metric)
            print(f"{task:<10} {metric:<10}{cells}" + (f"{reference:>11.4f}" if reference is not None else " " * 11)
                  + (f"{neural:>8.3f}" if neural is not None else ""))
        choices = [f"C {text[s]['sentiment']['C']:g}/{text[s]['domain']['C']:g} a {text[s]['intensity']['alpha']:g}"
                   for s in text]
        print(f"{'picked':<10} {'C/C/alpha':<10}" + "  ".join(choices))
        print(f"{'':<10} {'n train':<10}" + "".join(f"{text[s]['train_size']:>16}" for s in text))
    if census:
        print(f"\n{'census':<10} {'test AUC':>9} {'accuracy':>9} {'f1':>7} {'val AUC':>8} {'iters':>6} "
              f"{'fit s':>6} {'neural AUC':>11}")
        for task in ("income", "marital"):
            result = census[task]
            print(f"{task:<10} {result['test']['auc']:>9.4f} {result['test']['accuracy']:>9.4f} "
                  f"{result['test']['f1']:>7.4f} {result['validation_auc']:>8.4f} {result['iterations']:>6} "
                  f"{result['fit_seconds']:>6.1f} {NEURAL[task]['auc']:>11.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the jobs' split and subset seed")
    parser.add_argument("--sizes", nargs="+", default=["500", "2000", "full"],
                        help="training sizes for the text tasks: numbers, or 'full' for the whole training split")
    parser.add_argument("--no-census", dest="census", action="store_false", help="skip the census baselines")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    for size in args.sizes:
        if size != "full" and not size.isdigit():
            parser.error(f"--sizes takes whole numbers or 'full', got {size!r}.")
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        text = text_baselines(args.seed, args.sizes)
        census = census_baselines(args.seed) if args.census else None
    seconds = time.perf_counter() - started
    print_table(text, census)
    print(f"\n{seconds:.0f} s in all")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "command": " ".join(["python", "benchmarks/baselines.py", *sys.argv[1:]]), "seed": args.seed,
        "notes": NOTES, "text": text, "census": census, "seconds": seconds,
    }, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
