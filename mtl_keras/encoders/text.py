"""Text encoders: embedded token sequences `(batch, length, dim)` with a padding mask -> one vector per text.

Three families, each a registered, serializable layer, chosen by name through `get_text_encoder`:

- `"cnn"`: parallel 1-D convolutions of several widths, max-pooled over the real tokens (Kim, 2014);
- `"bilstm"`: a bidirectional LSTM, max- and mean-pooled over the real tokens;
- `"transformer"`: learned positions and self-attention blocks, mean-pooled over the real tokens.

Example:

>>> import numpy as np
>>> encoder = get_text_encoder("cnn", filters=8, kernel_sizes=(2, 3))
>>> tuple(encoder(np.zeros((2, 10, 4), "float32")).shape)
(2, 16)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


def _float_mask(mask, inputs):
    if mask is None:
        return ops.ones(ops.shape(inputs)[:2], dtype=inputs.dtype)
    return ops.cast(mask, inputs.dtype)


def masked_max(values, mask):
    """Max over time of the positions where mask is 1 (0 for a text with no token).

    Padding is pushed down by adding a large negative number rather than selected away with `where`: one fused
    add instead of a compare and a select over the whole (batch, time, features) tensor.
    """
    penalty = (mask[..., None] - 1.0) * ops.cast(1e4, values.dtype)
    pooled = ops.max(values + penalty, axis=1)
    has_tokens = ops.max(mask, axis=1, keepdims=True) > 0
    return ops.where(has_tokens, pooled, ops.zeros_like(pooled))


def masked_mean(values, mask):
    """Mean over time of the positions where mask is 1 (0 for a text with no token)."""
    total = ops.sum(values * mask[..., None], axis=1)
    return total / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)


@keras.saving.register_keras_serializable(package="mtl_keras")
class ConvTextEncoder(keras.layers.Layer):
    """Parallel convolutions of several kernel widths, each max-pooled over real tokens, concatenated.

    >>> import numpy as np
    >>> tuple(ConvTextEncoder(filters=4, kernel_sizes=(2, 3))(np.ones((2, 7, 5), "float32")).shape)
    (2, 8)

    Args:
        filters: filters per kernel width.
        kernel_sizes: the widths (n-gram sizes) of the convolutions.
        activation: the convolutions' activation.
    """

    def __init__(self, filters: int = 128, kernel_sizes: Sequence[int] = (2, 3, 4), activation: str = "relu",
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.activation = activation
        self.convolutions = [
            keras.layers.Conv1D(self.filters, k, padding="same", activation=activation, name=f"conv_{k}",
                                dtype=self.dtype_policy)
            for k in self.kernel_sizes
        ]
        self.supports_masking = True

    def build(self, input_shape):
        for convolution in self.convolutions:
            convolution.build(input_shape)

    def call(self, inputs, mask=None):
        weights = _float_mask(mask, inputs)
        inputs = inputs * weights[..., None]
        return ops.concatenate([masked_max(conv(inputs), weights) for conv in self.convolutions], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.filters * len(self.kernel_sizes))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_sizes": list(self.kernel_sizes),
                "activation": self.activation}


@keras.saving.register_keras_serializable(package="mtl_keras")
class BiLSTMTextEncoder(keras.layers.Layer):
    """A bidirectional LSTM; its states are max- and mean-pooled over real tokens and concatenated.

    >>> import numpy as np
    >>> tuple(BiLSTMTextEncoder(units=3)(np.ones((2, 7, 5), "float32")).shape)
    (2, 12)

    Args:
        units: LSTM units per direction (the output has 4 * units features).
        dropout: dropout on the LSTM inputs.
    """

    def __init__(self, units: int = 64, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.dropout = float(dropout)
        self.recurrent = keras.layers.Bidirectional(
            keras.layers.LSTM(self.units, return_sequences=True, dropout=self.dropout, dtype=self.dtype_policy),
            name="bilstm", dtype=self.dtype_policy,
        )
        self.supports_masking = True

    def build(self, input_shape):
        self.recurrent.build(input_shape)

    def call(self, inputs, mask=None, training=None):
        states = self.recurrent(inputs, mask=mask, training=training)
        weights = _float_mask(mask, inputs)
        return ops.concatenate([masked_max(states, weights), masked_mean(states, weights)], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 4 * self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="mtl_keras")
class TransformerBlock(keras.layers.Layer):
    """One pre-norm self-attention block: attention then feed-forward, each with a residual connection.

    >>> import numpy as np
    >>> tuple(TransformerBlock(num_heads=2, feedforward_dim=8)(np.ones((2, 7, 4), "float32")).shape)
    (2, 7, 4)

    Args:
        num_heads: attention heads.
        feedforward_dim: width of the feed-forward layer.
        dropout: dropout on the attention weights and on both residual branches.
    """

    def __init__(self, num_heads: int = 4, feedforward_dim: int = 256, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.feedforward_dim = int(feedforward_dim)
        self.dropout = float(dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm", dtype=self.dtype_policy)
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, max(dim // self.num_heads, 1), dropout=self.dropout, name="attention",
            dtype=self.dtype_policy,
        )
        self.feedforward_norm = keras.layers.LayerNormalization(name="feedforward_norm", dtype=self.dtype_policy)
        self.feedforward_in = keras.layers.Dense(self.feedforward_dim, activation="gelu", name="feedforward_in",
                                                 dtype=self.dtype_policy)
        self.feedforward_out = keras.layers.Dense(dim, name="feedforward_out", dtype=self.dtype_policy)
        self.residual_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.feedforward_norm.build(input_shape)
        self.feedforward_in.build(input_shape)
        self.feedforward_out.build(tuple(input_shape[:-1]) + (self.feedforward_dim,))

    def call(self, inputs, attention_mask=None, training=None):
        normed = self.attention_norm(inputs)
        attended = self.attention(normed, normed, attention_mask=attention_mask, training=training)
        x = inputs + self.residual_dropout(attended, training=training)
        hidden = self.feedforward_out(self.feedforward_in(self.feedforward_norm(x)))
        return x + self.residual_dropout(hidden, training=training)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "feedforward_dim": self.feedforward_dim,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="mtl_keras")
class TransformerTextEncoder(keras.layers.Layer):
    """Learned position embeddings and `TransformerBlock`s, mean-pooled over real tokens.

    >>> import numpy as np
    >>> encoder = TransformerTextEncoder(num_layers=1, num_heads=2, feedforward_dim=8, max_length=16)
    >>> tuple(encoder(np.ones((2, 7, 4), "float32")).shape)
    (2, 4)

    Args:
        num_layers: number of attention blocks.
        num_heads: attention heads per block.
        feedforward_dim: width of each block's feed-forward layer.
        dropout: dropout inside the blocks.
        max_length: longest sequence the position embedding covers.
    """

    def __init__(self, num_layers: int = 2, num_heads: int = 4, feedforward_dim: int = 256, dropout: float = 0.1,
                 max_length: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.feedforward_dim = int(feedforward_dim)
        self.dropout = float(dropout)
        self.max_length = int(max_length)
        self.blocks = [TransformerBlock(num_heads, feedforward_dim, dropout, name=f"block_{i}", dtype=self.dtype_policy)
                       for i in range(self.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(name="final_norm", dtype=self.dtype_policy)
        self.supports_masking = True

    def build(self, input_shape):
        length, dim = input_shape[1], input_shape[2]
        if length is not None and length > self.max_length:
            raise ValueError(f"TransformerTextEncoder: sequences of {length} tokens exceed max_length="
                             f"{self.max_length}.")
        self.positions = self.add_weight(shape=(self.max_length, dim), initializer="glorot_uniform",
                                         name="positions")
        for block in self.blocks:
            block.build(input_shape)
        self.final_norm.build(input_shape)

    def call(self, inputs, mask=None, training=None):
        weights = _float_mask(mask, inputs)
        length = ops.shape(inputs)[1]
        x = inputs + ops.cast(self.positions[None, :length, :], inputs.dtype)
        attention_mask = ops.cast(weights[:, None, :] * weights[:, :, None], "bool")
        for block in self.blocks:
            x = block(x, attention_mask=attention_mask, training=training)
        return masked_mean(self.final_norm(x), weights)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "num_heads": self.num_heads,
                "feedforward_dim": self.feedforward_dim, "dropout": self.dropout, "max_length": self.max_length}


TEXT_ENCODERS = {"cnn": ConvTextEncoder, "bilstm": BiLSTMTextEncoder, "transformer": TransformerTextEncoder}


def get_text_encoder(encoder: str | keras.layers.Layer, **kwargs) -> keras.layers.Layer:
    """A text encoder layer from its name (`"cnn"`, `"bilstm"`, `"transformer"`) and options, or the layer given."""
    if isinstance(encoder, keras.layers.Layer):
        if kwargs:
            raise ValueError("Options apply to an encoder given by name, not to a layer instance.")
        return encoder
    if encoder not in TEXT_ENCODERS:
        raise ValueError(f"Unknown text encoder {encoder!r}; choose one of {sorted(TEXT_ENCODERS)} or pass a layer.")
    kwargs.setdefault("name", f"{encoder}_encoder")
    return TEXT_ENCODERS[encoder](**kwargs)
