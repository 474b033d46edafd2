"""The `mtl-keras` command: train a job, evaluate a run folder, predict with a run folder."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

# TensorFlow's C++ start-up lines are kept out by the package's first import (mtl_keras/_startup.py), unless --verbose.


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


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", "").strip("()[]").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _strategy(text: str) -> str:
    from mtl_keras.distribute import STRATEGY_NAMES

    if text.partition(":")[0].lower().replace("-", "_") not in STRATEGY_NAMES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(STRATEGY_NAMES)} (or mirrored:DEVICE,...), "
                                         f"got {text!r}")
    return text


def _add_sharing_options(parser: argparse.ArgumentParser, default: str, choices=None, examples: str | None = None):
    from mtl_keras.sharing import SHARING_NAMES

    parser.add_argument("--sharing", choices=choices or SHARING_NAMES, default=None,
                        help=f"how the tasks share (default: {default}); single-task baselines use plain networks")
    parser.add_argument("--sharing-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="an argument of the sharing layer (repeatable), e.g. " + (examples or (
                            "--sharing-option num_experts=8 or --sharing-option 'expert_units=(128, 64)'; cascade: "
                            "--sharing-option 'order=[\"a\", \"b\"]'")))


def _add_backbone_options(parser: argparse.ArgumentParser, trunks: str) -> None:
    parser.add_argument("--backbone", default=None, metavar="PRESET_OR_PATH",
                        help=f"shared trunk: {trunks}, a keras-hub preset name (downloaded once) or folder "
                             f"(needs pip install -e \".[hub]\")")
    parser.add_argument("--freeze-backbone-epochs", type=int, default=None, metavar="N",
                        help="keep a pretrained backbone frozen for the first N epochs (-1: throughout)")
    parser.add_argument("--unfreeze-from", default=None, metavar="LAYER",
                        help="the backbone's first layer to train once unfrozen (earlier ones stay frozen)")
    parser.add_argument("--lora-rank", type=int, default=None, metavar="R",
                        help="train rank-R LoRA adapters on a keras-hub backbone's attention, nothing else of it")
    parser.add_argument("--backbone-lr-multiplier", type=float, default=None, metavar="M",
                        dest="backbone_learning_rate_multiplier",
                        help="train a pretrained backbone at M times the learning rate (0 < M <= 1), the heads at "
                             "the full rate")


def _add_training_options(parser: argparse.ArgumentParser, data_help: str, examples: str) -> None:
    """The options every training job takes."""
    from mtl_keras.training.gradients import GRADIENT_METHODS
    from mtl_keras.training.weighting import WEIGHTINGS

    parser.add_argument("--epochs", type=int, default=None, help="most epochs (early stopping on validation loss)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--loss-weight", type=_loss_weight, action="append", default=[], metavar="TASK=WEIGHT",
                        help="a task's loss weight (repeatable), e.g. --loss-weight intensity=0.5")
    parser.add_argument("--weighting", choices=sorted(WEIGHTINGS), default=None,
                        help="how task losses are weighted (default: static, the --loss-weight values)")
    parser.add_argument("--weighting-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="an argument of the weighting (repeatable), e.g. --weighting-option alpha=1.0")
    parser.add_argument("--gradient", choices=sorted(GRADIENT_METHODS), default=None,
                        help="a gradient method combining per-task gradients on the shared weights (default: none)")
    parser.add_argument("--gradient-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="an argument of the gradient method (repeatable), e.g. --gradient-option c=0.4")
    parser.add_argument("--baselines", action="store_true",
                        help="also train one single-task model per task and report Δm")
    parser.add_argument("--limit", type=int, default=None, help=f"use a stratified subset of about N {examples}")
    parser.add_argument("--train-limit", type=int, default=None, metavar="N",
                        help="train on a seeded random N of the training split (validation and test stay whole)")
    parser.add_argument("--standardize-targets", action="store_true", default=None,
                        help="regression tasks train on their targets standardized by the training labels' mean and "
                             "spread; outputs and the SavedModel stay in the targets' units")
    parser.add_argument("--balance-classes", action=argparse.BooleanOptionalAction, default=None,
                        help="classification tasks weigh each class by n / (classes x its count in the training "
                             "labels), so rare classes count as much as common ones (the text job's default)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the split, the initialisation and shuffling")
    parser.add_argument("--data", dest="data_path", default=None, help=data_help)
    parser.add_argument("--output", type=Path, default=None, help="run folder (default: runs/JOB-DATE-TIME)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run folder once the new one is complete")
    parser.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    parser.add_argument("--strategy", type=_strategy, default=None, metavar="NAME",
                        help="tf.distribute strategy: none (default), mirrored (the local GPUs), "
                             "mirrored:/gpu:0,/gpu:1 (listed devices), multi_worker (the cluster in TF_CONFIG), auto")
    parser.add_argument("--backup-dir", default=None, metavar="DIR",
                        help="back the training up in DIR at each epoch's end; the same command started again after "
                             "a kill resumes from it (DIR is removed once the run folder is written)")
    parser.add_argument("--backup-every", type=int, default=None, metavar="N",
                        help="with --backup-dir, also back up every N training batches")
    parser.add_argument("--mixed-precision", action="store_true", default=None,
                        help="build the model under Keras' mixed precision: mixed_float16 with loss scaling on a "
                             "GPU, mixed_bfloat16 on CPUs; outputs stay float32")


def _parser() -> argparse.ArgumentParser:
    # The choices come from the registries, so that a new encoder, backbone or dataset is offered at once.
    from mtl_keras.encoders.numeric import NUMERIC_ENCODINGS
    from mtl_keras.encoders.text import TEXT_ENCODERS
    from mtl_keras.encoders.vision import BACKBONES
    from mtl_keras.jobs.vision import PRESETS as VISION_PRESETS

    parser = argparse.ArgumentParser(
        prog="mtl-keras",
        description="Multi-task learning with Keras: train a job, evaluate or query a run folder.",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up lines (CUDA, CPU features), hidden by default; anywhere")
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
    text.add_argument("--encoder", choices=list(TEXT_ENCODERS), default="cnn", help="shared encoder")
    text.add_argument("--max-length", type=int, default=None, help="tokens kept per text")
    text.add_argument("--embedding-dim", type=int, default=None)
    text.add_argument("--no-lexicon", dest="lexicon", action="store_false", default=None,
                      help="leave out the frozen VADER lexicon channels (valence, negation) beside the embedding")
    text.add_argument("--tfidf-units", type=int, default=None, metavar="N",
                      help="a TF-IDF branch (word unigrams and bigrams of the training texts) of width N beside the "
                           "encoder (default 64; 0 leaves it out; a --backbone has none)")
    _add_sharing_options(text, "hard")
    _add_backbone_options(text, "our embedding and encoder by default; RUN/trunk, the trunk an earlier run saved")
    _add_training_options(text, "the corpus file (default: bundled copy)", "texts")

    census = jobs.add_parser(
        "census", help="income > 50K and never-married on UCI Census-Income (KDD), the MMoE benchmark",
        description="Raw feature columns (categorical ones embedded, numeric ones standardised) -> a sharing layer "
                    "-> two heads: income > 50K and marital status 'never married' (Ma et al. 2018). Train and "
                    "validation come from the official training file (90/10, stratified by --seed); the test "
                    "metrics are on the whole official test file (99,762 records).",
    )
    _add_sharing_options(census, "mmoe")
    census.add_argument("--numeric-encoding", choices=NUMERIC_ENCODINGS, default=None,
                        help="how numeric columns go in: periodic (default; sin/cos of learned frequencies), "
                             "piecewise_linear (over quantile bins), both embedded per column (Gorishniy et al. "
                             "2022), or standardize")
    census.add_argument("--numeric-embedding-dim", type=int, default=None, metavar="D",
                        help="width of each numeric column's embedding (piecewise_linear, periodic)")
    _add_training_options(census, "the folder holding census_income_{train,test}.tsv.xz (default: bundled copy)",
                          "training records")

    vision = jobs.add_parser(
        "vision", help="segmentation, presence, count and box on generated scenes (or MultiFashion)",
        description="One shared CNN, raw uint8 images in. Scenes (default): 64x64 images of 1 to 3 Fashion-MNIST "
                    "items on clutter, with masks derived from compositing; tasks segmentation (11 classes), "
                    "presence (10 labels), count and box (of the largest item). --dataset multifashion: two "
                    "overlapping items per 28x28 image, tasks left and right (10 classes each). Items never cross "
                    "splits: test images use Fashion-MNIST test items.",
    )
    vision.add_argument("--dataset", choices=list(VISION_PRESETS), default=None, help="default: scenes")
    _add_backbone_options(vision, f"{' or '.join(BACKBONES)} (default: unet for scenes, cnn for multifashion), "
                                  f"applications:NAME (keras.applications, ImageNet weights)")
    from mtl_keras.sharing.vision import VISION_SHARING

    _add_sharing_options(vision, "hard", choices=list(VISION_SHARING),
                         examples="--sharing cross_stitch --sharing-option self_weight=0.9 (mtan, cross_stitch: "
                                  "built-in trunks only)")
    vision.add_argument("--filters", type=_int_tuple, default=None, metavar="W,W,...",
                        help="widths of the encoder stages, e.g. 16,32,64,128")
    vision.add_argument("--num-train", type=int, default=None, help="training images to generate")
    vision.add_argument("--source", choices=["bundled", "debian"], default=None,
                        help="Fashion-MNIST items: the bundled 12k+2k subset (default) or the Debian package's "
                             "full set")
    _add_training_options(vision, "the folder holding fashion_mnist_subset.npz (bundled) or the idx files (debian)",
                          "training images")

    evaluate = commands.add_parser(
        "evaluate", help="recompute a run's test metrics from its saved model",
        description="Rebuild the run's test split from its config.json, predict with the saved model and print "
                    "each task's metrics beside those recorded in metrics.json.",
    )
    evaluate.add_argument("run", type=Path, help="a run folder written by `mtl-keras train`")
    evaluate.add_argument("--split", choices=["test", "validation"], default="test")
    evaluate.add_argument("--saved-model", action="store_true", help="use saved_model/ instead of model.keras")
    evaluate.add_argument("--allow-unsafe-ops", action="store_true",
                          help="with --saved-model: run it even if its graph writes files or runs Python code")

    predict = commands.add_parser(
        "predict", help="print each task's prediction for each input",
        description="Load the run's SavedModel and print, for each input, every task's prediction (a SavedModel "
                    "is a program: use run folders from someone you trust; one whose graph writes files or runs "
                    "Python code is refused unless --allow-unsafe-ops). Inputs are "
                    "texts for a text run, JSON objects of raw column values for a tabular run, image files (PNG, "
                    "JPEG, GIF, BMP) for a vision run; each predicted segmentation mask is written as a PNG beside "
                    "its image (IMAGE.TASK.png, or in --mask-dir).",
    )
    predict.add_argument("run", type=Path, help="a run folder written by `mtl-keras train`")
    predict.add_argument("inputs", nargs="+", help="texts, JSON objects of column values, or image files")
    predict.add_argument("--mask-dir", type=Path, default=None, help="where to write predicted masks")
    predict.add_argument("--json", action="store_true", help="print raw outputs as JSON")
    predict.add_argument("--allow-unsafe-ops", action="store_true",
                         help="run a SavedModel even if its graph writes files or runs Python code (refused by "
                              "default; mtl_keras never exports such ops). Run folders must come from someone you "
                              "trust: a SavedModel is a program")
    _add_tune_parser(commands, jobs)
    _add_affinity_parser(commands, jobs)
    return parser


def _copies_of_train_jobs(jobs, train_jobs):
    """One parser per job under `jobs`, each taking every option of `mtl-keras train JOB`."""
    import copy

    for name, train_job in train_jobs.choices.items():
        # A copy: "resolve" rewrites the actions whose options it replaces, and `mtl-keras train` keeps its own.
        yield jobs.add_parser(name, parents=[copy.deepcopy(train_job)], add_help=False, conflict_handler="resolve",
                              help=f"the {name} job (options as `mtl-keras train {name}`)",
                              description=train_job.description)


def _add_affinity_parser(commands, train_jobs) -> None:
    """`mtl-keras affinity JOB`: the options of `mtl-keras train JOB` (copied from its parser), and the affinity's."""

    affinity = commands.add_parser(
        "affinity", help="train a job's multi-task model and report which tasks help each other",
        description="Train a job's multi-task model as `mtl-keras train` does, measuring every --every steps, on the "
                    "batch about to be trained on, the lookahead affinity of Fifty et al. (2021, TAG) and the cosine "
                    "similarity of the task gradients on the shared weights; print both as tables.",
    )
    jobs = affinity.add_subparsers(dest="job", required=True, metavar="JOB")
    for job in _copies_of_train_jobs(jobs, train_jobs):
        job.add_argument("--every", type=int, default=10, metavar="N", help="measure every N training steps")
        job.add_argument("--lookahead-lr", dest="lookahead_learning_rate", type=float, default=None,
                         help="learning rate of the lookahead SGD step (default: the optimizer's current one)")
        job.add_argument("--output", type=Path, default=None, help="also write the report as JSON to this file")
        job.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
        job.add_argument("--baselines", action="store_true", help=argparse.SUPPRESS)  # train only; refused


