"""GradDrop: gradient sign dropout (Chen et al., NeurIPS 2020, "Just Pick a Sign: Optimizing Deep Multitask Models
with Gradient Sign Dropout").

Where the tasks' gradients disagree in sign on a coordinate, keep only one sign there, chosen at random in
proportion to how much gradient each sign carries. For each coordinate i, from the task gradients g_t:

    purity     P_i = 1/2 (1 + sum_t g_ti / sum_t |g_ti|)            (1: every task pushes up; 0: every task down)
    draw       U_i ~ uniform(0, 1), the same for every task
    mask       M_ti = 1 if (P_i > U_i and g_ti > 0) or (P_i < U_i and g_ti < 0), else 0
    gradient   sum_t (leak_t + (1 - leak_t) M_ti) g_ti

In representation space (the paper's setting, the default) a coordinate is a feature of the shared representation,
and its purity is taken over the batch from the gradients times the sign of the feature's value (the paper's
line 10, for a representation after an activation that may be negative): sum over examples of g_t * sign(h). The
masked gradients then go back through the shared layers in one backward pass. In parameter space (torchjd's
aggregator) a coordinate is a shared parameter, and its purity comes from the parameter gradients directly.

The draw is stateless, seeded by (`seed`, step), so every replica draws the same; the batch sums are all-reduced
before the purity is formed, so two replicas keep exactly the coordinates one device would.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from mtl_keras.seeds import DEFAULT_SEED
from mtl_keras.training.gradients.base import VectorGradientMethod, register

# Added to the sum of |g| in the purity's denominator (LibMTL's 1e-7): a coordinate no task moves has purity 1/2.
PURITY_EPSILON = 1e-7


@register
class GradDrop(VectorGradientMethod):
    """GradDrop (Chen et al. 2020). `leak`: a number, or one per task, of gradient kept whatever the mask (0: the
    paper's plain GradDrop).

    Example (parameter space; the coordinates where the gradients agree are kept whatever the draw):

    >>> import tensorflow as tf
    >>> method = GradDrop(space="parameters")
    >>> _ = method.build_for_tasks(2, num_parameters=2)
    >>> update, _ = method.update(tf.constant([[1.0, 2.0], [3.0, -2.0]]), tf.constant([1.0, 1.0]),
    ...                           tf.constant(0, tf.int64))
    >>> float(update[0])  # both positive: purity 1, both kept
    4.0
    >>> float(update[1]) in (2.0, -2.0)  # opposite signs, equal mass: purity 1/2, one of them kept
    True
    """

    name = "graddrop"
    default_space = "representation"
    reuse_note = "its masks are drawn for each coordinate at each step"

    def __init__(self, space: str | None = None, leak: float | Sequence[float] = 0.0, seed: int = DEFAULT_SEED,
                 update_every: int = 1):
        super().__init__(space, update_every)
        leaks = [float(value) for value in (leak if isinstance(leak, Sequence) else [leak])]
        if not all(0.0 <= value <= 1.0 for value in leaks):
            raise ValueError(f"GradDrop: leak must be in [0, 1] (one number, or one per task), got {leak!r}.")
        self.leak = leaks if isinstance(leak, Sequence) else leaks[0]
        self.seed = int(seed)

    def build_for_tasks(self, num_tasks, num_parameters=None):
        if isinstance(self.leak, list) and len(self.leak) != num_tasks:
            raise ValueError(f"GradDrop: {len(self.leak)} leak values for {num_tasks} tasks; give one per task.")
        return super().build_for_tasks(num_tasks, num_parameters)

    def kept(self, signed: tf.Tensor, step) -> tf.Tensor:
        """How much of each task's gradient each coordinate keeps, leak included ([T, F] from signed [T, F])."""
        purity = 0.5 * (1.0 + tf.reduce_sum(signed, axis=0) / (tf.reduce_sum(tf.abs(signed), axis=0)
                                                             + PURITY_EPSILON))
        draw = tf.random.stateless_uniform(tf.shape(purity), seed=tf.stack([tf.constant(self.seed, tf.int64),
                                                                            tf.cast(step, tf.int64)]))
        mask = tf.logical_or(tf.logical_and(purity > draw, signed > 0), tf.logical_and(purity < draw, signed < 0))
        leak = tf.reshape(tf.constant(self.leak, tf.float32), [-1, 1])
        return leak + (1.0 - leak) * tf.cast(mask, tf.float32)

    def update(self, gradients, losses, step):
        kept = self.kept(gradients, step)
        return tf.reduce_sum(kept * gradients, axis=0), tf.ones([gradients.shape[0]])

    def representation_gradients(self, task_gradients, representation, step, context):
        """The gradient to send back into each shared representation tensor: the tasks' gradients on it ([T] lists
        of tensors, of the scaled weighted losses), masked feature by feature and summed over the tasks."""
        signs = [tf.sign(tf.cast(tensor, tf.float32)) for tensor in representation]
        signed = tf.stack([tf.concat([tf.reshape(tf.reduce_sum(_dense(gradient, tensor) * sign, axis=0), [-1])
                                      for gradient, tensor, sign in zip(gradients, representation, signs,
                                                                        strict=True)], axis=0)
                           for gradients in task_gradients])
        signed = context.all_reduce(tf.distribute.ReduceOp.SUM, signed)  # the purity is over the whole batch
        kept = self.kept(signed, step)
        finite = tf.reduce_all(tf.math.is_finite(signed))
        sizes = [tf.reduce_prod(tf.shape(tensor)[1:]) for tensor in representation]
        outputs = []
        for k, (tensor, kept_here) in enumerate(zip(representation, tf.split(kept, sizes, axis=1), strict=True)):
            feature_shape = tf.concat([[len(task_gradients), 1], tf.shape(tensor)[1:]], axis=0)
            stacked = tf.stack([_dense(gradients[k], tensor) for gradients in task_gradients])
            output = tf.reduce_sum(stacked * tf.reshape(kept_here, feature_shape), axis=0)
            outputs.append(tf.cast(tf.where(finite, output, float("nan")), tensor.dtype))
        return outputs

    def get_config(self):
        return {**super().get_config(), "leak": self.leak, "seed": self.seed}


def _dense(gradient, tensor) -> tf.Tensor:
    """A representation gradient in float32, zeros where the task's loss does not reach the tensor."""
    return tf.zeros(tf.shape(tensor), tf.float32) if gradient is None else tf.cast(gradient, tf.float32)
