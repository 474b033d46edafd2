"""The multi-task training step: per-task losses, a loss weighting and a gradient method, under tf.distribute.

One step:

1. forward pass; each task's loss is the *global* masked mean: the sum of its per-example losses on this replica
   divided by the number of labelled examples on *all* replicas (all-reduced), so that the optimizer's sum over
   replicas gives exactly the loss of the whole batch, however unevenly labels are missing across replicas;
2. the weighting turns the global per-task losses (all-reduced, identical on every replica) into weights;
   extra terms (regularisers, add_loss, the weighting's penalty) are divided by the replica count: counted once;
3. without a gradient method: one backward pass of sum_t w_t L_t, as plain Keras would;
   with one, in parameter space: T backward passes, the shared-parameter gradients all-reduced once, combined by
   the method (from their Gram matrix), divided by the replica count because the optimizer sums over replicas
   again; the heads keep their own gradients (sum_t of each task's, summed by the optimizer as usual); an
   embedding's sparse gradient stays to the rows the batch touches (`task_matrix.TaskMatrix`) on one replica;
   in representation space (MGDA-UB): T backward passes through the heads to the shared representation, the Gram
   matrix all-reduced, then one backward pass of sum_t alpha_t w_t L_t for the shared weights;
4. mixed precision: each backward pass runs on the scaled loss, gradients are unscaled before any norm or Gram
   matrix and scaled back for the optimizer, so a LossScaleOptimizer still checks them and skips non-finite steps;
   a non-finite gradient in any task makes the whole update non-finite.

The shared parameters are found by gradient connectivity: a variable that two or more tasks' losses reach.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mtl_keras import keras_compat
from mtl_keras.backbones.trunk import learning_rate_multipliers
from mtl_keras.training.gradients import GradientMethod, VectorGradientMethod, gradient_cosines
from mtl_keras.training.shared import (
    as_masked_loss,
    last_shared_layers,
    masked_task_losses,
    partition_variables,
    shared_representation,
)
from mtl_keras.training.task_matrix import TaskMatrix, flatten
from mtl_keras.training.weighting import Weighting

SUM = tf.distribute.ReduceOp.SUM


@keras.saving.register_keras_serializable(package="mtl_keras")
class BalancingMonitor(keras.layers.Layer):
    """Per-epoch means of the task weights and of the pairwise gradient cosines, for the training logs."""

    def build_for_tasks(self, task_names):
        self.task_names = list(task_names)
        count = len(self.task_names)
        options = {"trainable": False, "aggregation": "only_first_replica", "initializer": "zeros"}
        self.weight_sum = self.add_weight(name="weight_sum", shape=(count,), **options)
        self.cosine_sum = self.add_weight(name="cosine_sum", shape=(count, count), **options)
        self.steps = self.add_weight(name="steps", shape=(), **options)
        self.cosine_steps = self.add_weight(name="cosine_steps", shape=(), **options)
        self.built = True

    def record(self, weights, cosines=None, measured=None):
        """Adds a step's weights and, where `measured` (None: always), its cosines (steps that reuse a gradient
        method's combination measure none)."""
        self.weight_sum.assign_add(tf.cast(weights, tf.float32))
        self.steps.assign_add(1.0)
        if cosines is not None:
            counted = 1.0 if measured is None else tf.cast(measured, tf.float32)
            self.cosine_sum.assign_add(cosines * counted)
            self.cosine_steps.assign_add(counted)

    def reset(self):
        for variable in (self.weight_sum, self.cosine_sum, self.steps, self.cosine_steps):
            variable.assign(tf.zeros_like(variable))

    def logs(self, with_cosines: bool) -> dict[str, tf.Tensor]:
        weights = tf.math.divide_no_nan(tf.convert_to_tensor(self.weight_sum), self.steps)
        logs = {f"{name}_weight": weights[i] for i, name in enumerate(self.task_names)}
        if with_cosines:
            cosines = tf.math.divide_no_nan(tf.convert_to_tensor(self.cosine_sum), self.cosine_steps)
            for i, first in enumerate(self.task_names):
                for j in range(i + 1, len(self.task_names)):
                    logs[f"cosine_{first}_{self.task_names[j]}"] = cosines[i, j]
        return logs

    def call(self, inputs):
        return inputs


