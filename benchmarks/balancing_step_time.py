"""What does each balancing method cost? Training step time relative to static weighting, in one process.

    python benchmarks/balancing_step_time.py [--quick] [--models text,vision] [--tasks 2,3,5]
                                             [--methods pcgrad,mgda,pcgrad@4,...] [--rounds 5] [--pairs 5]

(`NAME@K`: the gradient method with `update_every=K`, whose target is (T + 0.3 + K - 1) / K.)

For the text model (`build_text_model`: the default CNN encoder, a 20,000-token vocabulary, 64 tokens, batch 64)
and the vision model (`build_vision_model`: a small U-Net on 64x64x1 images, batch 32), each with T = 2, 3 and 5
tasks of mixed kinds (binary, regression, multiclass; the vision tasks start with a segmentation task), on random
data of the right shapes, one model is compiled per method: static weighting (the baseline), the weightings
uncertainty, gradnorm, dwa, rlw, famo, gls, stch, and every registered gradient method (mgda and graddrop in
representation space, their default; with static weighting). No metrics are
compiled: the step is the forward pass, the losses, the method and the optimizer update.

Timing: each model's compiled train function is called on a repeated tf.data iterator (all models of a group read
the same one) after three warm-up calls (tracing; the optimizer and the loss trackers are built before it, so the
step is traced once, not twice). The steps of a method and of static weighting alternate: every round takes, for
each method in turn, `--pairs` pairs of one static step and one step of the method (which of the two goes first
alternates, and the order of the methods reverses from round to round). Each pair gives a ratio, and the table
gives their median and quartiles: a shared CPU's speed drifts over seconds, far slower than one pair (tens to
hundreds of milliseconds), so the drift cancels within a pair. Beside it, the same ratio of the process's CPU time
(all threads), which waiting for a busy CPU does not inflate.

Targets (issue 5): a gradient method costs at most about T backward passes, ratio <= T + 0.3; GradNorm, which takes
T backward passes through the heads to the last shared layer, is held to the same bound; the other weightings cost
<= 1.05x. Prints the table and writes it (with the command line and the machine at the top) to
benchmarks/results/balancing_step_time.txt, and everything measured to benchmarks/results/balancing_step_time.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl_keras import (  # noqa: E402
    Task,
    build_text_model,
    build_vision_model,
    compile_multitask,
    make_image_dataset,
    make_text_dataset,
    set_global_seed,
)
from mtl_keras.training.gradients import GRADIENT_METHODS as REGISTERED_GRADIENT_METHODS  # noqa: E402
from mtl_keras.training.gradients import get_gradient_method  # noqa: E402

WEIGHTINGS = ("uncertainty", "gradnorm", "dwa", "rlw", "famo", "gls", "stch")
GRADIENT_METHODS = tuple(REGISTERED_GRADIENT_METHODS)
BASELINE = "static"

# The tasks of a model with T tasks are the first T of its list: mixed kinds, segmentation first for images.
TASKS = {
    "text": [Task("sentiment", "binary"), Task("score", "regression"), Task("topic", "multiclass", num_classes=5),
             Task("toxic", "binary"), Task("domain", "multiclass", num_classes=20)],
    "vision": [Task("mask", "segmentation", num_classes=4), Task("presence", "binary"), Task("count", "regression"),
               Task("kind", "multiclass", num_classes=10), Task("box", "regression", units=4)],
}
VOCABULARY_SIZE, MAX_LENGTH, TEXT_BATCH = 20_000, 64, 64
IMAGE_SHAPE, VISION_BATCH, VISION_FILTERS = (64, 64, 1), 32, (8, 16, 32)
WARMUP_CALLS = 3  # the first traces the step; the next two settle allocations and caches
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Measured:
    """One method on one model: its compiled step, and what its timed steps took."""

    method: str
    iterator: object
    model: keras.Model | None = None
    trace_seconds: float = 0.0
    error: str | None = None
    wall: list[float] = field(default_factory=list)  # seconds of each timed step
    cpu: list[float] = field(default_factory=list)  # CPU seconds of this process (all threads) in each step
    wall_ratios: list[float] = field(default_factory=list)  # each step over its paired static step
    cpu_ratios: list[float] = field(default_factory=list)


def split_method(method: str) -> tuple[str, int]:
    """"pcgrad@4" -> ("pcgrad", 4): a gradient method with `update_every=4`; "pcgrad" -> ("pcgrad", 1)."""
    name, _, every = method.partition("@")
    return name, int(every or 1)


def method_kind(method: str) -> str:
    return "gradient" if split_method(method)[0] in GRADIENT_METHODS else "weighting"


def target(method: str, num_tasks: int) -> float | None:
    name, every = split_method(method)
    if method == BASELINE:
        return None
    if every > 1:  # one combination (T backward passes) every k steps, one backward pass in between
        return (num_tasks + 0.3 + every - 1) / every
    if name in GRADIENT_METHODS or method == "gradnorm":
        return num_tasks + 0.3
    return 1.05


def random_labels(tasks: list[Task], count: int, rng: np.random.Generator, image_side: int = 0) -> dict:
    labels = {}
    for task in tasks:
        if task.kind == "binary":
            labels[task.name] = rng.integers(0, 2, (count, 1)).astype("float32")
        elif task.kind == "regression":
            labels[task.name] = rng.normal(size=(count, task.output_units)).astype("float32")
        elif task.kind == "segmentation":
            labels[task.name] = rng.integers(0, task.num_classes, (count, image_side, image_side)).astype("int32")
        else:
            labels[task.name] = rng.integers(0, task.num_classes, (count,)).astype("int32")
    return labels


def random_dataset(model_name: str, tasks: list[Task], batches: int = 4) -> tf.data.Dataset:
    """A few batches of random inputs and labels through the library's own pipeline (so the batch dimension is
    unknown to the traced step, as in training), cached and repeated: no input cost inside the timing."""
    rng = np.random.default_rng(0)
    if model_name == "text":
        count = TEXT_BATCH * batches
        # Zipf-distributed token ids: frequent words repeat within a batch, as in real text (the embedding's
        # gradient touches some 650 of its 20,002 rows per batch). Lengths 8 to 96 tokens, cut at 64 by the model.
        texts = [" ".join(f"w{i}" for i in rng.zipf(1.3, size) % VOCABULARY_SIZE)
                 for size in rng.integers(8, 97, count)]
        dataset = make_text_dataset(texts, random_labels(tasks, count, rng), tasks, batch_size=TEXT_BATCH)
    else:
        count = VISION_BATCH * batches
        images = rng.integers(0, 256, (count, *IMAGE_SHAPE)).astype("uint8")
        dataset = make_image_dataset(images, random_labels(tasks, count, rng, IMAGE_SHAPE[0]), tasks, IMAGE_SHAPE,
                                     batch_size=VISION_BATCH)
    return dataset.cache().repeat()


def build_model(model_name: str, tasks: list[Task], method: str, args) -> keras.Model:
    if model_name == "text":
        model = build_text_model(tasks, vocabulary=[f"w{i}" for i in range(VOCABULARY_SIZE)], max_length=MAX_LENGTH)
    else:
        model = build_vision_model(tasks, image_shape=IMAGE_SHAPE, backbone=args.vision_backbone,
                                   filters=args.vision_filters)
    name, every = split_method(method)
    weighting = None if name in GRADIENT_METHODS or method == BASELINE else method
    gradient = get_gradient_method(name, update_every=every) if name in GRADIENT_METHODS else None
    return compile_multitask(model, tasks, optimizer=keras.optimizers.Adam(1e-3),
                             metrics={task.name: [] for task in tasks}, weighting=weighting, gradient=gradient)


def train_call(measured: Measured) -> tuple[float, float]:
    """Wall and CPU seconds of one training step (the compiled train function on the next batch, read back)."""
    wall, cpu = time.perf_counter(), time.process_time()
    logs = measured.model.train_function(measured.iterator)
    float(tf.nest.flatten(logs)[0])
    return time.perf_counter() - wall, time.process_time() - cpu


def prepare(model_name: str, tasks: list[Task], method: str, dataset: tf.data.Dataset, iterator, args) -> Measured:
    measured = Measured(method, iterator=iterator)
    try:
        measured.model = build_model(model_name, tasks, method, args)
        # Keras (TF backend, no strategy) would create the optimizer's slots and the loss trackers inside the first
        # trace, which makes tf.function trace the step twice; building them first halves the tracing.
        measured.model._symbolic_build(data_batch=next(iter(dataset)))
        measured.model.make_train_function()
        start = time.perf_counter()
        for _ in range(WARMUP_CALLS):
            train_call(measured)
        measured.trace_seconds = time.perf_counter() - start
    except Exception as error:  # a method that fails is reported, the others are still measured
        measured.error = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        measured.model = None
        print(f"    {method}: FAILED ({measured.error})", flush=True)
        if args.verbose:
            traceback.print_exc()
    return measured


def record(measured: Measured) -> tuple[float, float]:
    wall, cpu = train_call(measured)
    measured.wall.append(wall)
    measured.cpu.append(cpu)
    return wall, cpu


def time_group(runs: dict[str, Measured], rounds: int, pairs: int) -> None:
    """Rounds of paired steps: for every method in turn, `pairs` times a static step and a step of the method
    (which comes first alternates), each method's ratio taken against the static step beside it."""
    methods = [name for name, run in runs.items() if name != BASELINE and run.error is None]
    baseline = runs[BASELINE]
    for round_index in range(rounds):
        for name in methods if round_index % 2 == 0 else methods[::-1]:
            run = runs[name]
            for pair in range(pairs):
                if (pair + round_index) % 2 == 0:
                    static, method = record(baseline), record(run)
                else:
                    method, static = record(run), record(baseline)
                run.wall_ratios.append(method[0] / static[0])
                run.cpu_ratios.append(method[1] / static[1])


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return (values[0],) * 3
    first, median, third = statistics.quantiles(values, n=4)
    return first, median, third


