import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_model_round_trips, fit_on_one_device_and_mirrored
from mtl_keras import InputError, LabelError, build_text_model, compile_multitask, make_text_dataset
from mtl_keras.export import TEXT_SIGNATURE


def small_model(tasks, texts, encoder="cnn", **kwargs):
    options = {"cnn": {"filters": 4, "kernel_sizes": (2,)}, "bilstm": {"units": 4},
               "transformer": {"num_layers": 1, "num_heads": 2, "feedforward_dim": 8}}[encoder]
    return build_text_model(tasks, texts=texts, encoder=encoder, encoder_options=options, embedding_dim=8,
                            max_length=8, head_hidden_units=(4,), **kwargs)


ENCODERS = ("cnn", "bilstm", "transformer")


@pytest.mark.parametrize("encoder", ENCODERS)
def test_builder_outputs_one_named_output_per_task(encoder, text_tasks, tiny_texts):
    model = small_model(text_tasks, tiny_texts, encoder)
    assert sorted(model.output) == ["domain", "intensity", "sentiment"]
    outputs = model(tf.constant(list(tiny_texts)))
    assert tuple(outputs["sentiment"].shape) == (8, 1)
    assert tuple(outputs["intensity"].shape) == (8, 1)
    assert tuple(outputs["domain"].shape) == (8, 3)


def test_every_encoder_round_trips(text_tasks, tiny_texts, tmp_path):
    """The model of each encoder, side by side in one model of one string input (outputs `<encoder>_<task>`): one
    .keras round trip and one SavedModel export check all three."""
    texts = keras.Input((), dtype="string", name="text")
    outputs = {}
    for encoder in ENCODERS:
        model = small_model(text_tasks, tiny_texts, encoder, name=f"text_{encoder}")
        outputs.update({f"{encoder}_{name}": value for name, value in model(texts).items()})
    model = keras.Model(texts, outputs)
    served = assert_model_round_trips(model, tf.constant(list(tiny_texts)), tmp_path, TEXT_SIGNATURE)
    assert {name: value.shape for name, value in served.items()} == {
        f"{encoder}_{task}": (8, width) for encoder in ENCODERS for task, width in
        (("sentiment", 1), ("intensity", 1), ("domain", 3))}


def test_builder_config_round_trip(text_tasks, tiny_texts):
    model = small_model(text_tasks, tiny_texts)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    texts = tf.constant(list(tiny_texts))
    for name, values in model(texts).items():
        np.testing.assert_allclose(np.asarray(clone(texts)[name]), np.asarray(values), atol=1e-6)


def test_builder_argument_errors(text_tasks, tiny_texts):
    with pytest.raises(ValueError, match="exactly one of `texts`"):
        build_text_model(text_tasks)
    with pytest.raises(ValueError, match="Unknown text encoder 'rnn'"):
        build_text_model(text_tasks, texts=tiny_texts, encoder="rnn")
    with pytest.raises(ValueError, match="Two tasks are named"):
        build_text_model(text_tasks + text_tasks[:1], texts=tiny_texts)


def test_compiled_logs_carry_per_task_losses_and_metrics_and_a_task_with_no_label_gives_zero_loss(
        text_tasks, tiny_texts, tiny_labels):
    model = compile_multitask(small_model(text_tasks, tiny_texts), text_tasks, loss_weights={"intensity": 0.5})
    unlabelled = dict(tiny_labels, sentiment=np.full(8, -1))  # no sentiment label in the (one) batch
    history = model.fit(make_text_dataset(tiny_texts, unlabelled, text_tasks, batch_size=8), epochs=1,
                        verbose=0).history
    for key in ("loss", "sentiment_loss", "intensity_loss", "domain_loss", "sentiment_accuracy", "sentiment_auc",
                "intensity_pearson_r", "intensity_rmse", "domain_f1", "domain_accuracy"):
        assert key in history, key
    assert history["sentiment_loss"] == [0.0]  # not NaN
    assert np.isfinite(history["loss"][0])


