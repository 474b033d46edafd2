"""The private Keras and TensorFlow hooks mtl_keras cannot do without yet, in one place, each with why.

Any release may rename or drop a private attribute. Each hook here is read through one function, and
`tests/test_keras_hooks.py` checks every one against the installed releases, naming the hook when it is gone.
One override is here too, as a mixin `MultiTaskModel` inherits: `BuildsFromElementSpec._maybe_symbolic_build`
(the test file checks by behaviour that `fit` still calls it). One more lives where Python needs it: `tuning.py`
subclasses keras-tuner's oracles (`populate_space`, `start_order`: the test file checks that they exist,
`tests/test_tuning.py` that the reference trial still comes first).
"""

from __future__ import annotations

import keras
import tensorflow as tf


# --- the model ---------------------------------------------------------------------------------------------------
def symbolic_build(model: keras.Model, data_batch) -> None:
    """Keras' own build of the model's, metrics' and loss trackers' variables from a batch's specs. No public
    method builds the compiled metrics and losses without drawing a batch from the data."""
    model._symbolic_build(data_batch=data_batch)


class BuildsFromElementSpec:
    """Mixin for a `keras.Model`: `fit` and `evaluate` build the model, its compiled metrics and losses and its
    optimizer from the dataset's element spec, with or without a strategy.

    Keras (3.5 and later, TF backend) builds them in `_maybe_symbolic_build` from a batch it draws from the dataset,
    and only under a strategy. Drawing starts an extra pass over the dataset, so a dataset that reshuffles each pass
    would train on its second order (and under MirroredStrategy, averaging the drawn batch over replicas fails on
    strings); without a strategy the variables are created inside the first trace of the train function, which makes
    tf.function trace it twice. The element spec is all the build needs, and no public method takes it."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if data_batch is None and iterator is not None:
            data_batch = _one_replica_batch_spec(iterator)
        if data_batch is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            symbolic_build(self, data_batch)


def _one_replica_batch_spec(iterator):
    """The shapes and dtypes of one replica's batch, read from the dataset's element spec, or None."""
    spec = epoch_iterator_element_spec(iterator)
    if spec is None:
        return None
    return tf.nest.map_structure(one_replica_spec, spec)


def update_compile_config(model: keras.Model, entries: dict) -> None:
    """What a saved model is recompiled with on loading (`compile_from_config`): Keras keeps it privately."""
    model._compile_config.config.update(entries)


def forget_layer(model: keras.Model, layer) -> None:
    """Stops tracking `layer`, a recompiled model's previous weighting or monitor: Keras has no public untrack."""
    if layer is not None and layer in model._layers:
        model._layers.remove(layer)


def compile_loss(model: keras.Model):
    """Keras' compiled loss (None before `compile`), whose `metrics` are the logged `<task>_loss` trackers."""
    return getattr(model, "_compile_loss", None)


def loss_tracker(model: keras.Model) -> keras.metrics.Metric:
    """The tracker behind the logged total `loss`, which our train step updates as Keras' own step does."""
    return model._loss_tracker


# --- the data ----------------------------------------------------------------------------------------------------
def epoch_iterator_element_spec(iterator):
    """The element spec of the (distributed) dataset behind Keras' TF epoch iterator, or None if there is none."""
    return getattr(getattr(iterator, "_distributed_dataset", None), "element_spec", None)


def one_replica_spec(leaf):
    """A distributed dataset's spec leaf (a `PerReplicaSpec` under a strategy) as one replica's `TensorSpec`."""
    return leaf._value_specs[0] if hasattr(leaf, "_value_specs") else leaf


# --- the functional graph ----------------------------------------------------------------------------------------
def producing_node(tensor):
    """The graph node that produced a symbolic tensor: Keras exposes no public walk of a functional graph."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


# --- metrics we subclass for faster updates ----------------------------------------------------------------------
def metric_built(metric: keras.metrics.Metric) -> bool:
    """Whether a Keras metric that builds its variables from its first update's shapes (AUC, F1Score) has."""
    return metric._built


def build_metric(metric: keras.metrics.Metric, *shapes) -> None:
    """Creates those variables from the shapes of the first update's tensors (call it once, if not built)."""
    metric._build(*shapes)


def thresholds_evenly_spaced(metric: keras.metrics.Metric) -> bool:
    """Whether an AUC, Precision or Recall takes Keras' bucketed update (evenly spaced thresholds), which our faster
    updates replace; Keras decides it in the constructor and keeps it privately."""
    return metric._thresholds_distributed_evenly


def auc_from_logits(metric: keras.metrics.AUC) -> bool:
    """The constructor's `from_logits`, which Keras' AUC keeps privately."""
    return metric._from_logits


def auc_num_labels(metric: keras.metrics.AUC) -> int:
    """The label count of a built multi-label AUC."""
    return metric._num_labels


__all__ = [
    "BuildsFromElementSpec", "auc_from_logits", "auc_num_labels", "build_metric", "compile_loss",
    "epoch_iterator_element_spec", "forget_layer", "loss_tracker", "metric_built", "one_replica_spec", "producing_node",
    "symbolic_build", "thresholds_evenly_spaced", "update_compile_config",
]
