import keras
import numpy as np
import pytest

from helpers import assert_config_round_trip, assert_model_round_trips
from mtl_keras import BiLSTMTextEncoder, ConvTextEncoder, Task, TaskHead, TransformerBlock, TransformerTextEncoder


def sequence_model(layer, length=6, dim=8, vocabulary=20):
    tokens = keras.Input(shape=(length,), dtype="int32")
    embedded = keras.layers.Embedding(vocabulary, dim, mask_zero=True)(tokens)
    return keras.Model(tokens, layer(embedded))


def token_batch():
    return np.array([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]], "int32")


@pytest.mark.parametrize(
    "layer, width",
    [
        (ConvTextEncoder(filters=4, kernel_sizes=(1, 3)), 8),
        (BiLSTMTextEncoder(units=3), 12),
        (TransformerTextEncoder(num_layers=1, num_heads=2, feedforward_dim=16, max_length=6), 8),
    ],
)
def test_text_encoders_shapes_and_round_trips(layer, width, tmp_path):
    model = sequence_model(layer)
    assert model.output.shape == (None, width)
    assert_config_round_trip(layer)
    assert_model_round_trips(model, token_batch(), tmp_path)


@pytest.mark.parametrize("layer", [ConvTextEncoder(filters=4, kernel_sizes=(2,)), BiLSTMTextEncoder(units=3),
                                   TransformerTextEncoder(num_layers=1, num_heads=2, feedforward_dim=8)])
def test_encoders_ignore_padding(layer):
    model = sequence_model(layer)
    short = np.array([[3, 4, 5, 0, 0, 0]], "int32")
    embedded_layer = model.layers[1]
    # Changing the embedding of the padding id must not change the output.
    before = model.predict(short, verbose=0)
    weights = embedded_layer.get_weights()[0].copy()
    weights[0] += 10.0
    embedded_layer.set_weights([weights])
    np.testing.assert_allclose(model.predict(short, verbose=0), before, atol=1e-5)


def test_transformer_block_round_trip(tmp_path):
    inputs = keras.Input(shape=(5, 8))
    block = TransformerBlock(num_heads=2, feedforward_dim=16)
    model = keras.Model(inputs, block(inputs))
    assert_config_round_trip(block)
    assert_model_round_trips(model, np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32"), tmp_path)


def test_transformer_refuses_sequences_longer_than_its_positions():
    with pytest.raises(ValueError, match="exceed max_length"):
        sequence_model(TransformerTextEncoder(num_layers=1, num_heads=2, max_length=4))


@pytest.mark.parametrize(
    "task, input_shape, output_shape",
    [
        (Task("s", "binary"), (5,), (1,)),
        (Task("m", "multiclass", num_classes=4), (5,), (4,)),
        (Task("l", "multilabel", num_classes=3), (5,), (3,)),
        (Task("r", "regression", units=2), (5,), (2,)),
        (Task("g", "segmentation", num_classes=3), (4, 4, 5), (4, 4, 3)),
    ],
)
def test_heads_for_every_kind(task, input_shape, output_shape, tmp_path):
    head = TaskHead.for_task(task, hidden_units=(6,), dropout=0.1)
    inputs = keras.Input(shape=input_shape)
    model = keras.Model(inputs, {task.name: head(inputs)})
    assert model.output[task.name].shape == (None,) + output_shape
    outputs = model.predict(np.ones((2,) + input_shape, "float32"), verbose=0)[task.name]
    if task.activation == "softmax":
        np.testing.assert_allclose(outputs.sum(-1), 1.0, rtol=1e-5)
    if task.activation == "sigmoid":
        assert np.all((outputs > 0) & (outputs < 1))
    assert_config_round_trip(head)
    assert_model_round_trips(model, np.ones((2,) + input_shape, "float32"), tmp_path)
