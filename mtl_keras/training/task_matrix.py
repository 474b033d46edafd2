"""The tasks' gradients of the shared variables as one matrix (a row per task), and a combined row back as gradients.

Gradient methods work on that matrix: its Gram matrix gives their coefficients, and a combination of its rows is
the update. An embedding's gradient is sparse (`tf.IndexedSlices`: the rows of the tokens in the batch); made dense
it becomes the whole table (vocabulary x width) in every row, and flattening, the Gram matrix and the combination
then cost more than the backward passes that made them. `TaskMatrix.compact` keeps such a variable to the rows some
task's gradient touches: the other rows are zero in every task, so they add nothing to any inner product and get
nothing from any combination of rows, and the combined gradient goes back as `IndexedSlices` over those rows.

Example:

>>> import tensorflow as tf
>>> table = tf.Variable(tf.zeros([1000, 2]))
>>> first = tf.IndexedSlices(tf.constant([[1.0, 0.0], [1.0, 0.0]]), tf.constant([5, 5]), tf.constant([1000, 2]))
>>> second = tf.IndexedSlices(tf.constant([[0.0, 2.0]]), tf.constant([7]), tf.constant([1000, 2]))
>>> matrix = TaskMatrix.compact([[first], [second]], [table])
>>> matrix.rows.shape  # rows 5 and 7 of the table only, not 1000 x 2 entries
TensorShape([2, 4])
>>> combined = matrix.gradients(tf.reduce_sum(matrix.rows, axis=0))[0]
>>> tf.convert_to_tensor(combined).numpy()[[5, 7]].tolist()
[[2.0, 0.0], [0.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


class TaskMatrix:
    """`rows` ([tasks, coordinates], float32) and `gradients(row)`, the inverse for a combination of the rows."""

    def __init__(self, rows: tf.Tensor, variables: Sequence, layout: list):
        self.rows = rows
        self.variables = list(variables)
        self._layout = layout  # per variable: None (every entry) or (touched rows, shape of one row)

    @classmethod
    def dense(cls, task_gradients: Sequence[Sequence], variables: Sequence) -> TaskMatrix:
        """Every entry of every variable (fixed coordinates: what methods with per-coordinate state and sums over
        replicas need)."""
        rows = tf.stack([flatten(gradients, variables) for gradients in task_gradients])
        return cls(rows, variables, [None] * len(variables))

    @classmethod
    def compact(cls, task_gradients: Sequence[Sequence], variables: Sequence) -> TaskMatrix:
        """Sparse gradients (`IndexedSlices`) kept to the rows some task touches; the rest as in `dense`."""
        columns, layout = [], []
        for k, variable in enumerate(variables):
            per_task = [gradients[k] for gradients in task_gradients]
            if not any(isinstance(g, tf.IndexedSlices) for g in per_task) or not all(
                    g is None or isinstance(g, tf.IndexedSlices) for g in per_task):
                columns.append(tf.stack([_flat(g, variable) for g in per_task]))
                layout.append(None)
                continue
            present = [g for g in per_task if g is not None]
            touched, position = tf.unique(tf.concat([tf.cast(g.indices, tf.int64) for g in present], axis=0))
            row_shape = [int(d) for d in variable.shape[1:]]
            parts, start = [], 0
            for g in per_task:
                if g is None:
                    parts.append(tf.zeros(tf.concat([[tf.size(touched)], row_shape], axis=0), tf.float32))
                    continue
                count = tf.shape(g.indices)[0]
                # Summed by row: a token seen twice in the batch appears twice in the slices.
                parts.append(tf.math.unsorted_segment_sum(tf.cast(g.values, tf.float32),
                                                          position[start:start + count], tf.size(touched)))
                start += count
            columns.append(tf.stack([tf.reshape(part, [-1]) for part in parts]))
            layout.append((touched, row_shape))
        return cls(tf.concat(columns, axis=1), variables, layout)

    def gradients(self, row: tf.Tensor) -> list:
        """A row over the same coordinates (e.g. a combination of `rows`) as one gradient per variable, in each
        variable's dtype: dense tensors, and `IndexedSlices` for the variables kept compact."""
        sizes = [_size(v.shape) if layout is None else tf.size(layout[0], out_type=tf.int32) * _size(layout[1])
                 for v, layout in zip(self.variables, self._layout, strict=True)]
        pieces = tf.split(row, tf.stack(sizes)) if len(sizes) > 1 else [row]
        result = []
        for piece, variable, layout in zip(pieces, self.variables, self._layout, strict=True):
            if layout is None:
                result.append(tf.cast(tf.reshape(piece, variable.shape), variable.dtype))
            else:
                touched, row_shape = layout
                values = tf.cast(tf.reshape(piece, tf.concat([[-1], row_shape], axis=0)), variable.dtype)
                result.append(tf.IndexedSlices(values, touched, dense_shape=tf.shape(variable, out_type=tf.int64)))
        return result


def flatten(gradients, variables) -> tf.Tensor:
    """One float32 vector of every variable's gradient (zeros where it is None, sparse ones made dense)."""
    return tf.concat([_flat(g, v) for g, v in zip(gradients, variables, strict=True)], axis=0)


def _flat(gradient, variable) -> tf.Tensor:
    # `tf.shape`, not `.shape`: a representation tensor has an unknown batch size.
    if gradient is None:
        return tf.reshape(tf.zeros(tf.shape(variable), tf.float32), [-1])
    return tf.reshape(tf.cast(tf.convert_to_tensor(gradient), tf.float32), [-1])


def _size(shape) -> int:
    size = 1
    for dimension in shape:
        size *= int(dimension)
    return size
