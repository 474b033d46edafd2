"""Mixed precision: the policy for a model build (by device, restored after), loss scaling for float16, and every
builder under it: float32 outputs, a finite training step with a loss weighting and a gradient method, a `.keras`
round trip and a float32 SavedModel. No GPU here: `mixed_float16` is exercised on the CPU (slow there, not wrong)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_model_round_trips
from mtl_keras import (
    Task,
    build_tabular_model,
    build_text_model,
    build_vision_model,
    compile_multitask,
    describe_features,
    make_image_dataset,
    make_tabular_dataset,
    make_text_dataset,
)
from mtl_keras.cli import _job_from_args, _parser
from mtl_keras.export import TEXT_SIGNATURE
from mtl_keras.precision import loss_scaled, mixed_precision, mixed_precision_policy_name


def test_the_policy_follows_the_device_and_is_restored():
    expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    assert mixed_precision_policy_name() == expected
    before = keras.config.dtype_policy().name
    with mixed_precision() as policy:
        assert policy.name == keras.config.dtype_policy().name == expected
    assert keras.config.dtype_policy().name == before
    with pytest.raises(RuntimeError, match="failed build"), mixed_precision(policy="mixed_float16"):
        raise RuntimeError("failed build")
    assert keras.config.dtype_policy().name == before
    with mixed_precision(enabled=False) as policy:
        assert policy.name == before
    with pytest.raises(ValueError, match="policy must be one of"), mixed_precision(policy="float16"):
        pass


def test_loss_scaling_only_for_float16():
    adam = keras.optimizers.Adam()
    scaled = loss_scaled(adam, "mixed_float16")
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer) and scaled.inner_optimizer is adam
    assert loss_scaled(scaled, "mixed_float16") is scaled
    assert loss_scaled(adam, "mixed_bfloat16") is adam and loss_scaled(adam, "float32") is adam


# --- every builder ------------------------------------------------------------------------------------------------
def text_case():
    tasks = [Task("sentiment", "binary"), Task("intensity", "regression"), Task("domain", "multiclass", num_classes=3)]
    texts = np.array(["I love it :)", "terrible, awful service", "the market fell today", "what a great movie!!!",
                      "not good at all", "stocks and bonds rallied", "meh", "best phone ever"], dtype=object)
    labels = {"sentiment": np.array([1, 0, -1, 1, 0, -1, 0, 1]),
              "intensity": np.array([2.5, -3.0, -0.5, 3.1, -1.2, 0.4, -0.1, 2.9], "float32"),
              "domain": np.array([0, 1, 2, 1, 0, 2, 0, 1])}

    def build():
        return build_text_model(tasks, texts=texts, embedding_dim=8, encoder_options={"filters": 4},
                                head_hidden_units=(4,), token_features={"love": [1.0], "awful": [-1.0]})

    return tasks, build, texts, make_text_dataset(texts, labels, tasks, batch_size=8), TEXT_SIGNATURE


def tabular_case():
    tasks = [Task("income", "binary"), Task("marital", "binary")]
    rng = np.random.default_rng(0)
    columns = {"age": rng.integers(18, 80, 8).astype("float32"),
               "gains": np.where(rng.random(8) < 0.4, 5000.0, 0.0).astype("float32"),
               "job": rng.choice(["clerk", "nurse", "farmer"], 8).astype(object)}
    labels = {"income": rng.integers(0, 2, 8), "marital": rng.integers(0, 2, 8)}
    features = describe_features(columns, log=["gains"])

    def build():
        return build_tabular_model(tasks, features, sharing="mmoe",
                                   sharing_options={"num_experts": 2, "expert_units": (8,)}, head_hidden_units=(4,))

    signature = [{f.name: tf.TensorSpec([None], tf.as_dtype(f.dtype), name=f.name) for f in features}]
    return tasks, build, columns, make_tabular_dataset(columns, labels, tasks, features, batch_size=8), signature


def vision_case():
    tasks = [Task("mask", "segmentation", num_classes=3), Task("kind", "multiclass", num_classes=4),
             Task("count", "regression")]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 16, 16, 1)).astype("uint8")
    labels = {"mask": rng.integers(0, 3, (4, 16, 16)), "kind": np.array([0, 1, 2, 3]),
              "count": np.array([1.0, 2.0, 3.0, 1.0], "float32")}

    def build():
        return build_vision_model(tasks, image_shape=(16, 16, 1), filters=(4, 8))

    dataset = make_image_dataset(images, labels, tasks, (16, 16, 1), batch_size=4)
    return tasks, build, images, dataset, [tf.TensorSpec([None, 16, 16, 1], tf.uint8, name="image")]


CASES = {"text": text_case, "tabular": tabular_case, "vision": vision_case}


@pytest.mark.parametrize("builder, policy, weighting, gradient", [
    ("text", "mixed_bfloat16", "uncertainty", "pcgrad"),
    ("tabular", "mixed_float16", "uncertainty", "pcgrad"),  # loss scaling through the gradient method's step
    ("vision", None, "static", None),  # the device's policy: mixed_bfloat16 on CPUs
])
def test_every_builder_trains_and_exports_under_mixed_precision(builder, policy, weighting, gradient, tmp_path):
    tasks, build, inputs, dataset, signature = CASES[builder]()
    with mixed_precision(policy=policy) as used:
        model = build()
    assert keras.config.dtype_policy().name == "float32"  # nothing leaks into later models
    assert model.dtype_policy.name == used.name
    assert {layer.compute_dtype for layer in model.layers if layer.weights} >= {used.compute_dtype}
    assert {name: output.dtype for name, output in model.output.items()} == {t.name: "float32" for t in tasks}

    compile_multitask(model, tasks, optimizer=loss_scaled(keras.optimizers.Adam(1e-3), model),
                      weighting=weighting, gradient=gradient)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (used.compute_dtype == "float16")
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(np.array(w), b) for w, b in zip(model.trainable_weights, before, strict=True))

    predicted = model.predict(tf.nest.map_structure(tf.constant, inputs), verbose=0)
    assert {name: value.dtype for name, value in predicted.items()} == {t.name: np.float32 for t in tasks}
    served = assert_model_round_trips(model, inputs, tmp_path, signature)  # .keras and SavedModel: same outputs
    # Every task's output in float32; a segmentation task's argmax mask (an export extra) in int32.
    assert {name: value.dtype for name, value in served.items() if name in predicted} == {
        t.name: np.float32 for t in tasks}
    assert {value.dtype for name, value in served.items() if name not in predicted} <= {np.dtype("int32")}


# --- the jobs and the command line --------------------------------------------------------------------------------
def test_job_builds_under_mixed_precision_and_restores_the_policy():
    args = _parser().parse_args(["train", "text", "--mixed-precision", "--limit", "200", "--embedding-dim", "8"])
    job = _job_from_args(args)
    assert job.config.mixed_precision is True
    assert _job_from_args(_parser().parse_args(["train", "vision"])).config.mixed_precision is False
    splits = job.load_data()
    model = job.new_model(splits.tasks, splits)
    assert model.dtype_policy.name == mixed_precision_policy_name()
    assert keras.config.dtype_policy().name == "float32"
    job.compile(model, splits.tasks)
    expect_scaling = mixed_precision_policy_name() == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == expect_scaling
