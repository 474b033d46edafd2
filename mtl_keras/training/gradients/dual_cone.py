"""Projection onto the dual cone of the task gradients, in Gram space: what UPGrad and DualProj share.

The dual cone of gradients g_1..g_T is C = {x : g_t . x >= 0 for every t}: the directions that lower no task's loss
less than not moving (to first order). The projection of a combination J^T u (J: the gradients as rows) onto C is
J^T w with w = argmin_{w >= u} w^T G w (G = J J^T, the Gram matrix): the dual of the projection problem (Quinton &
Rey 2024, torchjd). So the projection needs only G, like every method here.

The problem is a small quadratic programme with a box constraint. It is solved exactly by its KKT conditions: for each
set S of tasks where w exceeds u, w_S solves G_SS (w - u)_S = -(G u)_S; the solution is the set whose w is feasible
and whose multipliers (G w outside S) are >= 0. Every set of up to `MAX_TASKS` tasks is tried at once, as one
batched solve (2^T systems of size T); no iterative solver, so nothing to converge, and no silent fallback: a step
where no set satisfies the conditions (which exact arithmetic rules out) fails with a message, and non-finite
gradients give a non-finite update (which loss scaling skips).
"""

from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

MAX_TASKS = 12  # 4,096 systems of 12 x 12 per projection: still cheap next to one backward pass
# Feasibility tolerance and ridge, relative to the Gram matrix's scale (its largest diagonal entry).
TOLERANCE = 1e-5
RIDGE = 1e-7


def check_task_count(method: str, num_tasks: int) -> None:
    if num_tasks > MAX_TASKS:
        raise ValueError(f"{method} solves its projections exactly for up to {MAX_TASKS} tasks; got {num_tasks}.")


def project_weights(gram: tf.Tensor, lower: tf.Tensor) -> tf.Tensor:
    """For each row u of `lower` ([K, T]), argmin_{w >= u} w^T G w ([K, T]): the weights of J^T u's projection
    onto the dual cone of the gradients."""
    num_tasks = gram.shape[0]
    subsets = tf.constant(list(itertools.product([0.0, 1.0], repeat=num_tasks)), tf.float32)  # [S, T], 1 = free
    # A non-finite gradient (an overflow under loss scaling) must give a non-finite update, which the optimizer's
    # loss scaling skips: the solve runs on a harmless matrix and the result is NaN.
    finite = tf.reduce_all(tf.math.is_finite(gram))
    gram = tf.where(finite, gram, tf.eye(num_tasks))
    scale = tf.maximum(tf.reduce_max(tf.linalg.diag_part(gram)), 1e-30)
    gram = gram / scale  # a scale-free problem: the same solution, a meaningful tolerance
    free = subsets[:, :, None] * subsets[:, None, :]  # [S, T, T]
    # On the free set: G_SS v_S = -(G u)_S; elsewhere v = 0 (the identity rows).
    # A tiny ridge on the free block keeps a singular G_SS (parallel gradients) solvable; a set whose system has no
    # exact solution then gets a large one, which fails the stationarity check below. `solve`, not `pinv`: it also
    # runs vectorized over many problems (`tf.vectorized_map`) and under XLA.
    systems = free * (gram[None] + RIDGE * tf.eye(num_tasks)) + tf.linalg.diag(1.0 - subsets)
    rhs = -subsets[None, :, :] * tf.matmul(lower, gram)[:, None, :]  # [K, S, T]
    # v = w - u, [K, S, T]: one solve per set, the K right-hand sides as its columns
    excess = tf.transpose(tf.linalg.solve(systems, tf.transpose(rhs, [1, 2, 0])), [2, 0, 1])
    weights = lower[:, None, :] + excess
    multipliers = tf.einsum("ij,ksj->ksi", gram, weights)  # G w: >= 0 where a weight sits on its bound
    on_bound = subsets[None] == 0.0
    # KKT: w >= u; the multipliers G w are >= 0 where w sits on its bound and 0 where it is free (stationarity,
    # which a set whose singular system has no exact solution fails: the ridge then gives it a large answer).
    feasible = tf.reduce_all((excess >= -TOLERANCE)
                             & tf.where(on_bound, multipliers >= -TOLERANCE, tf.abs(multipliers) <= TOLERANCE), -1)
    objective = tf.einsum("ksi,ij,ksj->ks", weights, gram, weights)
    objective = tf.where(feasible, objective, np.inf)
    tf.debugging.assert_equal(tf.reduce_all(tf.reduce_any(feasible, axis=1)), True, message=(
        "dual-cone projection: no set of tasks satisfies the optimality conditions (numerically: a Gram matrix "
        "too ill-conditioned for float32)"))
    best = tf.argmin(objective, axis=1)
    projected = tf.gather(weights, best, axis=1, batch_dims=1)
    return tf.where(finite, projected, tf.fill(tf.shape(projected), np.nan))
