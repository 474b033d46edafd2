"""Synthetic multi-task regression with a controlled task correlation (Ma et al., KDD 2018, section 3.2).

Two unit vectors u1, u2 orthogonal in R^d; task weights w1 = c * u1 and w2 = c * (p * u1 + sqrt(1 - p^2) * u2), so
that cos(w1, w2) = p. For x ~ N(0, I_d), each task's target is

    y_i = w_i . x + sum_{k=1..m} sin(alpha_k * w_i . x + beta_k) + noise,

the sines (alpha_k, beta_k ~ N(0, 1), the same for both tasks) making the tasks non-linear. p is the knob: at p = 1
the tasks are the same function, at p = 0.5 they share half their direction. The Pearson correlation of the two
labels grows with p but is not p, because of the sines.

Example:

>>> splits = synthetic_relatedness(p=0.9, num_train=100, num_validation=10, num_test=10, seed=0)
>>> splits.train.inputs.shape, sorted(splits.train.labels)
((100, 100), ['task1', 'task2'])
>>> w1, w2 = relatedness_weights(p=0.9, seed=0)
>>> round(float(w1 @ w2 / (np.linalg.norm(w1) * np.linalg.norm(w2))), 6)
0.9
"""

from __future__ import annotations

import numpy as np

from mtl_keras.datasets.splits import Split, Splits
from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.tasks import Task


def relatedness_weights(p: float, dim: int = 100, scale: float = 1.0, seed: int = DEFAULT_SEED):
    """w1, w2 of cosine similarity p and norm `scale` (the paper's c)."""
    if not -1.0 <= p <= 1.0:
        raise ValueError(f"p is a cosine similarity, in [-1, 1]; got {p}.")
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (two orthogonal directions), got {dim}.")
    rng = np.random.default_rng(seed)
    u1, u2 = np.linalg.qr(rng.normal(size=(dim, 2)))[0].T  # orthonormal columns
    return scale * u1, scale * (p * u1 + np.sqrt(1.0 - p * p) * u2)


def synthetic_relatedness(
    p: float,
    num_train: int = 10000,
    num_validation: int = 1000,
    num_test: int = 1000,
    dim: int = 100,
    scale: float = 1.0,
    num_sines: int = 10,
    noise: float = 0.01,
    seed: int = DEFAULT_SEED,
) -> Splits:
    """Train, validation and test splits of two regression tasks `task1`, `task2` with task correlation p.

    The task weights and the sines depend on `seed` only (not on the sizes); each split's inputs and noise are
    drawn from their own stream of the same seed, so growing one split leaves the others unchanged.
    """
    w1, w2 = relatedness_weights(p, dim, scale, seed)
    rng = np.random.default_rng([seed, 1])
    alphas, betas = rng.normal(size=num_sines), rng.normal(size=num_sines)

    def target(x, w, noise_rng):
        projection = x @ w
        waves = np.sin(np.outer(projection, alphas) + betas).sum(axis=1)
        return (projection + waves + noise * noise_rng.normal(size=len(x))).astype("float32")

    parts = []
    for index, size in enumerate((num_train, num_validation, num_test)):
        part_rng = np.random.default_rng([seed, 2, index])
        x = part_rng.normal(size=(size, dim))
        parts.append(Split(x.astype("float32"), {"task1": target(x, w1, part_rng), "task2": target(x, w2, part_rng)}))
    tasks = [Task("task1", "regression", metrics=["rmse", "mae"]), Task("task2", "regression", metrics=["rmse", "mae"])]
    return Splits(*parts, tasks=tasks)
