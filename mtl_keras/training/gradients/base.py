"""The base of every gradient method: per-task gradients in, one update direction out.

Each method here (PCGrad, CAGrad, MGDA-UB, IMTL-G, Nash-MTL, Aligned-MTL, UPGrad, DualProj) returns the update as
a combination `sum_t alpha_t g_t` of the task gradients `g_t`, and `alpha` depends on the gradients only through
their inner products (the T x T Gram matrix). So a method is a function `gram -> alpha`: the training step takes the T
backward passes, all-reduces the gradients across replicas once, forms the Gram matrix (T x T, cheap), and combines.
Working in Gram space also makes each rule small enough to test against a hand computation.

`space` says which gradients: `"parameters"`, the gradients on the shared parameters (as each paper states), or
`"representation"`, the gradients on the shared representation (the tensors the task heads read), as MGDA-UB
proposes: T cheap backward passes through the heads only, then one ordinary backward pass of the combined loss.
"""

from __future__ import annotations

from typing import ClassVar

import keras
import tensorflow as tf

SPACES = ("parameters", "representation")


class GradientMethod:
    """Maps the tasks' gradient Gram matrix to the coefficients of the combined update.

    Subclasses set `name`, optionally `default_space`, and implement `coefficients(gram, step)`.
    """

    name: ClassVar[str]
    default_space: ClassVar[str] = "parameters"

    def __init__(self, space: str | None = None):
        space = space or self.default_space
        if space not in SPACES:
            raise ValueError(f"{type(self).__name__}: space must be one of {SPACES}, got {space!r}.")
        self.space = space

    def coefficients(self, gram: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        """`alpha` (shape [T]) such that the update is `sum_t alpha_t g_t`.

        Args:
            gram: [T, T] float32, `gram[i, j] = g_i . g_j`, the same on every replica.
            step: the optimizer's iteration count (int64), for methods that draw random numbers: the draw is
                stateless, so every replica draws the same.
        """
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"space": self.space}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({settings})"


def gradient_cosines(gram: tf.Tensor) -> tf.Tensor:
    """Cosine similarity of every pair of task gradients, from their Gram matrix (0 where a gradient is 0)."""
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
    outer = norms[:, None] * norms[None, :]
    return tf.math.divide_no_nan(gram, outer)


def iterate(update, initial: tf.Tensor, iterations: int) -> tf.Tensor:
    """`initial` after `iterations` applications of `update`, as one graph loop (no AutoGraph needed)."""
    _, result = tf.while_loop(lambda i, _: i < iterations, lambda i, value: (i + 1, update(value)),
                              (tf.constant(0), initial))
    return result


def register(cls):
    """Registers a gradient method for `.keras` round trips of a compiled model."""
    return keras.saving.register_keras_serializable(package="mtl_keras")(cls)