def test_per_task_loss_is_the_masked_mean_weights_combine_and_compile_overrides_one_task_at_a_time(
        text_tasks, tiny_texts, tiny_labels):
    model = compile_multitask(small_model(text_tasks, tiny_texts), text_tasks,
                              loss_weights={"sentiment": 2.0, "intensity": 0.5}, loss={"intensity": "huber"},
                              metrics={"domain": ["accuracy"]})
    logs = model.evaluate(make_text_dataset(tiny_texts, tiny_labels, text_tasks, batch_size=8), verbose=0,
                          return_dict=True)
    # One task's loss and one task's metrics overridden; the others keep the kind's defaults.
    assert "domain_accuracy" in logs and "domain_f1" not in logs
    assert "sentiment_f1" in logs
    predictions = model.predict(tf.constant(list(tiny_texts)), verbose=0)
    labelled = tiny_labels["sentiment"] >= 0
    p = predictions["sentiment"][labelled, 0].astype("float64")
    y = tiny_labels["sentiment"][labelled]
    expected_bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    residual = np.abs(predictions["intensity"][:, 0].astype("float64") - tiny_labels["intensity"])
    expected_huber = np.mean(np.where(residual <= 1.0, 0.5 * residual ** 2, residual - 0.5))  # delta 1
    domain_p = predictions["domain"][np.arange(8), tiny_labels["domain"]]
    expected_ce = -np.mean(np.log(domain_p))
    assert logs["sentiment_loss"] == pytest.approx(expected_bce, rel=1e-4)
    assert logs["intensity_loss"] == pytest.approx(expected_huber, rel=1e-4)
    assert logs["domain_loss"] == pytest.approx(expected_ce, rel=1e-4)
    assert logs["loss"] == pytest.approx(2 * expected_bce + 0.5 * expected_huber + expected_ce, rel=1e-4)
    # Accuracy too skips the unlabelled examples.
    assert logs["sentiment_accuracy"] == pytest.approx(np.mean((p > 0.5) == y), abs=1e-6)  # Keras: p > 0.5


def test_compile_errors_name_the_task(text_tasks, tiny_texts):
    model = small_model(text_tasks, tiny_texts)
    with pytest.raises(LabelError, match=r"loss_weights name unknown task\(s\) \['topic'\]"):
        compile_multitask(model, text_tasks, loss_weights={"topic": 1.0})
    with pytest.raises(ValueError, match=r"loss_weights\['domain'\] must be a finite number >= 0"):
        compile_multitask(model, text_tasks, loss_weights={"domain": -1.0})
    with pytest.raises(ValueError, match="outputs .* and the tasks .* differ"):
        compile_multitask(model, text_tasks[:2])
    with pytest.raises(LabelError, match="metrics name unknown task"):
        compile_multitask(model, text_tasks, metrics={"topic": ["accuracy"]})


def test_text_inputs_are_checked(text_tasks, tiny_labels):
    with pytest.raises(InputError, match="item 1 is int"):
        make_text_dataset(np.array(["a", 3, "c", "d", "e", "f", "g", "h"], dtype=object), tiny_labels, text_tasks)
    with pytest.raises(InputError, match="the list is empty"):
        make_text_dataset([], tiny_labels, text_tasks)
    with pytest.raises(InputError, match="got one string"):
        make_text_dataset("a text", tiny_labels, text_tasks)
    with pytest.raises(LabelError, match="Task 'domain': label 3 is out of range"):
        make_text_dataset(["x"] * 8, dict(tiny_labels, domain=np.full(8, 3)), text_tasks)