def _job_from_args(args):
    """The job `args.job`, its config overridden by the options given (those left unset keep the job's defaults)."""
    from mtl_keras.jobs import JOBS

    job_class = JOBS[args.job]
    fields = {f.name for f in dataclasses.fields(job_class.config_class)}
    overrides = {key: value for key, value in vars(args).items() if key in fields and value is not None}
    if args.loss_weight:
        overrides["loss_weights"] = dict(args.loss_weight)
    if getattr(args, "sharing_option", None):
        overrides["sharing_options"] = dict(args.sharing_option)
    if getattr(args, "weighting_option", None):
        overrides["weighting_options"] = dict(args.weighting_option)
    if getattr(args, "gradient_option", None):
        overrides["gradient_options"] = dict(args.gradient_option)
    job = job_class(**overrides)
    job.distribute_strategy()  # first: a multi-worker strategy must start before TensorFlow does anything else
    return job


def _affinity(args) -> int:
    import time

    from mtl_keras.analysis.affinity import TaskAffinity

    if args.baselines:
        raise ValueError("--baselines belongs to `mtl-keras train`; `mtl-keras affinity` trains the multi-task "
                         "model only.")
    if args.every < 1:
        raise ValueError(f"--every must be a positive number of steps, got {args.every}.")
    if (args.strategy or "none").strip().lower() not in ("none", "default"):
        raise ValueError(f"`mtl-keras affinity` measures on one device (its lookahead changes and restores the shared "
                         f"weights outside any replica); --strategy {args.strategy} belongs to `mtl-keras train`.")
    if args.output and args.output.exists() and not args.overwrite:
        raise FileExistsError(f"{args.output} already exists; choose another --output or pass --overwrite.")
    from mtl_keras.jobs.base import check_splits_not_empty

    job = _job_from_args(args)
    splits = job.data()
    check_splits_not_empty(splits, job.config.limit)
    affinity = TaskAffinity(every_n_steps=args.every, lookahead_learning_rate=args.lookahead_learning_rate)
    start = time.perf_counter()
    model, _ = job.train(splits.tasks, splits, verbose=0 if args.quiet else "auto", callbacks=[affinity])
    seconds = time.perf_counter() - start
    partition = affinity.partition
    variables = model.trainable_variables
    shared_weights = sum(int(np.prod(variables[k].shape)) for k in partition.shared)
    print(f"\nTask affinity of the {args.job} job: {len(affinity.history)} measurement(s), every {args.every} "
          f"training steps, on the batch about to be trained on ({seconds:.0f} s of training and measuring).")
    print(f"Shared: {len(partition.shared)} variables ({shared_weights:,} weights); task-specific: "
          + ", ".join(f"{task} {len(indices)}" for task, indices in partition.task_specific.items()) + ".\n")
    print(affinity.table("lookahead") + "\n")
    print(affinity.table("cosine") + "\n")
    print("Read row i, column j: a positive Z[i->j] means a step along task i's gradient lowered task j's loss (task "
          "i helps task j), a negative one that it raised it; a positive cosine means the two tasks' gradients on the "
          "shared weights point the same way.")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        report = {"job": args.job, "config": dataclasses.asdict(job.config), "seconds": seconds, **affinity.to_dict()}
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"Written: {args.output}")
    return 0


