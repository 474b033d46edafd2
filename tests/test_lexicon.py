import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import Task, build_text_model
from mtl_keras.datasets.lexicon import NEGATIONS, sentiment_token_features
from mtl_keras.datasets.vader import load_vader_lexicon


def test_bundled_lexicon():
    lexicon = load_vader_lexicon()
    assert len(lexicon) > 7400
    assert lexicon["great"] == pytest.approx(3.1)
    assert lexicon["horrible"] == pytest.approx(-2.5)
    assert all(token == token.lower() for token in lexicon)


def test_sentiment_token_features():
    features = sentiment_token_features({"good": 2.0, "not": -0.5})
    assert features["good"] == [0.5, 0.0]
    assert features["not"] == [-0.125, 1.0]
    assert features["can't"] == [0.0, 1.0] and "can\u2019t" in NEGATIONS


def test_token_features_are_frozen_columns_beside_the_embedding(tmp_path):
    tasks = [Task("s", "binary")]
    model = build_text_model(tasks, vocabulary=["good", "bad", "film"], embedding_dim=4,
                             token_features={"good": [1.0, 0.0], "bad": [-1.0, 0.5]},
                             encoder_options={"filters": 2, "kernel_sizes": (1,)})
    layer = model.get_layer("token_features")
    assert not layer.trainable
    # rows: padding, OOV, good, bad, film
    np.testing.assert_array_equal(layer.get_weights()[0], [[0, 0], [0, 0], [1, 0], [-1, 0.5], [0, 0]])
    trainable = {v.path for v in model.trainable_variables}
    assert not any(path.startswith("token_features") for path in trainable)
    model.save(tmp_path / "m.keras")
    import keras

    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(reloaded.get_layer("token_features").get_weights()[0], layer.get_weights()[0])
    texts = tf.constant(["good film", "bad"])
    np.testing.assert_allclose(reloaded.predict(texts, verbose=0)["s"], model.predict(texts, verbose=0)["s"],
                               atol=1e-6)


def test_token_features_must_share_one_length():
    with pytest.raises(ValueError, match="same length"):
        build_text_model([Task("s", "binary")], vocabulary=["a", "b"], token_features={"a": [1.0], "b": [1.0, 2.0]})