def summarize(run: Measured, model_name: str, num_tasks: int) -> dict:
    is_baseline = run.method == BASELINE
    row = {"model": model_name, "tasks": num_tasks, "method": run.method, "kind": method_kind(run.method),
           "target": target(run.method, num_tasks), "trace_seconds": run.trace_seconds, "error": run.error,
           "ms_per_step": None, "ratio": None, "ratio_quartiles": None, "cpu_ratio": None, "passed": None}
    if run.wall:
        row["ms_per_step"] = 1000 * statistics.median(run.wall)
        if is_baseline:  # the baseline's own spread: its steps over their median
            row["ratio"], row["cpu_ratio"] = 1.0, 1.0
            row["ratio_quartiles"] = [value / statistics.median(run.wall) for value in quartiles(run.wall)]
        else:
            row["ratio_quartiles"] = list(quartiles(run.wall_ratios))
            row["ratio"], row["cpu_ratio"] = row["ratio_quartiles"][1], statistics.median(run.cpu_ratios)
        if row["target"] is not None:
            row["passed"] = row["ratio"] <= row["target"]
    row["step_ms"] = [round(1000 * value, 2) for value in run.wall]
    row["step_cpu_ms"] = [round(1000 * value, 2) for value in run.cpu]
    row["wall_ratios"] = [round(value, 4) for value in run.wall_ratios]
    row["cpu_ratios"] = [round(value, 4) for value in run.cpu_ratios]
    return row