def _train(args) -> int:
    job = _job_from_args(args)
    folder = job.run(output=args.output, overwrite=args.overwrite, verbose=0 if args.quiet else "auto")
    if folder is None:
        print("Training done; the chief worker writes the run folder.")
        return 0
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
            if isinstance(value, dict):  # e.g. per-class IoU, on one line
                print(f"    {name:<15} " + ", ".join(f"{key} {number:.3f}" for key, number in value.items()))
                continue
            extra = ""
            if reference and isinstance(reference.get(task, {}).get(name), float):
                extra = f"   ({reference_name}: {reference[task][name]:.4f})"
            print(f"    {name:<15} {value:.4f}{extra}" if isinstance(value, float) else f"    {name:<15} {value}")


def _candidates(text: str) -> tuple[str | None, tuple[float, ...]]:
    """`W,W,...` (for every task but the first) or `TASK=W,W,...` (for that task)."""
    name, separator, values = text.rpartition("=")
    try:
        factors = tuple(float(part) for part in values.replace(" ", "").split(",") if part)
    except ValueError:
        factors = ()
    if not factors or (separator and not name):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, optionally after TASK=, got {text!r}")
    return name or None, factors


def _add_tune_parser(commands, train_jobs) -> None:
    """`mtl-keras tune JOB`: the options of `mtl-keras train JOB` (from a copy of its parser), and the search's."""

    tune = commands.add_parser(
        "tune", help="search static loss weights with keras-tuner on the validation split",
        description="Train the job's multi-task model once per trial with other loss weights (grid, random or "
                    "Bayesian search with keras-tuner) and rank the trials by the mean over tasks of the validation "
                    "loss relative to the first trial, which uses the job's own weights. Prints every trial and "
                    "the `mtl-keras train` command with the best weights; writes OUTPUT/tuning.json.",
    )
    jobs = tune.add_subparsers(dest="job", required=True, metavar="JOB")
    for job in _copies_of_train_jobs(jobs, train_jobs):
        job.add_argument("--tuner", choices=["grid", "random", "bayesian"], default="random",
                         help="grid: every combination; random; bayesian: a Gaussian process (default: random)")
        job.add_argument("--max-trials", type=int, default=None, metavar="N",
                         help="most trials, the first with the job's own weights (default: the whole grid for grid "
                              "search, 10 otherwise)")
        job.add_argument("--candidates", type=_candidates, action="append", default=[], metavar="[TASK=]W,W,...",
                         help="factors on the job's weights, 1 among them: W,W,... for every task but the first "
                              "(default 0.25,0.5,1,2,4), or TASK=W,W,... per task to search (repeatable)")
        job.add_argument("--loss-weight", type=_loss_weight, action="append", default=[], metavar="TASK=WEIGHT",
                         help="a task's weight in the job (repeatable): the first trial's, which the candidates "
                              "multiply")
        job.add_argument("--output", type=Path, default=None,
                         help="folder for tuning.json (default: runs/JOB-tune-DATE-TIME)")
        job.add_argument("--overwrite", action="store_true", help="replace an existing tuning.json")
        job.add_argument("--quiet", action="store_true", help="no summary after each trial")
        job.add_argument("--baselines", action="store_true", help=argparse.SUPPRESS)  # train only; refused