class _Holder:
    """Keeps an object out of Keras' attribute tracking (a helper model sharing the main model's layers)."""

    def __init__(self, value):
        self.value = value


def _scale_updates(slowed: list, before: list) -> None:
    """Scales the optimizer's update of each `(variable, multiplier)` by its multiplier: `v <- before + m (v -
    before)`, which is the optimizer's own update at `m` times its learning rate (`PretrainedTrunk`'s
    `learning_rate_multiplier`). Done as Keras' optimizers update, in a merge call, so that every replica's copy of
    a mirrored variable takes the same value."""
    def interpolate(variable, value, multiplier):
        return variable.assign(value + multiplier * (variable - value))

    def update(strategy, values):
        for (variable, multiplier), value in zip(slowed, values, strict=True):
            strategy.extended.update(variable.value, interpolate, args=(value, multiplier), group=False)

    tf.distribute.get_replica_context().merge_call(update, args=(before,))


class MultiTaskStep:
    """Runs the training and evaluation steps of a compiled `MultiTaskModel` (see the module docstring)."""

    def __init__(self, model: keras.Model, losses: Mapping[str, object], loss_weights: Mapping[str, float],
                 weighting: Weighting, gradient: GradientMethod | None, monitor: BalancingMonitor):
        self.task_names = list(model.output)
        self.losses = {name: as_masked_loss(losses[name]) for name in self.task_names}
        self.loss_weights = tf.constant([float(loss_weights.get(name, 1.0)) for name in self.task_names])
        self.weighting, self.gradient, self.monitor = weighting, gradient, monitor
        self._representation = _Holder(None)
        if gradient is not None and gradient.space == "representation":
            frontier = shared_representation(model)
            if not frontier:
                raise ValueError(f"{gradient!r} needs a shared representation, and model {model.name!r} has none "
                                 f"(no tensor feeds two tasks' heads); use space='parameters'.")
            self._representation.value = keras.Model(model.input, {"outputs": model.output,
                                                                   "representation": frontier})
        self._norm_variables = _Holder(self._find_norm_variables(model) if weighting.needs_gradient_norms else [])

    def _find_norm_variables(self, model):
        names = getattr(self.weighting, "layers", None)
        layers = [model.get_layer(name) for name in names] if names else last_shared_layers(model)
        variables = [v for layer in layers for v in layer.trainable_variables]
        if not variables:
            raise ValueError(f"{type(self.weighting).__name__} needs shared layers with trainable weights to take "
                             f"gradient norms on; none found in model {model.name!r} (pass layers=[...]).")
        return variables

    # --- losses ---------------------------------------------------------------------------------------------------
    def task_losses(self, y, y_pred, sample_weight, context) -> list[tf.Tensor]:
        """This replica's share of each task's global masked-mean loss (`masked_task_losses`), in task order."""
        return masked_task_losses(self.losses, y, y_pred, sample_weight, context)

    def _forward(self, model, x, training):
        if self._representation.value is None:
            return model(x, training=training), []
        result = self._representation.value(x, training=training)
        return result["outputs"], list(result["representation"])

    # --- steps ----------------------------------------------------------------------------------------------------
    def train_step(self, model, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        optimizer = model.optimizer
        step = optimizer.iterations
        scale = tf.cast(optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        with tf.GradientTape(persistent=self.gradient is not None or self.weighting.needs_gradient_norms) as tape:
            y_pred, representation = self._forward(model, x, training=True)
            losses = self.task_losses(y, y_pred, sample_weight, context)
            global_losses = context.all_reduce(SUM, tf.stop_gradient(tf.stack(losses)))
            weights = tf.cast(self.weighting.task_weights(global_losses, step), tf.float32)
            weighted = [weights[t] * loss for t, loss in enumerate(losses)]
            extra = (tf.cast(self.weighting.penalty(), tf.float32) + _regularization(model)) / replicas
            total = tf.add_n(weighted) + extra
            scaled_total = total * scale
            scaled_extra = extra * scale
            scaled_tasks = [loss * scale for loss in weighted]
        variables = list(model.trainable_variables)
        cosines = recompute = None
        if self.gradient is None:
            gradients = tape.gradient(scaled_total, variables)
            task_gradients = None
        elif self.gradient.space == "parameters":
            gradients, task_gradients, cosines, recompute = self._parameter_space(
                tape, scaled_tasks, scaled_total, scaled_extra, variables, scale, step, context,
                weights * global_losses)
        elif hasattr(self.gradient, "representation_gradients"):
            gradients, task_gradients, cosines, recompute = self._rewritten_representation(
                tape, scaled_tasks, scaled_total, scaled_extra, representation, variables, scale, step, context)
        else:
            gradients, task_gradients, cosines, recompute = self._representation_space(
                tape, scaled_tasks, scaled_total, scaled_extra, representation, variables, scale, step, context)
        norms = None
        if self.weighting.needs_gradient_norms:
            norms = self._gradient_norms(tape, scaled_tasks, variables, task_gradients, scale, context)
        del tape
        multipliers = learning_rate_multipliers(model)
        slowed = [(v, multipliers[id(v)]) for g, v in zip(gradients, variables, strict=True)
                  if g is not None and id(v) in multipliers]
        before = [tf.identity(v.value) for v, _ in slowed]
        optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None])
        if slowed:
            _scale_updates(slowed, before)
        self.weighting.update(global_losses, step, norms)
        self.monitor.record(weights, cosines, recompute)
        self._track_losses(model, total, tf.stack(losses), replicas, x, y, y_pred)
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
        return {**logs, **self.monitor.logs(with_cosines=self.gradient is not None)}

    def test_step(self, model, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        context = tf.distribute.get_replica_context()
        y_pred = model(x, training=False)
        losses = tf.stack(self.task_losses(y, y_pred, sample_weight, context))
        # The compiled (static) weights: a validation loss comparable from epoch to epoch whatever the method.
        total = tf.reduce_sum(self.loss_weights * losses) + _regularization(model) / context.num_replicas_in_sync
        self._track_losses(model, total, losses, context.num_replicas_in_sync, x, y, y_pred)
        return model.compute_metrics(x, y, y_pred, sample_weight)

    # --- gradient methods -----------------------------------------------------------------------------------------
    def _partition(self, task_gradients, variables):
        """Indices of shared variables (reached by 2+ tasks), task-own ones (1 task) and the rest (the weighting's
        own variables, and whatever no task's loss reaches)."""
        partition = partition_variables(dict(zip(self.task_names, task_gradients, strict=True)))
        weighting = {id(v) for v in self.weighting.trainable_variables}
        shared = [i for i in partition.shared if id(variables[i]) not in weighting]
        own = sorted(i for indices in partition.task_specific.values() for i in indices
                     if id(variables[i]) not in weighting)
        other = [i for i in range(len(variables)) if i not in set(shared) | set(own)]
        return shared, own, other

    def _recompute(self, step) -> tf.Tensor | None:
        """Whether this step computes a new combination (None: every step does, `update_every=1`)."""
        every = self.gradient.update_every
        return None if every == 1 else tf.equal(tf.math.floormod(step, every), 0)

    def _combine(self, gram, step, recompute):
        """The coefficients (new, or the last ones where `recompute` is False) and the cosines; assigns the
        method's staged state, outside any conditional (a mirrored variable cannot be assigned inside one)."""
        method = self.gradient
        if recompute is None:
            alpha, state = method.coefficients_and_state(gram, step)
        else:
            alpha, state = tf.cond(recompute, lambda: method.coefficients_and_state(gram, step),
                                   lambda: (tf.convert_to_tensor(method.last_coefficients),
                                            [tf.convert_to_tensor(v) for v in method.state_variables]))
        for variable, value in zip(method.state_variables, state, strict=True):
            variable.assign(value)
        return tf.stop_gradient(alpha), gradient_cosines(gram)

    def _combine_vectors(self, flat, gram, losses, step, recompute):
        """A vector method's update (new, or zeros where `recompute` is False: the caller then uses the reused
        combination) and the cosines; assigns the method's state outside any conditional, as `_combine`."""
        method = self.gradient
        if recompute is None:
            update, _, state = method.update_and_state(flat, losses, step)
        else:
            update, _, state = tf.cond(recompute, lambda: method.update_and_state(flat, losses, step),
                                       lambda: (tf.zeros([flat.shape[1]]),
                                                tf.convert_to_tensor(method.last_coefficients),
                                                [tf.convert_to_tensor(v) for v in method.state_variables]))
        for variable, value in zip(method.state_variables, state, strict=True):
            variable.assign(value)
        return tf.stop_gradient(update), gradient_cosines(gram)

    @staticmethod
    def _when(recompute, every_task, reuse):
        """`every_task()` (T backward passes) on steps that recompute the combination, else `reuse()` (one pass).
        The branches hold no all-reduce: a synchronisation point cannot sit inside a conditional."""
        return every_task() if recompute is None else tf.cond(recompute, every_task, reuse)

    def _parameter_space(self, tape, scaled_tasks, scaled_total, scaled_extra, variables, scale, step, context,
                         weighted_losses):
        connectivity = [tape.gradient(target, variables) for target in scaled_tasks]  # which task reaches what
        shared, own, other = self._partition(connectivity, variables)
        gradients = [None] * len(variables)
        recompute = self._recompute(step)
        shared_variables = [variables[i] for i in shared]
        own_variables = [variables[i] for i in own]
        # Sparse gradients (an embedding's) stay to the rows the batch touches where the coordinates may differ
        # from step to step: not across replicas (their rows differ and are summed), nor for methods that keep
        # state per coordinate (vector methods), nor where a conditional must return one shape either way.
        compact = (recompute is None and context.num_replicas_in_sync == 1
                   and not isinstance(self.gradient, VectorGradientMethod))
        matrix = []
        if shared and recompute is not None and context.num_replicas_in_sync == 1:
            pieces, own_sums, cosines = self._combine_or_reuse_on_one_replica(
                tape, scaled_tasks, shared_variables, own_variables, scale, step, recompute, weighted_losses)
            for i, gradient in zip(shared + own, pieces + own_sums, strict=True):
                gradients[i] = gradient
        elif shared:
            def every_task():
                if recompute is None:  # the connectivity passes are the per-task gradients: no second set
                    task_gradients = [[g[i] for i in shared + own] for g in connectivity]
                else:  # inside the conditional, so that steps reusing the combination skip them
                    task_gradients = [tape.gradient(target, shared_variables + own_variables)
                                      for target in scaled_tasks]
                on_shared = [g[:len(shared)] for g in task_gradients]
                matrix.append((TaskMatrix.compact if compact else TaskMatrix.dense)(on_shared, shared_variables))
                flat = matrix[-1].rows / scale
                own_sums = [_sum_present([g[len(shared) + k] for g in task_gradients], v)
                            for k, v in enumerate(own_variables)]
                return flat, own_sums, [tf.zeros_like(v) for v in shared_variables]

            def reuse():  # sum_t alpha_t (w_t L_t) on the shared weights, sum_t w_t L_t on the heads' own
                # (a list of targets: their sum, which an op built here would not give, the tape having stopped)
                alpha = tf.unstack(tf.convert_to_tensor(self.gradient.last_coefficients))
                reused = tape.gradient(scaled_tasks, shared_variables, output_gradients=alpha)
                own_sums = tape.gradient(scaled_tasks, own_variables) if own_variables else []
                return (tf.zeros([len(scaled_tasks), _size_of(shared_variables)]),
                        [_dense(g, v) for g, v in zip(own_sums, own_variables, strict=True)],
                        [_dense(g, v) for g, v in zip(reused, shared_variables, strict=True)])

            flat, own_sums, reused = self._when(recompute, every_task, reuse)
            flat = context.all_reduce(SUM, flat)
            gram = tf.matmul(flat, flat, transpose_b=True)
            if isinstance(self.gradient, VectorGradientMethod):
                combined, cosines = self._combine_vectors(flat, gram, weighted_losses, step, recompute)
            else:
                alpha, cosines = self._combine(gram, step, recompute)
                combined = tf.linalg.matvec(flat, alpha, transpose_a=True)
            # A gradient or a Gram matrix that overflowed gives a non-finite update, which loss scaling skips (a
            # method may map an infinite Gram matrix to finite coefficients of huge gradients).
            finite = tf.logical_and(tf.reduce_all(tf.math.is_finite(flat)), tf.reduce_all(tf.math.is_finite(gram)))
            combined = tf.where(finite, combined, float("nan"))
            # The optimizer sums over replicas again: hand each replica its share of the combined update.
            combined = combined * scale / context.num_replicas_in_sync
            pieces = matrix[-1].gradients(combined) if compact else _unflatten(combined, shared_variables)
            if recompute is not None:
                pieces = [tf.where(recompute, piece, other) for piece, other in zip(pieces, reused, strict=True)]
            for i, piece in zip(shared, pieces, strict=True):
                gradients[i] = piece
            for i, gradient in zip(own, own_sums, strict=True):
                gradients[i] = gradient
        else:
            cosines = tf.zeros([len(scaled_tasks)] * 2)
            for i in own:
                gradients[i] = tf.add_n([g[i] for g in connectivity if g[i] is not None])
        self._finish(tape, scaled_extra, scaled_total, variables, gradients, shared + own, other)
        return gradients, (connectivity if recompute is None else None), cosines, recompute

    def _combine_or_reuse_on_one_replica(self, tape, scaled_tasks, shared_variables, own_variables, scale, step,
                                         recompute, weighted_losses):
        """`update_every > 1` on one replica: nothing to all-reduce, so the whole combination sits inside the
        conditional, and a step that reuses it costs one backward pass and nothing over the T x P gradient matrix.
        Returns the shared variables' gradients, the own variables' and the cosines (zeros on reusing steps, which
        the monitor does not record)."""
        method = self.gradient
        num_tasks = len(scaled_tasks)

        def combine():
            task_gradients = [tape.gradient(target, shared_variables + own_variables) for target in scaled_tasks]
            on_shared = [g[:len(shared_variables)] for g in task_gradients]
            vector = isinstance(method, VectorGradientMethod)
            matrix = (TaskMatrix.dense if vector else TaskMatrix.compact)(on_shared, shared_variables)
            flat = matrix.rows / scale
            gram = tf.matmul(flat, flat, transpose_b=True)
            if vector:
                update, _, state = method.update_and_state(flat, weighted_losses, step)
            else:
                alpha, state = method.coefficients_and_state(gram, step)
                update = tf.linalg.matvec(flat, tf.stop_gradient(alpha), transpose_a=True)
            finite = tf.logical_and(tf.reduce_all(tf.math.is_finite(flat)), tf.reduce_all(tf.math.is_finite(gram)))
            update = tf.where(finite, tf.stop_gradient(update), float("nan")) * scale
            pieces = [_dense(g, v) for g, v in zip(matrix.gradients(update), shared_variables, strict=True)]
            own_sums = [_sum_present([g[len(shared_variables) + k] for g in task_gradients], v)
                        for k, v in enumerate(own_variables)]
            return pieces, own_sums, gradient_cosines(gram), state

        def reuse():  # sum_t alpha_t (w_t L_t) on the shared weights, sum_t w_t L_t on the heads' own
            alpha = tf.unstack(tf.convert_to_tensor(method.last_coefficients))
            reused = tape.gradient(scaled_tasks, shared_variables, output_gradients=alpha)
            own_sums = tape.gradient(scaled_tasks, own_variables) if own_variables else []
            return ([_dense(g, v) for g, v in zip(reused, shared_variables, strict=True)],
                    [_dense(g, v) for g, v in zip(own_sums, own_variables, strict=True)],
                    tf.zeros([num_tasks, num_tasks]), [tf.convert_to_tensor(v) for v in method.state_variables])

        pieces, own_sums, cosines, state = tf.cond(recompute, combine, reuse)
        for variable, value in zip(method.state_variables, state, strict=True):
            variable.assign(value)
        return pieces, own_sums, cosines

    def _representation_space(self, tape, scaled_tasks, scaled_total, scaled_extra, representation, variables,
                              scale, step, context):
        connectivity = [tape.gradient(target, variables) for target in scaled_tasks]
        shared, own, other = self._partition(connectivity, variables)
        gradients = [None] * len(variables)
        recompute = self._recompute(step)
        own_variables = [variables[i] for i in own]

        def every_task():
            per_task, own_sums = _representation_passes(tape, scaled_tasks, connectivity, own, own_variables,
                                                        representation)
            return tf.stack([flatten(g, representation) for g in per_task]) / scale, own_sums

        def reuse():
            own_sums = tape.gradient(scaled_tasks, own_variables) if own_variables else []
            width = tf.add_n([tf.size(r) for r in representation])
            return (tf.zeros(tf.stack([len(scaled_tasks), width])),
                    [_dense(g, v) for g, v in zip(own_sums, own_variables, strict=True)])

        flat, own_sums = self._when(recompute, every_task, reuse)
        for i, gradient in zip(own, own_sums, strict=True):
            gradients[i] = gradient
        gram = context.all_reduce(SUM, tf.matmul(flat, flat, transpose_b=True))
        alpha, cosines = self._combine(gram, step, recompute)
        finite = tf.reduce_all(tf.math.is_finite(gram))
        alpha = tf.where(finite, alpha, tf.fill(tf.shape(alpha), float("nan")))
        # One backward pass of sum_t alpha_t (w_t L_t) for the shared weights (targets weighted by output_gradients,
        # since the tape stopped recording); the heads keep their own unweighted gradients from above.
        combined = tape.gradient(scaled_tasks, [variables[i] for i in shared], output_gradients=tf.unstack(alpha))
        for i, gradient in zip(shared, combined, strict=True):
            gradients[i] = gradient
        self._finish(tape, scaled_extra, scaled_total, variables, gradients, shared + own, other)
        return gradients, None, cosines, recompute

    def _rewritten_representation(self, tape, scaled_tasks, scaled_total, scaled_extra, representation, variables,
                                  scale, step, context):
        """A method that rewrites the gradients on the shared representation (GradDrop): T backward passes to the
        representation (which also give the heads' own gradients), the method's rewritten gradient there, then
        one backward pass of it through the shared layers."""
        connectivity = [tape.gradient(target, variables) for target in scaled_tasks]
        shared, own, other = self._partition(connectivity, variables)
        gradients = [None] * len(variables)
        own_variables = [variables[i] for i in own]
        per_task, own_sums = _representation_passes(tape, scaled_tasks, connectivity, own, own_variables,
                                                    representation)
        for i, gradient in zip(own, own_sums, strict=True):
            gradients[i] = gradient
        flat = tf.stack([flatten(g, representation) for g in per_task]) / scale
        cosines = gradient_cosines(context.all_reduce(SUM, tf.matmul(flat, flat, transpose_b=True)))
        rewritten = self.gradient.representation_gradients(per_task, representation, step, context)
        # An overflowed loss can still have finite (huge) gradients on the representation: skip the step, as a
        # non-finite Gram matrix does for the other methods.
        finite = tf.reduce_all(tf.math.is_finite(context.all_reduce(SUM, tf.stop_gradient(tf.stack(scaled_tasks)))))
        rewritten = [tf.where(finite, r, tf.cast(float("nan"), r.dtype)) for r in rewritten]
        combined = tape.gradient(representation, [variables[i] for i in shared], output_gradients=rewritten)
        for i, gradient in zip(shared, combined, strict=True):
            gradients[i] = gradient
        self._finish(tape, scaled_extra, scaled_total, variables, gradients, shared + own, other)
        return gradients, None, cosines, None

    def _finish(self, tape, scaled_extra, scaled_total, variables, gradients, reached, other):
        """The tail of every gradient-method step: regularisers on the variables the tasks reach, and the plain
        total's gradient on the rest (the weighting's own variables)."""
        self._add_extra(tape, scaled_extra, variables, gradients, reached)
        if other:
            for i, gradient in zip(other, tape.gradient(scaled_total, [variables[i] for i in other]), strict=True):
                gradients[i] = gradient

    @staticmethod
    def _add_extra(tape, scaled_extra, variables, gradients, indices):
        """Adds the gradients of regularisers and add_loss terms, which no gradient method should reshape."""
        if not indices:
            return
        for i, gradient in zip(indices, tape.gradient(scaled_extra, [variables[i] for i in indices]), strict=True):
            if gradient is not None:
                # (a sparse method update plus a dense regulariser gradient: added as dense tensors)
                gradients[i] = gradient if gradients[i] is None else (
                    tf.convert_to_tensor(gradients[i]) + tf.convert_to_tensor(gradient))

    def _gradient_norms(self, tape, scaled_tasks, variables, task_gradients, scale, context):
        chosen = self._norm_variables.value
        if task_gradients is not None:
            index = {id(v): i for i, v in enumerate(variables)}
            per_task = [[g[index[id(v)]] for v in chosen] for g in task_gradients]
        else:
            per_task = [tape.gradient(target, chosen) for target in scaled_tasks]
        flat = context.all_reduce(SUM, tf.stack([flatten(g, chosen) for g in per_task]) / scale)
        return tf.norm(flat, axis=1)

    # --- logs -----------------------------------------------------------------------------------------------------
    def _track_losses(self, model, total, losses, replicas, x, y, y_pred):
        compile_loss = keras_compat.compile_loss(model)
        if compile_loss is not None and not compile_loss.built:
            compile_loss.build(y, y_pred)  # creates the `<task>_loss` trackers, as Keras' own step would
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        keras_compat.loss_tracker(model).update_state(total * replicas, sample_weight=batch)
        trackers = {metric.name: metric for metric in getattr(compile_loss, "metrics", [])}
        for t, name in enumerate(self.task_names):
            if f"{name}_loss" in trackers:
                trackers[f"{name}_loss"].update_state(losses[t] * replicas, sample_weight=batch)


def _representation_passes(tape, scaled_tasks, connectivity, own, own_variables, representation):
    """Each task's backward pass to the shared representation, which also yields the gradients of the task-own
    variables it reaches (e.g. a decoder only the segmentation loss reaches), so no further pass goes back through
    them. Returns each task's representation gradients and each own variable's summed gradient."""
    per_task, own_parts = [], [[] for _ in own]
    for target, reached in zip(scaled_tasks, connectivity, strict=True):
        mine = [k for k, i in enumerate(own) if reached[i] is not None]
        results = tape.gradient(target, representation + [own_variables[k] for k in mine])
        per_task.append(results[:len(representation)])
        for k, gradient in zip(mine, results[len(representation):], strict=True):
            own_parts[k].append(gradient)
    return per_task, [_sum_present(parts, v) for parts, v in zip(own_parts, own_variables, strict=True)]


def _regularization(model) -> tf.Tensor:
    terms = [tf.cast(tf.reduce_sum(term), tf.float32) for term in model.losses]
    return tf.add_n(terms) if terms else tf.constant(0.0)


def _dense(gradient, variable) -> tf.Tensor:
    """A gradient as a dense tensor of its variable's shape (zeros where the loss does not reach it): both branches
    of a conditional must return the same structure."""
    if gradient is None:
        return tf.zeros(variable.shape, variable.dtype)
    return tf.convert_to_tensor(gradient)


def _sum_present(gradients, variable) -> tf.Tensor:
    present = [tf.convert_to_tensor(g) for g in gradients if g is not None]
    return tf.add_n(present) if present else tf.zeros(variable.shape, variable.dtype)


def _size_of(variables) -> int:
    return sum(_size(v.shape) for v in variables)


def _unflatten(vector, variables) -> list[tf.Tensor]:
    pieces = tf.split(vector, [_size(v.shape) for v in variables])
    return [tf.cast(tf.reshape(piece, v.shape), v.dtype) for piece, v in zip(pieces, variables, strict=True)]


def _size(shape) -> int:
    size = 1
    for dimension in shape:
        size *= int(dimension)
    return size
