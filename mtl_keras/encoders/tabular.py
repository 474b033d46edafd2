"""The tabular trunk's input side: raw columns in, one feature vector per row out.

Per feature (`mtl_keras.datasets.features.Feature`): `StringLookup` + `Embedding` for a categorical column (unseen
values share one out-of-vocabulary row), `NumericColumn` (optional signed log, then standardisation) for a numeric
one; all concatenated. The model therefore takes raw columns, and so does its SavedModel.

Example:

>>> import numpy as np
>>> from mtl_keras.datasets.features import describe_features
>>> features = describe_features({"age": np.array([25.0, 40.0]), "job": np.array(["a", "b"])})
>>> inputs = feature_inputs(features)
>>> tuple(encode_features(inputs, features).shape)
(None, 9)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import keras
from keras import ops

from mtl_keras.datasets.features import Feature


@keras.saving.register_keras_serializable(package="mtl_keras")
class NumericColumn(keras.layers.Layer):
    """A raw numeric column `(batch,)` -> `(batch, 1)`: optional signed log, then (x - mean) / sqrt(variance).

    Args:
        mean: the mean to subtract (of the logged values when `log`).
        variance: the variance to divide by (its square root; 0 is treated as 1).
        log: apply sign(x) * log(1 + |x|) first.
    """

    def __init__(self, mean: float = 0.0, variance: float = 1.0, log: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.mean = float(mean)
        self.variance = float(variance)
        self.log = bool(log)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.log:
            x = ops.sign(x) * ops.log1p(ops.abs(x))
        scale = math.sqrt(self.variance) if self.variance > 0 else 1.0
        return ops.expand_dims((x - self.mean) / scale, -1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (1,)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "variance": self.variance, "log": self.log}


def feature_inputs(features: Sequence[Feature]) -> dict[str, keras.KerasTensor]:
    """One `keras.Input` per feature, keyed and named by its input name (`Feature.input_name`): a batch of raw
    values, `string` or `float32`."""
    return {f.input_name: keras.Input(shape=(), dtype=f.dtype, name=f.input_name) for f in features}


def encode_features(inputs: Mapping[str, keras.KerasTensor], features: Sequence[Feature]):
    """Raw column inputs -> one concatenated feature vector `(batch, width)`."""
    parts = []
    for feature in features:
        name = feature.input_name  # layer names follow the input's: TensorFlow scopes refuse spaces and the like
        column = inputs[name]
        if feature.kind == "categorical":
            ids = keras.layers.StringLookup(vocabulary=list(feature.vocabulary), num_oov_indices=1,
                                            name=f"{name}_lookup")(column)
            parts.append(keras.layers.Embedding(len(feature.vocabulary) + 1, feature.embedding_dim,
                                                name=f"{name}_embedding")(ids))
        else:
            parts.append(NumericColumn(feature.mean, feature.variance, feature.log,
                                       name=f"{name}_standardized")(column))
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