def _tune(args) -> int:
    import datetime
    import time

    from mtl_keras.tuning import DEFAULT_CANDIDATES, search_loss_weights

    if args.baselines:
        raise ValueError("--baselines belongs to `mtl-keras train`; `mtl-keras tune` trains multi-task models only.")
    if args.backup_dir:
        raise ValueError("--backup-dir belongs to `mtl-keras train` and `affinity`; a search resumes by trial instead "
                         "(keras-tuner reloads the finished trials from --output).")
    per_task = {name: factors for name, factors in args.candidates if name}
    shared = [factors for name, factors in args.candidates if not name]
    if len(shared) > 1 or (shared and per_task):
        raise ValueError("give --candidates once as W,W,... (every task but the first), or once per task to search "
                         "as TASK=W,W,...")
    output = args.output or Path("runs") / f"{args.job}-tune-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    target = output / "tuning.json"
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target} already exists; choose another --output or pass --overwrite.")
    start = time.perf_counter()
    search = search_loss_weights(_job_from_args(args), tuner=args.tuner, max_trials=args.max_trials,
                                 candidates=per_task or (shared[0] if shared else DEFAULT_CANDIDATES),
                                 verbose=0 if args.quiet else 1)
    seconds = time.perf_counter() - start
    output.mkdir(parents=True, exist_ok=True)
    search.write_json(target, extra={"seconds": round(seconds, 1)})
    print(f"\n{len(search.trials)} trials ({args.tuner} search, {seconds:.0f} s). Objective: the mean over tasks of "
          f"the validation loss / the reference trial's (the job's own weights); lower is better.\n")
    print(search.table())
    best = ", ".join(f"{task}={weight:g}" for task, weight in search.best_weights.items())
    print(f"\nBest loss weights: {best} (objective {search.best.objective:.4f})")
    print(f"Train with them:\n  {search.train_command()}")
    print(f"Trials: {target}")
    return 0


