"""How does training scale under tf.distribute on this machine, and what does our multi-worker path cost?

    python benchmarks/distribute_scaling.py [--examples 4096] [--batch-size 64] [--steps 30] [--rounds 5] [--quick]

The text model (`build_text_model`: CNN encoder, 128-wide embedding, 64 tokens, three heads, dropout 0.3; Adam; the
task table's metrics) on VADER texts, the same global batch everywhere. Two measurements:

1. MirroredStrategy scaling, in one process whose CPU is split into two logical devices (`split_cpu(2)`): no
   strategy, MirroredStrategy over one logical device, and over two; Keras' `fit`. The two logical devices share
   the machine's cores (two here), so this measures what synchronous replicas cost on one machine, not a speed-up
   that more hardware would give.
2. The multi-worker path: one process with Keras' `fit`, one process with our loop (`fit_distributed`), one worker
   process alone under MultiWorkerMirroredStrategy (the path's own cost), and two worker processes on 127.0.0.1
   under it (our loop; each worker takes half of each global batch). All start at once; then one configuration
   at a time runs its steps while the others wait; the two workers share the two cores.

Timing: after a warm-up fit (tracing), each round fits `--steps` steps of every configuration (the order reversed
from round to round), timing each step between the batch callbacks; a configuration's figure is the median step
over all rounds, as examples (global batch) per second, and its ratio to the first configuration of its group.
Drift in the speed of this shared machine (other jobs) thus hits every configuration of a group alike; the two
groups ran at different times, so compare ratios within a group, not milliseconds across groups.
Writes benchmarks/results/distribute_scaling.json and .txt (with the command line and the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402  (importing TensorFlow creates no device yet: split_cpu and strategies come later)
import tensorflow as tf  # noqa: E402
from text_overhead import StepTimer  # noqa: E402  (this folder: the seconds of every training step)

from mtl_keras import build_text_model, compile_multitask, load_vader, make_text_dataset, set_global_seed  # noqa: E402
from mtl_keras.distribute import get_strategy, local_cluster, split_cpu  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 1337


def prepare(examples: int, batch_size: int):
    """The texts, tasks and a repeating training dataset of full global batches of `examples` VADER texts."""
    set_global_seed(SEED)
    splits = load_vader(seed=SEED, limit=int(examples / 0.8) + 1)
    train = splits.train
    dataset = make_text_dataset(train.inputs, train.labels, splits.tasks, train.masks, batch_size=batch_size,
                                shuffle=True, seed=SEED)
    dataset = dataset.filter(lambda x, y, w: tf.shape(x)[0] == batch_size).repeat()
    return train.inputs, splits.tasks, dataset


def build(texts, tasks, strategy=None):
    set_global_seed(SEED)
    with get_strategy(strategy).scope():
        model = build_text_model(tasks, texts=texts)
        compile_multitask(model, tasks, optimizer=keras.optimizers.Adam(1e-3))
    return model


def timed_steps(model, dataset, steps: int, loop: str) -> list[float]:
    timer = StepTimer()
    model.fit(dataset.take(steps), epochs=1, verbose=0, callbacks=[timer], loop=loop)
    return timer.seconds


# --- 1. MirroredStrategy over 1 and 2 logical CPU devices, in this process -------------------------------------------
def mirrored_scaling(args) -> list[dict]:
    devices = split_cpu(2)
    texts, tasks, dataset = prepare(args.examples, args.batch_size)
    configurations = {"no strategy": None,
                      "mirrored, 1 logical CPU": tf.distribute.MirroredStrategy(devices[:1]),
                      "mirrored, 2 logical CPUs": tf.distribute.MirroredStrategy(devices[:2])}
    models = {}
    for name, strategy in configurations.items():
        start = time.perf_counter()
        models[name] = build(texts, tasks, strategy)
        timed_steps(models[name], dataset, 3, "keras")  # traces
        _log(f"  {name}: built and traced in {time.perf_counter() - start:.0f} s")
    seconds = {name: [] for name in configurations}
    for round_index in range(args.rounds):
        names = list(configurations) if round_index % 2 == 0 else list(reversed(configurations))
        for name in names:
            seconds[name] += timed_steps(models[name], dataset, args.steps, "keras")
        _log(f"  round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{name} {statistics.median(values) * 1000:.0f} ms" for name, values in seconds.items()))
    return _rows(seconds, args.batch_size, replicas=[1, 1, 2])


# --- 2. the multi-worker path, in separate processes ---------------------------------------------------------------
PATH_CONFIGURATIONS = (("one process, Keras fit", "keras", 1, 1), ("one process, our loop", "custom", 1, 1),
                       ("one worker process, our loop", "multi_worker", 1, 1),
                       ("two worker processes, our loop", "multi_worker", 2, 2))  # name, mode, processes, replicas


def worker(args) -> int:
    """One process of part 2 (`--worker keras|custom|multi_worker`): builds and traces, says `ready`, then times
    `--steps` steps each time the main process says `go` for a round; writes its step times to `--json`."""
    strategy = get_strategy("multi_worker" if args.worker == "multi_worker" else "none")  # first, before TF work
    texts, tasks, dataset = prepare(args.examples, args.batch_size)
    model = build(texts, tasks, strategy)
    loop = "keras" if args.worker == "keras" else "custom"
    timed_steps(model, dataset, 3, loop)  # traces
    sync, tag = Path(args.sync), Path(args.json).stem
    (sync / f"ready-{tag}").touch()
    seconds = []
    for round_index in range(args.rounds):
        _wait_for([sync / f"go-{tag.rsplit('-', 1)[0]}-{round_index}"])
        seconds += timed_steps(model, dataset, args.steps, loop)
        (sync / f"done-{tag}-{round_index}").touch()
    Path(args.json).write_text(json.dumps({"seconds": seconds}))
    return 0


def multi_worker_overhead(args, scratch: Path) -> list[dict]:
    """Every configuration's processes start at once and trace; then, round after round (the order reversed from
    round to round), one configuration at a time times its steps while the others wait, idle: drift in the speed
    of a shared machine hits every configuration alike."""
    common = [sys.executable, __file__, "--examples", str(args.examples), "--batch-size", str(args.batch_size),
              "--steps", str(args.steps), "--rounds", str(args.rounds), "--sync", str(scratch)]
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    processes, tags = [], {}
    for number, (name, mode, count, _) in enumerate(PATH_CONFIGURATIONS):
        configs = local_cluster(count) if mode == "multi_worker" else [None]
        tags[name] = [f"c{number}-{index}" for index in range(count)]
        for tag, config in zip(tags[name], configs, strict=True):
            extra = {"TF_CONFIG": config} if config else {}
            command = [*common, "--worker", mode, "--json", str(scratch / f"{tag}.json")]
            processes.append(subprocess.Popen(command, env={**env, **extra}, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True))
    try:
        start = time.perf_counter()
        _wait_for([scratch / f"ready-{tag}" for group in tags.values() for tag in group], processes)
        _log(f"  {len(processes)} processes started and traced in {time.perf_counter() - start:.0f} s")
        for round_index in range(args.rounds):
            names = list(tags) if round_index % 2 == 0 else list(reversed(tags))
            for name in names:
                (scratch / f"go-{tags[name][0].rsplit('-', 1)[0]}-{round_index}").touch()
                _wait_for([scratch / f"done-{tag}-{round_index}" for tag in tags[name]], processes)
            _log(f"  round {round_index + 1}/{args.rounds} done")
        for process in processes:
            output, _ = process.communicate(timeout=600)
            if process.returncode:
                raise RuntimeError(f"a worker process failed:\n{output[-3000:]}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    seconds = {name: json.loads((scratch / f"{group[0]}.json").read_text())["seconds"]  # the workers step together
               for name, group in tags.items()}
    return _rows(seconds, args.batch_size, replicas=[replicas for *_, replicas in PATH_CONFIGURATIONS])


def _wait_for(paths: list[Path], processes: list | None = None, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        for process in processes or []:
            if process.poll() not in (None, 0):
                raise RuntimeError(f"a worker process failed:\n{process.communicate()[0][-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {[str(p) for p in paths if not p.exists()]}")
        time.sleep(0.05)


def _rows(seconds: dict[str, list[float]], batch_size: int, replicas: list[int]) -> list[dict]:
    rows = []
    for (name, values), count in zip(seconds.items(), replicas, strict=True):
        median = statistics.median(values)
        rows.append({"configuration": name, "replicas": count, "steps": len(values), "median_step_ms": median * 1000,
                     "examples_per_second": batch_size / median})
    for row in rows:
        row["ratio"] = row["examples_per_second"] / rows[0]["examples_per_second"]
    return rows


def _table(title: str, rows: list[dict]) -> str:
    lines = [title, f"{'configuration':<34} {'replicas':>8} {'ms/step':>9} {'examples/s':>11} {'ratio':>6}"]
    lines += [f"{r['configuration']:<34} {r['replicas']:>8} {r['median_step_ms']:>9.1f} "
              f"{r['examples_per_second']:>11.1f} {r['ratio']:>6.3f}" for r in rows]
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=4096, help="training texts")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1024 texts, 6 steps, 1 round")
    parser.add_argument("--worker", choices=["keras", "custom", "multi_worker"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--sync", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.examples, args.steps, args.rounds = 1024, 6, 1
    if args.worker:
        return worker(args)

    import tempfile

    start = time.perf_counter()
    _log("1. MirroredStrategy over logical CPU devices (one process)")
    scaling = mirrored_scaling(args)
    _log("2. The multi-worker path (separate processes)")
    with tempfile.TemporaryDirectory() as scratch:
        overhead = multi_worker_overhead(args, Path(scratch))
    seconds = time.perf_counter() - start
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, Python "
               f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}")
    command = "python benchmarks/distribute_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        f"$ {command.strip()}",
        f"# {machine}; {args.examples} texts, global batch {args.batch_size}, {args.steps} steps x {args.rounds} "
        f"rounds per configuration; median step; {seconds:.0f} s in all",
        "",
        _table("1. MirroredStrategy, one process, Keras fit (ratio: to no strategy)", scaling),
        "",
        _table("2. Multi-worker path (ratio: to one process with Keras fit)", overhead),
        "",
        "The logical CPU devices and the worker processes share the same two cores: these ratios are the cost of",
        "synchronous replicas on one machine (all-reduce, duplicated graph work, contention), not a speed-up.",
    ])
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distribute_scaling.txt").write_text(text + "\n")
    (RESULTS / "distribute_scaling.json").write_text(json.dumps({
        "command": command.strip(), "machine": machine, "examples": args.examples, "batch_size": args.batch_size,
        "steps": args.steps, "rounds": args.rounds, "seconds": seconds,
        "mirrored_scaling": scaling, "multi_worker_overhead": overhead}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
