"""`MultiTaskModel`: the functional Keras model every builder returns.

It is a `keras.Model` built from inputs and dict outputs, as `keras.Model(inputs, outputs)` would be, registered so
that `.keras` files load back as it. What it adds:

- `compile(..., weighting=..., gradient=...)`: a loss weighting (static by default, uncertainty, GradNorm, DWA, RLW,
  FAMO) and a gradient method (PCGrad, CAGrad, MGDA-UB, IMTL-G, Nash-MTL, Aligned-MTL), by name or as objects; both
  travel in the compile config, so a `.keras` file reloads with its method and the method's state (uncertainty's
  log-variances, GradNorm's weights...). Training then runs `mtl_keras.training.balancing.Balancer`'s step; logs
  gain `<task>_weight` and, with a gradient method, `cosine_<a>_<b>` (epoch means).
- `fit(..., loop="auto"|"keras"|"custom", backup=None)`: Keras' `fit`, or our loop
  (`mtl_keras.training.loop.fit_distributed`), which it takes by itself under `MultiWorkerMirroredStrategy` (where
  Keras' `fit` fails) and with a `backup` (a `TrainingBackup`: resume after a kill).
- building before the first step from the dataset's element spec, with or without a strategy: Keras draws a batch
  under a strategy (an extra pass over a reshuffling dataset, so training saw other batches than on one device;
  averaging it over replicas fails on strings) and builds inside the first trace without one (which traces the train
  function twice).

Example:

>>> import keras
>>> inputs = keras.Input((3,))
>>> model = MultiTaskModel(inputs, {"a": keras.layers.Dense(1, name="a")(inputs),
...                                 "b": keras.layers.Dense(1, name="b")(inputs)})
>>> model.compile("sgd", loss={"a": "mse", "b": "mse"}, weighting="uncertainty", gradient="pcgrad")
>>> type(model.weighting).__name__, type(model.gradient_method).__name__
('UncertaintyWeighting', 'PCGrad')
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from mtl_keras.datasets.pipeline import check_model_inputs
from mtl_keras.distribute import is_multi_worker
from mtl_keras.training.balancing import Balancer, BalancingMonitor
from mtl_keras.training.gradients import get_gradient_method
from mtl_keras.training.weighting import get_weighting


def _batch_spec(iterator):
    """The shapes and dtypes of one replica's batch, read from the dataset's element spec, or None."""
    spec = getattr(getattr(iterator, "_distributed_dataset", None), "element_spec", None)
    if spec is None:
        return None
    return tf.nest.map_structure(lambda leaf: leaf._value_specs[0] if hasattr(leaf, "_value_specs") else leaf, spec)


class EpochHooks(keras.callbacks.Callback):
    """Calls the weighting's epoch-level update (DWA) and restarts the epoch means of the balancing logs."""

    def on_epoch_begin(self, epoch, logs=None):
        if getattr(self.model, "_balancer", None) is not None:
            self.model.balancing_monitor.reset()

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self.model, "_balancer", None) is not None:
            self.model.weighting.on_epoch_end()


@keras.saving.register_keras_serializable(package="mtl_keras")
class MultiTaskModel(keras.Model):
    """A functional multi-task model: one named output per task."""

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, *args, weighting=None, gradient=None,
                **kwargs):
        super().compile(optimizer, loss, loss_weights, *args, **kwargs)
        self._balancer = None
        for name in ("weighting", "balancing_monitor"):
            self._forget_layer(getattr(self, name, None))
        if loss is None:
            self.weighting = self.gradient_method = None
            return
        task_names = list(self.output)
        losses = dict(loss) if isinstance(loss, Mapping) else {name: loss for name in task_names}
        static = dict(loss_weights) if isinstance(loss_weights, Mapping) else {}
        self.weighting = get_weighting(weighting)
        self.weighting.build_for_tasks(task_names, [float(static.get(name, 1.0)) for name in task_names])
        self.gradient_method = get_gradient_method(gradient)
        self.balancing_monitor = BalancingMonitor(name="balancing_monitor")
        self.balancing_monitor.build_for_tasks(task_names)
        self._balancer = Balancer(self, losses, static, self.weighting, self.gradient_method,
                                  self.balancing_monitor)
        self._compile_config.config.update(weighting=self.weighting, gradient=self.gradient_method)

    def _forget_layer(self, layer):
        # A recompiled model must not keep training (or saving) the previous weighting's variables.
        if layer is not None and layer in self._layers:
            self._layers.remove(layer)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        if getattr(self, "_balancer", None) is None:
            return super().train_step(data)
        return self._balancer.train_step(self, data)

    def test_step(self, data):
        if getattr(self, "_balancer", None) is None:
            return super().test_step(data)
        return self._balancer.test_step(self, data)

    def fit(self, *args, callbacks=None, loop: str = "auto", backup=None, **kwargs):
        """Keras' `fit`, or our loop (`mtl_keras.training.loop.fit_distributed`, on a tf.data.Dataset) with
        `loop="custom"`, with a `backup` (a `TrainingBackup`), and by default under `MultiWorkerMirroredStrategy`,
        where Keras' `fit` fails; `loop="keras"` insists on Keras' `fit`."""
        if loop not in ("auto", "keras", "custom"):
            raise ValueError(f"loop must be 'auto', 'keras' or 'custom', got {loop!r}.")
        callbacks = list(callbacks or [])
        if getattr(self, "_balancer", None) is not None:
            callbacks.insert(0, EpochHooks())
        if loop == "custom" or (loop == "auto" and (backup is not None or is_multi_worker(self.distribute_strategy))):
            from mtl_keras.training.loop import fit_distributed  # it imports this module

            return fit_distributed(self, *args, callbacks=callbacks, backup=backup, **kwargs)
        if backup is not None:
            raise ValueError("backup= needs our loop (loop='custom' or 'auto'); Keras' fit has no mid-epoch resume.")
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def predict(self, x, *args, **kwargs):
        """Keras' `predict`, after checking array inputs as `make_text_dataset` and `make_image_dataset` do
        (`mtl_keras.datasets.pipeline.check_model_inputs`): non-strings for a text model, or float images in
        [0, 1] for a uint8 image model, fail naming the input instead of giving other outputs."""
        return super().predict(check_model_inputs(x, self.inputs), *args, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.x, TF backend) builds the metrics, loss trackers and optimizer slots here from a batch it draws
        # from the dataset, and only under a strategy. Drawing starts an extra pass over the dataset, so a dataset
        # that reshuffles each pass would train on its second order (and under MirroredStrategy, averaging the
        # drawn batch over replicas fails on strings); without a strategy the variables are created inside the first
        # trace of the train function, which makes tf.function trace it twice. The element spec is all it needs.
        if data_batch is None and iterator is not None:
            data_batch = _batch_spec(iterator)
        if data_batch is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)
