"""Which gradient methods reach the Pareto front of the two-objective toy problem, and where (CAGrad / Nash-MTL figure).

    python benchmarks/toy_pareto.py [--methods ...] [--steps 100000] [--record-every 100] [--tolerance 0.1]
                                    [--seed 1337] [--check 0] [--json benchmarks/results/toy_pareto.json]
                                    [--plot benchmarks/results/toy_pareto.png]

Problem: `mtl_keras.datasets.toy` (L1 scaled by 0.1, so the two gradients differ tenfold in size), from the five
starts of the papers. Methods: "mean" (the gradient of (L1 + L2) / 2, no gradient method) and every entry of
`GRADIENT_METHODS`, each on the parameters x themselves (space="parameters": there is no representation; the
methods that draw random numbers, PCGrad, GradVac and GradDrop, with `--seed`). Each step takes the two gradients
with one tape and asks the method for the step direction; x moves with Adam along it (lr 1e-3, betas 0.9 / 0.999,
eps 1e-8: torch.optim.Adam as in the papers' code).

Two kinds of method, two loops, both XLA-compiled:
- stateless Gram methods (`coefficients(gram, step) -> alpha`, direction `alpha @ G`): the runs from the five starts
  are one loop, the method vectorized over the starts' Gram matrices;
- methods with state (GradVac's target cosines, MoDo's weights, `update_every` > 1) and vector methods (GradDrop,
  MoCo, DB-MTL, ExcessMTL: `update_and_state(gradients, losses, step)`, with the toy losses at x plus LOSS_OFFSET,
  positive as MoCo and DB-MTL need): each start has its
  own instance of the method, built with `build_for_tasks(2, 2)`, so its own state; the five runs are still one
  loop, whose body calls each instance (`coefficients_and_state` / `update_and_state`) and assigns the new state to
  that instance's variables. `--check N` compares N steps of that loop, from each start, with a plain eager Python
  loop doing the same calls and assignments.

A run reaches the front when its final point lies within `--tolerance` (default 0.1, a hundred Adam steps) of the
Pareto set (the curve x2 = x2*(x1), -7 <= x1 <= 7, from `distance_to_pareto_set`): runs that converge end within
0.02 of it, the stalled one 12 away, so any tolerance from 0.05 to 10 gives the same verdicts. Also reported:
the final losses, Pareto stationarity (the norm of the min-norm convex combination of the two final gradients over
the larger gradient's norm: about 1e-3 even a unit below the front, and small in the upper valleys as well, so it
cannot tell a stall from the front; distance can) and the first recorded step within tolerance, with the point where
the run first met the front: with Adam several methods meet the front and then slide along it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl_keras.datasets.toy import TOY_STARTS, distance_to_pareto_set, toy_losses, toy_pareto_set  # noqa: E402
from mtl_keras.seeds import DEFAULT_SEED  # noqa: E402
from mtl_keras.training.gradients import (  # noqa: E402
    GRADIENT_METHODS,
    GradientMethod,
    VectorGradientMethod,
    get_gradient_method,
)

METHODS = ("mean", *GRADIENT_METHODS)
LEARNING_RATE, BETA_1, BETA_2, EPSILON = 1e-3, 0.9, 0.999, 1e-8
# Added to the losses the vector methods read (MoCo, DB-MTL need them positive; the toy's reach -2.2 and -21, and are
# 0 at the origin). A constant changes no gradient; the methods that only read gradients are unaffected.
LOSS_OFFSET = tf.constant([3.0, 25.0])
NUM_TASKS, NUM_PARAMETERS = 2, 2


def build_method(name: str, seed: int = DEFAULT_SEED) -> GradientMethod | None:
    """None for "mean"; otherwise the method on the parameters, built for the toy's 2 tasks and 2 parameters (a
    method that takes a `seed`, i.e. draws random numbers, with `seed`)."""
    if name == "mean":
        return None
    options = {"seed": seed} if "seed" in inspect.signature(GRADIENT_METHODS[name].__init__).parameters else {}
    method = get_gradient_method(name, space="parameters", **options)
    method.build_for_tasks(NUM_TASKS, NUM_PARAMETERS)
    return method


def needs_own_instances(method: GradientMethod | None) -> bool:
    """Whether each run needs its own instance of the method: it keeps state, or needs the gradient vectors."""
    return isinstance(method, VectorGradientMethod) or bool(method is not None and method.state_variables)


def task_gradients(x: tf.Tensor) -> tf.Tensor:
    """[2, 2]: row t is the gradient of L_t at x; [S, 2, 2] for S points x [S, 2] at once (the points are
    independent, so the gradient of a loss summed over them is each point's own)."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        losses = toy_losses(x)
        first, second = tf.reduce_sum(losses[..., 0]), tf.reduce_sum(losses[..., 1])
    return tf.stack([tape.gradient(first, x), tape.gradient(second, x)], axis=-2)


def combined_gradient(method: GradientMethod | None, x: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """[S, 2]: the step direction at each of the S points x [S, 2], for "mean" or a stateless Gram method; the method
    sees each point's own Gram matrix (vectorized over the points, so that S runs cost about one)."""
    gradients = task_gradients(x)
    if method is None:
        return tf.reduce_mean(gradients, axis=-2)
    grams = tf.matmul(gradients, gradients, transpose_b=True)
    if x.shape[0] == 1:  # one run: the method as it is (vectorizing it only makes the loop slower to compile)
        alphas = method.coefficients(grams[0], step)[tf.newaxis]
    else:
        alphas = tf.vectorized_map(lambda gram: method.coefficients(gram, step), grams, fallback_to_while_loop=False)
    return tf.linalg.matvec(gradients, alphas, transpose_a=True)


def direction_and_state(method: GradientMethod, gradients: tf.Tensor, losses: tf.Tensor, step: tf.Tensor):
    """One run's step direction [2] from its gradients [2, 2] and losses [2], and the method's new state (a list,
    in the order of `method.state_variables`): the API the training step uses."""
    if isinstance(method, VectorGradientMethod):
        direction, _, state = method.update_and_state(gradients, losses, step)
        return direction, state
    alpha, state = method.coefficients_and_state(tf.matmul(gradients, gradients, transpose_b=True), step)
    return tf.linalg.matvec(gradients, alpha, transpose_a=True), state


def stateful_gradients(methods: list[GradientMethod], x: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """[S, 2]: the step direction at each of the S points x [S, 2], run s asking its own instance `methods[s]`, whose
    variables then take the new state (the direction is returned only once they have)."""
    gradients, losses = task_gradients(x), toy_losses(x) + LOSS_OFFSET
    directions, assignments = [], []
    for index, method in enumerate(methods):
        direction, state = direction_and_state(method, gradients[index], losses[index], step)
        directions.append(direction)
        assignments += [variable.assign(value) for variable, value in zip(method.state_variables, state, strict=True)]
    with tf.control_dependencies(assignments):
        return tf.identity(tf.stack(directions))


def fresh_copy(method: GradientMethod) -> GradientMethod:
    """A new instance with `method`'s settings and its own, initial state (built for the toy's tasks)."""
    copy = type(method).from_config(method.get_config())
    copy.build_for_tasks(NUM_TASKS, NUM_PARAMETERS)
    return copy


def make_descent(method: GradientMethod | str | None, steps: int, record_every: int, jit_compile: bool = True):
    """A compiled `starts [S, 2] -> trajectories [steps // record_every + 1, S, 2]` (the starts, then x every
    `record_every` Adam steps), or `start [2] -> trajectory [steps // record_every + 1, 2]`: S independent runs in
    one loop. `method`: from `build_method` (None: "mean"), or a name (built with the default seed). A stateless Gram
    method is vectorized over the runs (about the cost of one); for a method with state or a vector method, each
    call gives each run a fresh copy of it (`fresh_copy`; `method`'s own state is not touched), so that the runs
    share no state and a second call starts afresh. Adam is written out because the whole run is one XLA loop."""
    if steps % record_every:
        raise ValueError(f"steps ({steps}) must be a multiple of record_every ({record_every}).")
    if isinstance(method, str):
        method = build_method(method)
    if not needs_own_instances(method):
        return _descent(lambda x, step: combined_gradient(method, x, step), steps, record_every, jit_compile)

    def run(starts):
        starts = np.asarray(starts, np.float32)
        copies = [fresh_copy(method) for _ in range(starts.reshape(-1, 2).shape[0])]
        return _descent(lambda x, step: stateful_gradients(copies, x, step), steps, record_every,
                        jit_compile)(starts)

    return run


def _descent(gradient_at, steps: int, record_every: int, jit_compile: bool):
    """The Adam loop of `make_descent` for `gradient_at(x [S, 2], step int64) -> directions [S, 2]`."""

    def adam_step(step, x, first_moment, second_moment):
        gradient = gradient_at(x, tf.cast(step, tf.int64))
        first_moment = BETA_1 * first_moment + (1.0 - BETA_1) * gradient
        second_moment = BETA_2 * second_moment + (1.0 - BETA_2) * gradient * gradient
        count = tf.cast(step + 1, tf.float32)
        unbiased_first, unbiased_second = first_moment / (1.0 - BETA_1**count), second_moment / (1.0 - BETA_2**count)
        x = x - LEARNING_RATE * unbiased_first / (tf.sqrt(unbiased_second) + EPSILON)
        return step + 1, x, first_moment, second_moment

    def record(index, state, trajectory):
        end = (index + 1) * record_every
        state = tf.while_loop(lambda step, *_: step < end, adam_step, state)
        return index + 1, state, trajectory.write(index + 1, state[1])

    @tf.function(jit_compile=jit_compile)
    def descend(starts):
        zeros = tf.zeros_like(starts)
        trajectory = tf.TensorArray(tf.float32, size=steps // record_every + 1).write(0, starts)
        state = (tf.constant(0), starts, zeros, zeros)
        _, _, trajectory = tf.while_loop(lambda index, *_: index < steps // record_every, record,
                                         (tf.constant(0), state, trajectory))
        return trajectory.stack()

    def run(starts):
        starts = np.asarray(starts, np.float32)
        trajectories = descend(tf.constant(starts.reshape(-1, 2))).numpy()
        return trajectories[:, 0] if starts.ndim == 1 else trajectories

    return run


def python_loop(name: str, start, steps: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """[steps + 1, 2]: one run from `start`, eager, step by step: a fresh instance, `coefficients_and_state` or
    `update_and_state` on the gradients and losses at x, the new state assigned to its variables, then Adam (the
    reference `--check` compares the compiled loop with)."""
    method = build_method(name, seed)
    x = tf.constant([np.asarray(start, np.float32)])
    first_moment = second_moment = tf.zeros_like(x)
    points = [x[0].numpy()]
    for step in range(steps):
        if method is None or not needs_own_instances(method):
            gradient = combined_gradient(method, x, tf.constant(step, tf.int64))[0]
        else:
            gradient, state = direction_and_state(method, task_gradients(x)[0], toy_losses(x)[0] + LOSS_OFFSET,
                                                  tf.constant(step, tf.int64))
            for variable, value in zip(method.state_variables, state, strict=True):
                variable.assign(value)
        first_moment = BETA_1 * first_moment + (1.0 - BETA_1) * gradient
        second_moment = BETA_2 * second_moment + (1.0 - BETA_2) * gradient * gradient
        unbiased_first = first_moment / (1.0 - BETA_1 ** (step + 1))
        unbiased_second = second_moment / (1.0 - BETA_2 ** (step + 1))
        x = x - LEARNING_RATE * unbiased_first / (tf.sqrt(unbiased_second) + EPSILON)
        points.append(x[0].numpy())
    return np.array(points)


def check(names, steps: int, seed: int) -> float:
    """Per method (printed): the largest |compiled - eager| over `steps` steps from every start, for the XLA loop
    and for the same loop compiled without XLA; returns the largest over the methods of the loop without XLA. XLA
    draws other stateless random numbers than the TensorFlow kernels do from the same (seed, step), so a method that
    draws (GradDrop; PCGrad's and GradVac's orders do not matter for two tasks) follows another, equally seeded path
    under XLA: its state handling is what the loop without XLA checks."""
    worst = 0.0
    for name in names:
        references = [python_loop(name, start, steps, seed) for start in TOY_STARTS]
        gaps = {}
        for jit_compile in (True, False):
            compiled = make_descent(build_method(name, seed), steps, 1, jit_compile)(TOY_STARTS)
            gaps[jit_compile] = max(float(np.max(np.abs(compiled[:, index] - reference)))
                                    for index, reference in enumerate(references))
        moved = max(float(np.max(np.abs(reference[-1] - reference[0]))) for reference in references)
        kind = "own instances" if needs_own_instances(build_method(name, seed)) else "vectorized"
        print(f"check {name:<12} ({kind}): {steps} steps from each start, max |compiled - eager| "
              f"{gaps[True]:.2e} with XLA, {gaps[False]:.2e} without (moved up to {moved:.3f})", flush=True)
        worst = max(worst, gaps[False])
    return worst


def pareto_stationarity(x) -> float:
    """|min-norm convex combination of the two gradients| / max_t |g_t| at x: 0 at Pareto-stationary points.

    The two-vector min-norm point in closed form, in float64 (independent of the methods under test)."""
    first, second = task_gradients(tf.constant(x, tf.float32)).numpy().astype(np.float64)
    difference = first - second
    weight = np.clip(-(difference @ second) / max(difference @ difference, 1e-300), 0.0, 1.0)
    smallest = np.linalg.norm(weight * first + (1.0 - weight) * second)
    return float(smallest / max(np.linalg.norm(first), np.linalg.norm(second), 1e-300))


def summarize(trajectory: np.ndarray, record_every: int, tolerance: float) -> dict:
    distances = distance_to_pareto_set(trajectory)
    within = np.flatnonzero(distances < tolerance)
    final = trajectory[-1]
    losses = toy_losses(tf.constant(final, tf.float32)).numpy()
    return {
        "final": [round(float(v), 4) for v in final],
        "final_losses": [round(float(v), 4) for v in losses],
        "distance": round(float(distances[-1]), 4),
        "stationarity": float(f"{pareto_stationarity(final):.3g}"),
        "reached": bool(distances[-1] < tolerance),
        "first_within_step": int(within[0] * record_every) if len(within) else None,
        "first_within_point": [round(float(v), 3) for v in trajectory[within[0]]] if len(within) else None,
    }


def plot(results: dict, trajectories: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-11.0, 11.0, 331)
    mesh = np.stack(np.meshgrid(grid, grid), axis=-1)
    total = toy_losses(tf.constant(mesh, tf.float32)).numpy().sum(axis=-1)
    front = toy_pareto_set()
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(TOY_STARTS)))
    columns = 4
    rows = -(-(len(results) + 1) // columns)  # a panel per method and one for the losses
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 5 * rows), squeeze=False)
    for axis, name in zip(axes.flat, results, strict=False):
        axis.contourf(grid, grid, total, levels=30, cmap="Greys", alpha=0.6)
        axis.plot(front[:, 0], front[:, 1], color="crimson", linewidth=4, label="Pareto set")
        for color, start in zip(colors, TOY_STARTS, strict=True):
            path_points, run = trajectories[name][str(start)], results[name][str(start)]
            axis.plot(path_points[:, 0], path_points[:, 1], color=color, linewidth=1.5, label=f"from {start}")
            axis.scatter(*start, color="black", s=30, zorder=5)
            if run["first_within_point"] is not None:  # where the run met the front, before any slide along it
                axis.scatter(*run["first_within_point"], color=color, marker="o", s=60, facecolor="none", zorder=6)
            axis.scatter(*path_points[-1], color=color, marker="*", s=160, edgecolor="black", zorder=7)
        reached = sum(run["reached"] for run in results[name].values())
        axis.set_title(f"{name}: {reached}/{len(TOY_STARTS)} reach the front")
        axis.set_xlim(-11, 11)
        axis.set_ylim(-11, 11)
        axis.set_xlabel("x1")
        axis.set_ylabel("x2")
    axes.flat[0].legend(fontsize=8, loc="lower right")
    for axis in axes.flat[len(results) + 1:]:
        axis.set_visible(False)
    losses_axis = axes.flat[len(results)]
    front_losses = toy_losses(tf.constant(front, tf.float32)).numpy()
    losses_axis.plot(front_losses[:, 0], front_losses[:, 1], color="crimson", linewidth=4, label="Pareto front")
    for index, name in enumerate(results):
        finals = np.array([run["final_losses"] for run in results[name].values()])
        losses_axis.scatter(finals[:, 0], finals[:, 1], marker="os^vDPX"[index % 7], s=60, label=name, alpha=0.8)
    losses_axis.set_xlabel("L1 (scaled by 0.1)")
    losses_axis.set_ylabel("L2")
    losses_axis.set_xlim(-2.2, 0.5)
    losses_axis.set_ylim(-21, 2)
    losses_axis.set_title("final losses")
    losses_axis.legend(fontsize=8)
    figure.suptitle("Toy problem (L1 scaled by 0.1), Adam 1e-3: black dots = starts, circles = where a run first came "
                    "within tolerance of the Pareto set (red), stars = final points")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_table(results: dict, tolerance: float) -> None:
    starts = [str(start) for start in TOY_STARTS]
    print(f"\nreached (distance to the Pareto set < {tolerance}) and final point (x1, x2), per start:")
    print(f"{'method':<12}" + "".join(f"{start:>22}" for start in starts))
    for name, runs in results.items():
        cells = []
        for start in starts:
            run = runs[start]
            cells.append(f"{'yes' if run['reached'] else 'NO '} ({run['final'][0]:6.2f},{run['final'][1]:6.2f})")
        print(f"{name:<12}" + "".join(f"{cell:>22}" for cell in cells))
    print("\nper run: final losses, distance, stationarity, first step within tolerance (and where)")
    for name, runs in results.items():
        for start, run in runs.items():
            first = (f"step {run['first_within_step']} at {tuple(run['first_within_point'])}"
                     if run["first_within_step"] is not None else "never")
            print(f"  {name:<12} {start:>12}  L=({run['final_losses'][0]:7.3f},{run['final_losses'][1]:8.3f})  "
                  f"dist {run['distance']:7.4f}  stat {run['stationarity']:9.3g}  first within: {first}")
    print("\nsummary:")
    for name, runs in results.items():
        reached = [start for start, run in runs.items() if run["reached"]]
        missed = [start for start in starts if start not in reached]
        print(f"  {name:<12} {len(reached)}/{len(starts)} reach the front"
              + (f"; not from {', '.join(missed)}" if missed else ""))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--record-every", type=int, default=100)
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="first compare N steps of the compiled loop with an eager Python loop (0: no check)")
    parser.add_argument("--json", default="benchmarks/results/toy_pareto.json")
    parser.add_argument("--plot", default="benchmarks/results/toy_pareto.png")
    args = parser.parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # one compiled loop per method: TensorFlow would warn, harmlessly, of retracing
    print("python benchmarks/toy_pareto.py " + " ".join(
        f"--{key.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        for key, value in vars(args).items()), flush=True)

    if args.check:
        worst = check(args.methods, args.check, args.seed)
        print(f"check: largest |compiled - eager| without XLA {worst:.2e}", flush=True)
    results, trajectories, seconds = {}, {}, {}
    for name in args.methods:
        began = time.perf_counter()
        descend = make_descent(build_method(name, args.seed), args.steps, args.record_every)
        together = descend(TOY_STARTS)  # every start in one loop
        trajectories[name] = {str(start): together[:, index] for index, start in enumerate(TOY_STARTS)}
        results[name] = {start: summarize(trajectory, args.record_every, args.tolerance)
                         for start, trajectory in trajectories[name].items()}
        seconds[name] = round(time.perf_counter() - began, 1)
        reached = sum(run["reached"] for run in results[name].values())
        print(f"{name:<12} {reached}/{len(TOY_STARTS)} reached  ({seconds[name]} s, compile included)", flush=True)

    print_table(results, args.tolerance)
    print(f"\ntotal {sum(seconds.values()):.0f} s")
    report = {"settings": {**vars(args), "optimizer": "Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8",
                           "first_loss_scale": 0.1},
              "seconds": seconds, "results": results,
              "trajectories_every_1000_steps": {
                  name: {start: np.round(path[:: max(1, 1000 // args.record_every)], 3).tolist()
                         for start, path in paths.items()} for name, paths in trajectories.items()}}
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as file:
            json.dump(report, file, indent=1)
    if args.plot:
        plot(results, trajectories, args.plot)
    return report


if __name__ == "__main__":
    main()