def _evaluate(args) -> int:
    import mtl_keras  # noqa: F401  (registers the custom layers for loading)
    from mtl_keras.evaluation import compute_metrics
    from mtl_keras.jobs import JOBS
    from mtl_keras.jobs.base import (
        check_splits_not_empty,
        load_run_model,
        load_run_saved_model,
        predict_in_batches,
        read_run,
    )
    from mtl_keras.tasks import Task

    record = read_run(args.run)
    job_class = JOBS[record["job"]]
    job = job_class(job_class.config_class(**record["config"]))
    model = (load_run_saved_model(args.run, allow_unsafe_ops=args.allow_unsafe_ops) if args.saved_model
             else load_run_model(args.run))  # before the data: a damaged file fails at once
    # A `.keras` model carries its tasks; a SavedModel serves tensors only, so its tasks come from config.json.
    tasks = getattr(model, "tasks", None) or [Task.from_config(t) for t in record["tasks"]]
    splits = job.data()
    check_splits_not_empty(splits, job.config.limit)
    split = getattr(splits, args.split)
    inputs = job.model_inputs(split.inputs)
    if args.saved_model:
        predictions = {name: value.numpy() for name, value in model.serve(inputs).items()}
    else:
        predictions = predict_in_batches(model, inputs)
    metrics = compute_metrics(tasks, predictions, split.labels, split.masks)
    recorded = json.loads((args.run / "metrics.json").read_text()).get(args.split)
    print(f"{args.split} metrics recomputed from {'saved_model/' if args.saved_model else 'model.keras'}:")
    _print_metrics(metrics, recorded, "recorded")
    return 0