def machine_lines(args) -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"command: python {' '.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])}",
        f"machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs visible; device: "
        f"{'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}; load average at start: {load}",
        f"python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"numpy {np.__version__}",
        f"settings: {args.rounds} rounds of {args.pairs} step pairs per method, text batch {TEXT_BATCH} (vocabulary "
        f"{VOCABULARY_SIZE:,}, {MAX_LENGTH} tokens, CNN encoder), vision batch {VISION_BATCH} "
        f"({args.vision_backbone} {args.vision_filters} on {IMAGE_SHAPE}); no metrics compiled",
    ]


def table_lines(rows: list[dict]) -> list[str]:
    header = (f"{'model':<7} {'T':>2} {'method':<12} {'ms/step':>8} {'ratio':>6} {'quartiles':>10} "
              f"{'cpu ratio':>9} {'target':>7} {'result':<6} {'trace s':>7}")
    lines = [header, "-" * len(header)]
    for row in rows:
        target_text = f"<={row['target']:.2f}" if row["target"] else "-"
        if row["error"] or row["ratio"] is None:
            lines.append(f"{row['model']:<7} {row['tasks']:>2} {row['method']:<12} {'':>8} {'':>6} {'':>10} "
                         f"{'':>9} {target_text:>7} {'ERROR':<6}  {row['error']}")
            continue
        spread = "{:.2f}-{:.2f}".format(row["ratio_quartiles"][0], row["ratio_quartiles"][2])
        result = "" if row["target"] is None else ("pass" if row["passed"] else "FAIL")
        lines.append(f"{row['model']:<7} {row['tasks']:>2} {row['method']:<12} {row['ms_per_step']:8.1f} "
                     f"{row['ratio']:6.3f} {spread:>10} {row['cpu_ratio']:9.3f} {target_text:>7} {result:<6} "
                     f"{row['trace_seconds']:7.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="text,vision", help="comma-separated: text, vision")
    parser.add_argument("--tasks", default="2,3,5", help="comma-separated task counts, 2 to 5")
    parser.add_argument("--methods", default=",".join(WEIGHTINGS + GRADIENT_METHODS),
                        help="comma-separated methods besides static (always measured, the baseline)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=5, help="paired (static, method) steps per method and round")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 pairs: a smoke run, noisier ratios")
    parser.add_argument("--vision-backbone", default="unet", choices=("unet", "cnn"))
    parser.add_argument("--vision-filters", default=",".join(map(str, VISION_FILTERS)))
    parser.add_argument("--output", default=str(RESULTS / "balancing_step_time"),
                        help="path of the results without extension (.json and .txt are written)")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of a method that fails")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.pairs = 2, 3
    args.vision_filters = tuple(int(width) for width in args.vision_filters.split(","))
    model_names = [name.strip() for name in args.models.split(",") if name.strip()]
    task_counts = [int(count) for count in args.tasks.split(",")]
    methods = [BASELINE] + [name.strip() for name in args.methods.split(",") if name.strip() not in ("", BASELINE)]
    unknown = sorted(set(model_names) - set(TASKS)) + sorted({split_method(m)[0] for m in methods}
                                                             - {BASELINE, *WEIGHTINGS, *GRADIENT_METHODS})
    if unknown or not all(2 <= count <= 5 for count in task_counts):
        parser.error(f"unknown models or methods {unknown}, or task counts outside 2..5: {task_counts}")

    set_global_seed()
    started, started_cpu = time.perf_counter(), time.process_time()
    header = machine_lines(args)
    print("\n".join(header), flush=True)
    rows = []
    for model_name in model_names:
        for count in task_counts:
            group_start = time.perf_counter()
            tasks = TASKS[model_name][:count]
            dataset = random_dataset(model_name, tasks)
            print(f"{model_name}, T={count}: tracing {len(methods)} models ...", flush=True)
            iterator = iter(dataset)  # one for every model of the group: they read the same batches
            runs = {method: prepare(model_name, tasks, method, dataset, iterator, args) for method in methods}
            if runs[BASELINE].error is not None:
                raise RuntimeError(f"the baseline failed on {model_name}, T={count}: {runs[BASELINE].error}")
            traced = time.perf_counter()
            time_group(runs, args.rounds, args.pairs)
            rows += [summarize(run, model_name, count) for run in runs.values()]
            print("\n".join(table_lines(rows[-len(methods):])[2:]), flush=True)
            timed = time.perf_counter()
            del runs, iterator
            keras.backend.clear_session()
            gc.collect()
            print(f"  ({traced - group_start:.0f} s building and tracing, {timed - traced:.0f} s timing, "
                  f"{time.perf_counter() - timed:.0f} s releasing)", flush=True)

    total, total_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    failures = [f"{row['model']} T={row['tasks']} {row['method']}" for row in rows if row["passed"] is False]
    errors = [f"{row['model']} T={row['tasks']} {row['method']}" for row in rows if row["error"]]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    passes = sum(row["passed"] is True for row in rows)
    summary = [f"run time: {total / 60:.1f} min ({total_cpu / 60:.1f} min of CPU, all threads); {passes} pass, "
               f"{len(failures)} fail, {len(errors)} errors; load average at the end: {load}",
               f"fail: {', '.join(failures) or 'none'}", f"errors: {', '.join(errors) or 'none'}"]
    lines = header + [""] + table_lines(rows) + [""] + summary
    print("\n" + "\n".join(table_lines(rows) + [""] + summary))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    output.with_suffix(".json").write_text(json.dumps({
        "header": header, "rounds": args.rounds, "pairs_per_round": args.pairs, "warmup_calls": WARMUP_CALLS,
        "text": {"vocabulary": VOCABULARY_SIZE, "max_length": MAX_LENGTH, "batch": TEXT_BATCH},
        "vision": {"image_shape": IMAGE_SHAPE, "batch": VISION_BATCH, "backbone": args.vision_backbone,
                   "filters": args.vision_filters},
        "tasks": {name: [task.get_config() for task in tasks] for name, tasks in TASKS.items()},
        "results": rows, "total_seconds": total, "total_cpu_seconds": total_cpu,
    }, indent=1) + "\n")
    print(f"wrote {output.with_suffix('.txt')} and {output.with_suffix('.json')}")


if __name__ == "__main__":
    main()
