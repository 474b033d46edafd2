"""The tabular trunk's input side: raw columns in, one feature vector per row out.

Per feature (`mtl_keras.datasets.features.Feature`): `StringLookup` + `Embedding` for a categorical column (unseen
values share one out-of-vocabulary row), for a numeric one `NumericColumn` (optional signed log, then
standardisation) or an embedding of the number (`mtl_keras.encoders.numeric`, periodic by default); all
concatenated. The model therefore takes raw columns, and so does its SavedModel.

Example (the job column's 8-wide embedding beside age, embedded 8 wide or standardised to one value):

>>> import numpy as np
>>> from mtl_keras.datasets.features import describe_features
>>> features = describe_features({"age": np.array([25.0, 40.0]), "job": np.array(["a", "b"])})
>>> inputs = feature_inputs(features)
>>> tuple(encode_features(inputs, features).shape), tuple(encode_features(inputs, features, "standardize").shape)
((None, 16), (None, 9))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from mtl_keras.datasets.features import Feature
from mtl_keras.encoders.numeric import NUMERIC_ENCODINGS, NumericColumn, encode_numeric

__all__ = ["NUMERIC_ENCODINGS", "NumericColumn", "encode_features", "feature_inputs"]


def feature_inputs(features: Sequence[Feature]) -> dict[str, keras.KerasTensor]:
    """One `keras.Input` per feature, keyed and named by its input name (`Feature.input_name`): a batch of raw
    values, `string` or `float32`."""
    return {f.input_name: keras.Input(shape=(), dtype=f.dtype, name=f.input_name) for f in features}


def encode_features(inputs: Mapping[str, keras.KerasTensor], features: Sequence[Feature],
                    numeric_encoding: str = "periodic", numeric_embedding_dim: int = 8):
    """Raw column inputs -> one concatenated feature vector `(batch, width)`; numeric columns encoded by
    `numeric_encoding` (one of `NUMERIC_ENCODINGS`, see `mtl_keras.encoders.numeric`)."""
    if numeric_encoding not in NUMERIC_ENCODINGS:
        raise ValueError(f"numeric_encoding must be one of {list(NUMERIC_ENCODINGS)}, got {numeric_encoding!r}.")
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
            parts.append(encode_numeric(column, feature, numeric_encoding, numeric_embedding_dim, name=name))
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
