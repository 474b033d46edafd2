"""The base of every gradient method: per-task gradients in, one update direction out.

Most methods here (PCGrad, CAGrad, MGDA-UB, IMTL-G, Nash-MTL, Aligned-MTL, UPGrad, DualProj, GradVac, FairGrad,
ConFIG, SDMGrad, MoDo) return the update as
a combination `sum_t alpha_t g_t` of the task gradients `g_t`, and `alpha` depends on the gradients only through
their inner products (the T x T Gram matrix). So a method is a function `gram -> alpha`: the training step takes the T
backward passes, all-reduces the gradients across replicas once, forms the Gram matrix (T x T, cheap), and combines.
Working in Gram space also makes each rule small enough to test against a hand computation.

`space` says which gradients: `"parameters"`, the gradients on the shared parameters (as each paper states), or
`"representation"`, the gradients on the shared representation (the tensors the task heads read), as MGDA-UB
proposes: T cheap backward passes through the heads only, then one ordinary backward pass of the combined loss.

`update_every=k` (every method) recomputes the combination only every k-th step and reuses its coefficients in
between (as Nash-MTL's code does, and PSMGD): those steps cost one backward pass, like static weights.

A method with state (GradVac's target cosines, MoDo's weights, the coefficients `update_every` reuses) keeps it in
variables of a small Keras layer, `state`, which the model tracks: saved in `.keras` files, backups and SavedModels,
mirrored under tf.distribute. The step may compute the coefficients inside a conditional, where a mirrored variable
cannot be assigned, so `coefficients` never assigns: it *stages* new values (`stage`), and the step assigns them.

Some methods need more than the Gram matrix: the gradient vectors themselves (GradDrop's signs, MoCo's and DB-MTL's
tracked gradients, ExcessMTL's accumulated squares) or the task losses (MoCo, DB-MTL). They subclass
`VectorGradientMethod` and implement `update(gradients, losses, step)`; the step hands them the same all-reduced
[T, P] gradients it forms the Gram matrix from, so they too are exact under tf.distribute. A method that rewrites the
gradients *on the representation* (GradDrop) also implements `representation_gradients`.
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

    def __init__(self, space: str | None = None, update_every: int = 1):
        space = space or self.default_space
        if space not in SPACES:
            raise ValueError(f"{type(self).__name__}: space must be one of {SPACES}, got {space!r}.")
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"{type(self).__name__}: update_every must be a whole number >= 1, got "
                             f"{update_every!r}.")
        self.space, self.update_every = space, update_every
        self.state: GradientState | None = None
        self._staged: dict | None = None

    # --- state ----------------------------------------------------------------------------------------------------
    def build_for_tasks(self, num_tasks: int, num_parameters: int | None = None) -> GradientState | None:
        """Creates the method's state for `num_tasks` tasks (called by `compile`, which also passes the model's
        trainable parameter count, an upper bound on the shared parameters' for methods that track vectors);
        returns the layer holding it, or None for a method without state."""
        self.num_parameters = num_parameters
        self.state = GradientState(name=f"{self.name}_state")
        self.create_state(num_tasks)
        if self.update_every > 1:
            self.last_coefficients = self.state_variable("last_coefficients", (num_tasks,), "ones")
        self.state.built = True
        if not self.state.weights:
            self.state = None
        return self.state

    def create_state(self, num_tasks: int) -> None:
        """Adds the method's variables through `state_variable` (none by default)."""

    def state_variable(self, name: str, shape, initializer="zeros") -> keras.Variable:
        """A non-trainable variable that every replica updates with the same value."""
        return self.state.add_weight(name=name, shape=shape, initializer=initializer, trainable=False,
                                     aggregation="only_first_replica")

    @property
    def state_variables(self) -> list:
        return [] if self.state is None else list(self.state.weights)

    def stage(self, variable, value) -> None:
        """Sets `variable` to `value` once the step's coefficients are final (at once outside a training step)."""
        if self._staged is None:
            variable.assign(value)
        else:
            self._staged[id(variable)] = value

    def coefficients_and_state(self, gram: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """`coefficients(gram, step)` and the new value of every state variable (staged, or as it was).

        A non-finite Gram matrix (a gradient that overflowed under loss scaling) gives NaN coefficients, so that the
        optimizer's loss scaling skips the step, and leaves the state as it was; the solver never sees it (a linear
        solve would raise on it)."""
        finite = tf.reduce_all(tf.math.is_finite(gram))
        self._staged = {}
        try:
            alpha = tf.cast(self.coefficients(tf.where(finite, gram, tf.eye(gram.shape[0], dtype=gram.dtype)), step),
                            tf.float32)
            staged = self._staged
        finally:
            self._staged = None
        alpha = tf.where(finite, alpha, float("nan"))
        if self.update_every > 1:
            staged[id(self.last_coefficients)] = alpha
        current = [tf.convert_to_tensor(v) for v in self.state_variables]
        return alpha, [tf.where(finite, staged.get(id(v), value), value)
                       for v, value in zip(self.state_variables, current, strict=True)]

    def coefficients(self, gram: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        """`alpha` (shape [T]) such that the update is `sum_t alpha_t g_t`.

        Args:
            gram: [T, T] float32, `gram[i, j] = g_i . g_j`, the same on every replica.
            step: the optimizer's iteration count (int64), for methods that draw random numbers: the draw is
                stateless, so every replica draws the same.
        """
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"space": self.space, "update_every": self.update_every}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({settings})"


class VectorGradientMethod(GradientMethod):
    """A method whose update needs the task gradients themselves, or the task losses, not only their Gram matrix.

    Subclasses implement `update(gradients, losses, step) -> (update, alpha)`. State of a vector's size
    (`vector_state_variable`) is sized at compile time by the model's trainable parameter count, an upper bound on
    the shared parameters' (known only in the step); the step pads the gradients with zeros to that length, which
    no method here is changed by (a zero coordinate stays zero in every tracked vector and adds nothing to a norm),
    and keeps the first P coordinates of the update.

    `reusable`: whether `update_every > 1` is meaningful, i.e. whether the update is `sum_t alpha_t g_t` of the
    step's own gradients, so that later steps can apply the same `alpha` to theirs.
    """

    reusable: ClassVar[bool] = False
    reuse_note: ClassVar[str] = ""  # why not, where not reusable

    def __init__(self, space: str | None = None, update_every: int = 1):
        super().__init__(space, update_every)
        if update_every > 1 and not self.reusable:
            raise ValueError(f"{type(self).__name__}: update_every must be 1: its update is not a fixed combination "
                             f"of the step's gradients that later steps could reuse ({self.reuse_note}).")
        self._vector_states: list = []

    def build_for_tasks(self, num_tasks: int, num_parameters: int | None = None) -> GradientState | None:
        self._vector_states = []
        return super().build_for_tasks(num_tasks, num_parameters)

    def vector_state_variable(self, name: str, num_tasks: int, initializer="zeros") -> keras.Variable:
        """A [T, num_parameters] state variable (one tracked vector per task)."""
        if self.num_parameters is None:
            raise ValueError(f"{type(self).__name__} tracks gradient vectors and needs the parameter count: build it "
                             f"with build_for_tasks(num_tasks, num_parameters) (compile does).")
        variable = self.state_variable(name, (num_tasks, self.num_parameters), initializer)
        self._vector_states.append(variable)
        return variable

    def update(self, gradients: tf.Tensor, losses: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The update vector [P] and the task coefficients [T] (logged; reused by `update_every` where `reusable`).

        Args:
            gradients: [T, P] float32, each task's gradient on the shared parameters, all-reduced (the same on
                every replica), zero-padded to the state's length.
            losses: [T] float32, the tasks' weighted global losses (the losses `gradients` are gradients of).
            step: the optimizer's iteration count (int64).
        """
        raise NotImplementedError

    def coefficients(self, gram, step):
        raise TypeError(f"{type(self).__name__} needs the gradient vectors, not only their Gram matrix: call "
                        f"update(gradients, losses, step).")

    def update_and_state(self, gradients: tf.Tensor, losses: tf.Tensor, step: tf.Tensor):
        """`update(...)` with the gradients padded to the state's length, and the new state (as
        `coefficients_and_state`: non-finite gradients or losses give a NaN update and leave the state as it
        was)."""
        size = gradients.shape[1]
        padded = gradients
        if self._vector_states:
            if size > self.num_parameters:
                raise ValueError(f"{type(self).__name__}: the shared parameters ({size}) outnumber the parameters "
                                 f"it was built for ({self.num_parameters}); compile the model again after "
                                 f"changing its weights.")
            padded = tf.pad(gradients, [[0, 0], [0, self.num_parameters - size]])
        finite = tf.logical_and(tf.reduce_all(tf.math.is_finite(gradients)), tf.reduce_all(tf.math.is_finite(losses)))
        self._staged = {}
        try:
            # Selected by a conditional, not elementwise: the state and the gradients are T x P, and an elementwise
            # select would be one more pass over them on every step.
            update, alpha = self.update(_either(finite, padded, tf.zeros_like), _either(finite, losses, tf.ones_like),
                                        step)
            staged = self._staged
        finally:
            self._staged = None
        update = tf.where(finite, update[:size], float("nan"))
        alpha = tf.where(finite, tf.cast(alpha, tf.float32), float("nan"))
        if self.update_every > 1:
            staged[id(self.last_coefficients)] = alpha
        current = [tf.convert_to_tensor(v) for v in self.state_variables]
        return update, alpha, [_either(finite, staged.get(id(v), value), lambda _, kept=value: kept)
                               for v, value in zip(self.state_variables, current, strict=True)]


def _either(condition, value, otherwise):
    """`value` where `condition` (a scalar) holds, else `otherwise(value)`, without an elementwise pass."""
    return tf.cond(condition, lambda: tf.identity(value), lambda: otherwise(value))


@keras.saving.register_keras_serializable(package="mtl_keras")
class GradientState(keras.layers.Layer):
    """Holds a gradient method's variables, so that the model tracks, saves and mirrors them."""

    def call(self, inputs):
        return inputs


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


def project_to_simplex(vector: tf.Tensor) -> tf.Tensor:
    """The Euclidean projection of `vector` ([T]) onto the probability simplex (sort-based, exact)."""
    num_tasks = vector.shape[0]
    ordered = tf.sort(vector, direction="DESCENDING")
    cumulative = tf.cumsum(ordered) - 1.0
    ranks = tf.range(1, num_tasks + 1, dtype=vector.dtype)
    count = tf.reduce_sum(tf.cast(ordered - cumulative / ranks > 0.0, tf.int32))
    threshold = tf.gather(cumulative, count - 1) / tf.cast(count, vector.dtype)
    return tf.maximum(vector - threshold, 0.0)


def register(cls):
    """Registers a gradient method for `.keras` round trips of a compiled model."""
    return keras.saving.register_keras_serializable(package="mtl_keras")(cls)