def _predict(args) -> int:
    from mtl_keras.jobs.base import load_run_saved_model, read_run
    from mtl_keras.serving_io import describe_outputs, serving_inputs
    from mtl_keras.tasks import Task

    record = read_run(args.run)
    tasks = [Task.from_config(t) for t in record["tasks"]]
    saved = load_run_saved_model(args.run, allow_unsafe_ops=args.allow_unsafe_ops)
    # `serve` takes what the model takes: one tensor, or a dict of columns under the user's own names.
    served = saved.serve.concrete_functions[0].structured_input_signature[0][0]
    specs = served if isinstance(served, dict) else {served.name: served}
    outputs = {name: value.numpy() for name, value in saved.serve(serving_inputs(args.inputs, specs)).items()}
    descriptions = describe_outputs(tasks, outputs, args.inputs, args.mask_dir)  # writes the mask PNGs
    if args.json:
        print(json.dumps({name: value.tolist() for name, value in outputs.items()}))
        return 0
    for given, described in zip(args.inputs, descriptions, strict=True):
        print(given)
        for name, description in described.items():
            print(f"  {name:<12} {description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    # --verbose may come anywhere; it was read before TensorFlow was imported (mtl_keras/_startup.py).
    argv = [arg for arg in (sys.argv[1:] if argv is None else argv) if arg != "--verbose"]
    args = _parser().parse_args(argv)
    from mtl_keras.backbones.hub import MissingExtraError
    from mtl_keras.datasets.pipeline import InputError
    from mtl_keras.labels import LabelError
    from mtl_keras.training.callbacks import NonFiniteLossError

    handlers = {"train": _train, "evaluate": _evaluate, "predict": _predict, "affinity": _affinity, "tune": _tune}
    try:
        return handlers[args.command](args)
    except (LabelError, InputError, NonFiniteLossError, FileExistsError, FileNotFoundError, ValueError,
            MissingExtraError) as error:
        print(f"mtl-keras: error: {error}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
