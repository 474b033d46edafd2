"""What does keeping the embedding's gradient sparse save the gradient methods? Text model step time, side by side.

    python benchmarks/sparse_task_gradients.py [--tasks 3] [--methods pcgrad,cagrad,...] [--rounds 5] [--pairs 5]

On the text model of `balancing_step_time.py` (CNN encoder, a 20,000-token vocabulary, 64 tokens, batch 64, Zipf
token ids: about 650 of the embedding's rows touched per batch), each gradient method in parameter space is compiled
twice: as the step runs it (`TaskMatrix.compact`: the embedding's per-task gradients kept to the touched rows) and
with the embedding made dense (`TaskMatrix.dense` swapped in while that model's step is traced: the whole table in
every task's row, as before). The two steps alternate in pairs (`balancing_step_time.time_group`), and the table
gives the median ratio compact / dense of each pair's wall time (below 1: the sparse path is faster) and of CPU time.
Writes benchmarks/results/sparse_task_gradients.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import balancing_step_time as bench

from mtl_keras.training import step as step_module
from mtl_keras.training.task_matrix import TaskMatrix

# Methods in parameter space by default (MGDA and GradDrop default to the representation, which has no embedding
# gradient; the vector methods keep state per coordinate and stay dense).
DEFAULT_METHODS = ("pcgrad", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl", "upgrad", "gradvac", "fairgrad")


@contextlib.contextmanager
def dense_task_matrix():
    """Traces a step with the embedding's gradient made dense in the task matrix (the path before sparse rows)."""
    compact = step_module.TaskMatrix.compact
    step_module.TaskMatrix.compact = TaskMatrix.dense
    try:
        yield
    finally:
        step_module.TaskMatrix.compact = compact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--output", default=str(bench.RESULTS / "sparse_task_gradients.txt"))
    args = parser.parse_args()
    args.vision_backbone, args.vision_filters, args.verbose = "unet", bench.VISION_FILTERS, True
    bench.set_global_seed(0)
    tasks = bench.TASKS["text"][:args.tasks]
    dataset = bench.random_dataset("text", tasks)
    iterator = iter(dataset)
    lines = bench.machine_lines(args)[:3] + [
        f"settings: text model, T={args.tasks}, {args.rounds} rounds of {args.pairs} pairs (compact, dense)", "",
        f"{'method':<12} {'compact ms':>10} {'dense ms':>9} {'ratio':>6} {'quartiles':>10} {'cpu ratio':>9}"]
    print("\n".join(lines), flush=True)
    for method in args.methods.split(","):
        compact = bench.prepare("text", tasks, method, dataset, iterator, args)
        with dense_task_matrix():
            dense = bench.prepare("text", tasks, method, dataset, iterator, args)
        if compact.error or dense.error:
            lines.append(f"{method:<12} failed: {compact.error or dense.error}")
            print(lines[-1], flush=True)
            continue
        bench.time_group({bench.BASELINE: dense, method: compact}, args.rounds, args.pairs)
        first, median, third = bench.quartiles(compact.wall_ratios)
        lines.append(f"{method:<12} {1000 * statistics.median(compact.wall):10.1f} "
                     f"{1000 * statistics.median(dense.wall):9.1f} {median:6.3f} {first:.2f}-{third:.2f} "
                     f"{statistics.median(compact.cpu_ratios):9.3f}")
        print(lines[-1], flush=True)
        compact.model = dense.model = None
    with open(args.output, "w") as file:
        file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
