"""The `mtl-keras` command: train a job, evaluate a run folder, predict with a run folder."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ start-up noise; real errors still raise


def _loss_weight(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TASK=WEIGHT, got {text!r}") from None


def _key_value(text: str) -> tuple[str, object]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value  # a bare word, e.g. activation=gelu


SHARING_CHOICES = ["hard", "soft", "cross_stitch", "mmoe", "ple", "mtan", "cascade"]


def _add_sharing_options(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--sharing", choices=SHARING_CHOICES, default=None,
                        help=f"how the tasks share (default: {default}); single-task baselines use plain networks")
    parser.add_argument("--sharing-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="an argument of the sharing layer (repeatable), e.g. --sharing-option num_experts=8 "
                             "or --sharing-option 'expert_units=(128, 64)'; cascade: --sharing-option "
                             "'order=[\"a\", \"b\"]'")


def _add_training_options(parser: argparse.ArgumentParser, data_help: str, examples: str) -> None:
    """The options every training job takes."""
    parser.add_argument("--epochs", type=int, default=None, help="most epochs (early stopping on validation loss)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--loss-weight", type=_loss_weight, action="append", default=[], metavar="TASK=WEIGHT",
                        help="a task's loss weight (repeatable), e.g. --loss-weight intensity=0.5")
    parser.add_argument("--baselines", action="store_true",
                        help="also train one single-task model per task and report Δm")
    parser.add_argument("--limit", type=int, default=None, help=f"use a stratified subset of about N {examples}")
    parser.add_argument("--seed", type=int, default=None, help="seed of the split, the initialisation and shuffling")
    parser.add_argument("--data", dest="data_path", default=None, help=data_help)
    parser.add_argument("--output", type=Path, default=None, help="run folder (default: runs/JOB-DATE-TIME)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run folder once the new one is complete")
    parser.add_argument("--quiet", action="store_true", help="no Keras progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-keras",
        description="Multi-task learning with Keras: train a job, evaluate or query a run folder.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a multi-task model and write a run folder",
        description="Train a multi-task model on a bundled data set, evaluate it on the held-out test split and "
                    "write a run folder: saved_model/ (raw inputs in, every task out), model.keras, metrics.json, "
                    "history.json, config.json.",
    )
    jobs = train.add_subparsers(dest="job", required=True, metavar="JOB")
    text = jobs.add_parser(
        "text", help="sentiment, intensity and domain on the VADER corpus",
        description="Shared embedding and encoder, three heads: sentiment (binary; missing where the human rating "
                    "is 0), intensity (regression on the rating, -4..4) and domain (4 classes), on the bundled "
                    "VADER corpus (23,703 texts; stratified 80/10/10 split by --seed).",
    )
    text.add_argument("--encoder", choices=["cnn", "bilstm", "transformer"], default="cnn", help="shared encoder")
    text.add_argument("--max-length", type=int, default=None, help="tokens kept per text")
    text.add_argument("--embedding-dim", type=int, default=None)
    text.add_argument("--no-lexicon", dest="lexicon", action="store_false", default=None,
                      help="leave out the frozen VADER lexicon channels (valence, negation) beside the embedding")
    _add_sharing_options(text, "hard")
    _add_training_options(text, "the corpus file (default: bundled copy)", "texts")

    census = jobs.add_parser(
        "census", help="income > 50K and never-married on UCI Census-Income (KDD), the MMoE benchmark",
        description="Raw feature columns (categorical ones embedded, numeric ones standardised) -> a sharing layer "
                    "-> two heads: income > 50K and marital status 'never married' (Ma et al. 2018). Train and "
                    "validation come from the official training file (90/10, stratified by --seed); the test "
                    "metrics are on the whole official test file (99,762 records).",
    )
    _add_sharing_options(census, "mmoe")
    _add_training_options(census, "the folder holding census_income_{train,test}.tsv.xz (default: bundled copy)",
                          "training records")

    evaluate = commands.add_parser(
        "evaluate", help="recompute a run's test metrics from its saved model",
        description="Rebuild the run's test split from its config.json, predict with the saved model and print "
                    "each task's metrics beside those recorded in metrics.json.",
    )
    evaluate.add_argument("run", type=Path, help="a run folder written by `mtl-keras train`")
    evaluate.add_argument("--split", choices=["test", "validation"], default="test")
    evaluate.add_argument("--saved-model", action="store_true", help="use saved_model/ instead of model.keras")

    predict = commands.add_parser(
        "predict", help="print each task's prediction for each input",
        description="Load the run's SavedModel and print, for each input, every task's prediction. Inputs are "
                    "texts for a text run, JSON objects of raw column values for a tabular run.",
    )
    predict.add_argument("run", type=Path, help="a run folder written by `mtl-keras train`")
    predict.add_argument("inputs", nargs="+", help="texts, or JSON objects of column values")
    predict.add_argument("--json", action="store_true", help="print raw outputs as JSON")
    return parser


def _train(args) -> int:
    from mtl_keras.jobs import JOBS

    job_class = JOBS[args.job]
    fields = {f.name for f in dataclasses.fields(job_class.config_class)}
    overrides = {key: value for key, value in vars(args).items() if key in fields and value is not None}
    if args.loss_weight:
        overrides["loss_weights"] = dict(args.loss_weight)
    if getattr(args, "sharing_option", None):
        overrides["sharing_options"] = dict(args.sharing_option)
    job = job_class(**overrides)
    folder = job.run(output=args.output, overwrite=args.overwrite, verbose=0 if args.quiet else "auto")
    metrics = json.loads((folder / "metrics.json").read_text())
    print(f"\nTest metrics ({folder}/metrics.json):")
    _print_metrics(metrics["test"], metrics.get("single_task_test"))
    if "delta_m_percent" in metrics:
        print(f"Δm (multi-task vs single-task, mean over tasks): {metrics['delta_m_percent']:+.2f}%")
    print(f"Run folder: {folder}")
    return 0


def _print_metrics(metrics: dict, reference: dict | None = None, reference_name: str = "single-task") -> None:
    for task, values in metrics.items():
        print(f"  {task}:")
        for name, value in values.items():
            extra = ""
            if reference and task in reference and name in reference[task]:
                extra = f"   ({reference_name}: {reference[task][name]:.4f})"
            print(f"    {name:<15} {value:.4f}{extra}" if isinstance(value, float) else f"    {name:<15} {value}")


def _evaluate(args) -> int:
    import keras

    import mtl_keras  # noqa: F401  (registers the custom layers for loading)
    from mtl_keras.evaluation import compute_metrics
    from mtl_keras.export import load_saved_model
    from mtl_keras.jobs import JOBS
    from mtl_keras.jobs.base import predict_in_batches, read_run
    from mtl_keras.tasks import Task

    record = read_run(args.run)
    job_class = JOBS[record["job"]]
    job = job_class(job_class.config_class(**record["config"]))
    tasks = [Task.from_config(t) for t in record["tasks"]]
    split = getattr(job.load_data(), args.split)
    inputs = job.model_inputs(split.inputs)
    if args.saved_model:
        saved = load_saved_model(args.run / "saved_model")
        predictions = {name: value.numpy() for name, value in saved.serve(inputs).items()}
    else:
        model = keras.models.load_model(args.run / "model.keras")
        predictions = predict_in_batches(model, inputs)
    metrics = compute_metrics(tasks, predictions, split.labels, split.masks)
    recorded = json.loads((args.run / "metrics.json").read_text()).get(args.split)
    print(f"{args.split} metrics recomputed from {'saved_model/' if args.saved_model else 'model.keras'}:")
    _print_metrics(metrics, recorded, "recorded")
    return 0


def _predict(args) -> int:
    from mtl_keras.export import load_saved_model
    from mtl_keras.jobs.base import read_run
    from mtl_keras.tasks import Task

    record = read_run(args.run)
    tasks = {t["name"]: Task.from_config(t) for t in record["tasks"]}
    saved = load_saved_model(args.run / "saved_model")
    specs = saved.signatures["serving_default"].structured_input_signature[1]
    outputs = {name: value.numpy() for name, value in saved.serve(serving_inputs(args.inputs, specs)).items()}
    if args.json:
        print(json.dumps({name: value.tolist() for name, value in outputs.items()}))
        return 0
    for index, given in enumerate(args.inputs):
        print(given)
        for name, task in tasks.items():
            print(f"  {name:<12} {describe_prediction(task, np.asarray(outputs[name][index]))}")
    return 0


def serving_inputs(given: list[str], specs: dict):
    """Command-line inputs as the SavedModel takes them: texts for a model of one string input, else one JSON object
    of raw column values per example (e.g. '{"age": 40, "education": "Masters degree(MA MS MEng MEd MSW MBA)"}')."""
    import tensorflow as tf

    from mtl_keras.datasets.pipeline import InputError

    if len(specs) == 1 and next(iter(specs.values())).dtype == tf.string:
        return tf.constant(given, dtype=tf.string)
    rows = []
    for index, text in enumerate(given, start=1):
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"input {index}: expected a JSON object of column values ({error}).") from None
        if not isinstance(row, dict):
            raise InputError(f"input {index}: expected a JSON object of column values, got {text!r}.")
        missing = sorted(set(specs) - set(row))
        if missing:
            raise InputError(f"input {index}: no value for column(s) {missing}; the model takes {len(specs)} columns "
                             f"(`saved_model_cli show --dir RUN/saved_model --all` lists them).")
        rows.append(row)
    columns = {}
    for name, spec in specs.items():
        values = [row[name] for row in rows]
        try:
            columns[name] = tf.constant([str(v) for v in values] if spec.dtype == tf.string else values,
                                        dtype=spec.dtype)
        except (TypeError, ValueError):
            raise InputError(f"column {name!r} takes {spec.dtype.name} values, got {values!r}.") from None
    return columns


def describe_prediction(task, output) -> str:
    """One task's prediction for one example, in words."""
    names = task.class_names
    if task.kind == "binary":
        probability = float(output.reshape(-1)[0])
        label = int(probability >= 0.5)
        return f"{names[label] if names else label} (p(positive class)={probability:.3f})"
    if task.kind == "multiclass":
        best = int(np.argmax(output))
        return f"{names[best] if names else best} (p={float(output[best]):.3f})"
    if task.kind == "multilabel":
        chosen = [names[i] if names else str(i) for i in np.flatnonzero(output >= 0.5)]
        return ", ".join(chosen) or "(none)"
    if task.kind == "regression":
        return ", ".join(f"{float(v):.3f}" for v in output.reshape(-1))
    return f"mask of shape {output.shape[:-1]}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from mtl_keras.datasets.pipeline import InputError
    from mtl_keras.labels import LabelError
    from mtl_keras.training.callbacks import NonFiniteLossError

    handlers = {"train": _train, "evaluate": _evaluate, "predict": _predict}
    try:
        return handlers[args.command](args)
    except (LabelError, InputError, NonFiniteLossError, FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"mtl-keras: error: {error}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