def test_text_model_with_mmoe_sharing_trains_on_two_replicas_like_on_one(text_tasks, tiny_texts, tiny_labels,
                                                                         two_replicas):
    """Raw strings in, under MirroredStrategy (Keras' own symbolic build would try to average string batches)."""
    def build():
        return build_text_model(text_tasks, texts=tiny_texts, embedding_dim=8, max_length=8, head_hidden_units=(4,),
                                encoder_options={"filters": 4, "kernel_sizes": (2,)}, dropout=0.0,
                                sharing="mmoe", sharing_options={"num_experts": 2, "expert_units": (4,)})

    dataset = make_text_dataset(tiny_texts, tiny_labels, text_tasks, batch_size=8)
    initial, single, mirrored = fit_on_one_device_and_mirrored(build, text_tasks, dataset, two_replicas, 0.5)
    assert type(mirrored).__name__ == "MultiTaskModel"
    for after_single, after_mirrored in zip(single.get_weights(), mirrored.get_weights(), strict=True):
        np.testing.assert_allclose(after_mirrored, after_single, atol=2e-5)


def test_tfidf_branch_weighs_unigrams_and_bigrams_by_idf_and_round_trips(text_tasks, tiny_texts, tmp_path):
    from mtl_keras.datasets.tokenization import build_ngram_idf

    terms, idf = build_ngram_idf(["not good", "good film", "good"])
    # "good" is in 3 of 3 texts: log(1 + 3/4); "not", "film" and both bigrams in 1: log(1 + 3/2).
    assert terms == ["good", "film", "good film", "not", "not good"]
    np.testing.assert_allclose(idf, [np.log(1.75)] + [np.log(2.5)] * 4)
    assert build_ngram_idf(["not good", "good film", "good"], max_terms=3)[0] == ["good", "film"]

    model = small_model(text_tasks, tiny_texts, tfidf_units=3)
    vectorizer = model.get_layer("tfidf_vectorizer")
    counts = vectorizer(tf.constant(["not good , not good"])).numpy()[0]
    vocabulary = vectorizer.get_vocabulary()
    expected_idf = dict(zip(*build_ngram_idf(tiny_texts), strict=True))
    for term in ("not", "good", "not good"):  # twice each, times its idf
        np.testing.assert_allclose(counts[vocabulary.index(term)], 2 * expected_idf[term], rtol=1e-6)
    assert model.get_layer("tfidf_projection").kernel.shape == (len(vocabulary), 3)
    # Unseen words weigh nothing (not the mean idf Keras would give them), so they cannot crowd out the others.
    np.testing.assert_array_equal(vectorizer(tf.constant(["zebra quagga"])).numpy(), 0.0)
    np.testing.assert_allclose(vectorizer(tf.constant(["zebra good"])).numpy()[0, vocabulary.index("good")],
                               expected_idf["good"], rtol=1e-6)

    clone = keras.Model.from_config(model.get_config())  # vocabulary and idf are in the config
    clone.set_weights(model.get_weights())
    texts = tf.constant(list(tiny_texts))
    for name, values in model(texts).items():
        np.testing.assert_allclose(np.asarray(clone(texts)[name]), np.asarray(values), atol=1e-6)
    assert_model_round_trips(model, tf.constant(list(tiny_texts)), tmp_path, TEXT_SIGNATURE)


def test_tfidf_branch_errors(text_tasks, tiny_texts):
    with pytest.raises(ValueError, match="tfidf_units needs texts="):
        build_text_model(text_tasks, vocabulary=["good", "bad"], tfidf_units=4)
    with pytest.raises(ValueError, match="tfidf_units must be a whole number >= 0, got -1"):
        build_text_model(text_tasks, texts=tiny_texts, tfidf_units=-1)
    with pytest.raises(ValueError, match=r"tfidf_max_tokens must be a whole number >= 2 \(one entry is for unseen"):
        build_text_model(text_tasks, texts=tiny_texts, tfidf_units=4, tfidf_max_tokens=1)
    with pytest.raises(ValueError, match="tfidf_units needs texts=.*and no backbone"):
        build_text_model(text_tasks, backbone="bert_tiny_en_uncased", tfidf_units=4)
