"""Pretrained trunks (`mtl_keras.backbones`): keras-hub text and image backbones and `keras.applications` models as
shared trunks, fine-tuning (frozen, unfrozen after N epochs or from a layer, LoRA), our own trunks saved and reused.

Offline: tiny backbones are built from configs (random weights), saved as local preset folders, and loaded through
`from_preset`, the path a preset name takes.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras
from helpers import assert_config_round_trip, assert_model_round_trips, serve_many_in_fresh_process
from mtl_keras import Task, build_text_model, build_vision_model, compile_multitask, export_saved_model
from mtl_keras.backbones import (
    ImagePreprocessing,
    PretrainedTrunk,
    load_trunk,
    require_keras_hub,
    save_trunk,
    trunk_model,
)
from mtl_keras.backbones.image_preprocessing import applications_mode
from mtl_keras.datasets.pipeline import make_text_dataset

keras_hub = pytest.importorskip("keras_hub")

WORDS = "good bad film food great awful service phone quick slow".split()
TASKS = [Task("sentiment", "binary"), Task("topic", "multiclass", num_classes=3)]


@pytest.fixture(scope="module")
def bert_preset(tmp_path_factory):
    """A two-layer BERT of width 8 with its WordPiece tokenizer, saved as a keras-hub preset folder."""
    folder = tmp_path_factory.mktemp("presets") / "tiny_bert"
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_layers=2, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16, max_sequence_length=16, dropout=0.0)
    backbone.save_to_preset(folder)
    keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16).save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory):
    """A two-stage ResNet with its image converter (pixels in [0, 255] to [0, 1]), as a keras-hub preset folder."""
    folder = tmp_path_factory.mktemp("presets") / "tiny_resnet"
    keras.utils.set_random_seed(0)
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3)).save_to_preset(folder)
    keras_hub.layers.ResNetImageConverter(scale=1 / 255.0).save_to_preset(folder)
    return folder


def texts(count=32, seed=0):
    rng = np.random.default_rng(seed)
    x = np.array([" ".join(rng.choice(WORDS, 3)) for _ in range(count)], dtype=object)
    labels = {"sentiment": np.array(["good" in t or "great" in t for t in x], "int64"),
              "topic": np.array([("film" in t) + 2 * ("food" in t and "film" not in t) for t in x], "int64")}
    return x, labels


def backbone_weights(model):
    """The backbone's weights, without the dropout layers' seed states (which move whatever trains)."""
    return {v.path: v.numpy().copy() for v in model.get_layer("backbone").backbone.weights
            if "seed_generator" not in v.path}


def changed(before, after):
    return sorted(path for path in before if not np.array_equal(before[path], after[path]))


class WeightsAtEpochEnd(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.snapshots = [backbone_weights(self.model)]

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(backbone_weights(self.model))


# --- text ---------------------------------------------------------------------------------------------------------
def test_text_model_on_a_keras_hub_preset_takes_strings_and_round_trips(bert_preset, tmp_path):
    model = build_text_model(TASKS, backbone=bert_preset, max_length=16)
    trunk = model.get_layer("backbone")
    assert isinstance(trunk, PretrainedTrunk) and type(trunk.backbone).__name__ == "BertBackbone"
    assert_config_round_trip(trunk)
    x, labels = texts()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    expected = model.predict(x[:4], verbose=0)
    assert {k: v.shape for k, v in expected.items()} == {"sentiment": (4, 1), "topic": (4, 3)}
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0)["topic"], expected["topic"], atol=1e-5)
    export_saved_model(model, tmp_path / "served")  # served from a fresh process, as a server would
    [served] = serve_many_in_fresh_process([(tmp_path / "served", {"text": list(x[:4])})])
    np.testing.assert_allclose(served["topic"], model.predict(x[:4], verbose=0)["topic"], atol=1e-5)


def test_pooling_choices_give_the_pooled_output_the_first_token_or_the_masked_mean(bert_preset):
    x = np.array(["good film", "bad"], dtype=object)
    outputs = {}
    for pooling in ("pooled", "first", "mean"):
        keras.utils.set_random_seed(0)
        model = build_text_model(TASKS, backbone=bert_preset, max_length=16, pooling=pooling)
        outputs[pooling] = keras.Model(model.input, model.get_layer("backbone").output).predict(x, verbose=0)
    trunk = model.get_layer("backbone")
    features = trunk.preprocessor(tf.constant(x))
    sequence = trunk.backbone(features)["sequence_output"].numpy()
    mask = features["padding_mask"].numpy()[..., None].astype("float32")
    np.testing.assert_allclose(outputs["first"], sequence[:, 0], atol=1e-6)
    np.testing.assert_allclose(outputs["mean"], (sequence * mask).sum(1) / mask.sum(1), atol=1e-6)
    np.testing.assert_allclose(outputs["pooled"], trunk.backbone(features)["pooled_output"].numpy(), atol=1e-6)


def test_a_frozen_backbone_does_not_change_while_the_heads_train(bert_preset):
    model = build_text_model(TASKS, backbone=bert_preset, max_length=16, freeze_backbone=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, labels = texts()
    before, heads = backbone_weights(model), model.get_layer("sentiment").get_weights()
    model.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    assert changed(before, backbone_weights(model)) == []
    assert not all(np.array_equal(a, b) for a, b in zip(heads, model.get_layer("sentiment").get_weights(), strict=True))


@pytest.mark.parametrize("loop", ["keras", "custom"])
def test_a_scheduled_backbone_unfreezes_after_its_epochs_from_the_given_layer(bert_preset, loop):
    model = build_text_model(TASKS, backbone=bert_preset, max_length=16, freeze_backbone=1,
                             unfreeze_from="transformer_layer_1")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, labels = texts()
    record = WeightsAtEpochEnd()
    model.fit(make_text_dataset(x, labels, TASKS, batch_size=8), epochs=2, verbose=0, callbacks=[record],
              loop=loop)
    first, second = changed(*record.snapshots[:2]), changed(*record.snapshots[1:])
    assert first == []  # epoch 1: frozen
    assert second and all("transformer_layer_1" in path or "pooled_dense" in path for path in second), second
    assert not any("embeddings" in path or "transformer_layer_0" in path for path in second)


def test_lora_trains_only_the_low_rank_factors_and_survives_saving(bert_preset, tmp_path):
    model = build_text_model(TASKS, backbone=bert_preset, max_length=16, lora_rank=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, labels = texts()
    before = backbone_weights(model)
    model.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    moved = changed(before, backbone_weights(model))
    # keras-hub's LoRA trains the factors and the biases of the attention's query and value projections.
    assert any("lora_kernel" in path for path in moved), moved
    assert all(path.endswith(("lora_kernel_a", "lora_kernel_b", "bias")) and ("/query/" in path or "/value/" in path)
               for path in moved), moved
    model.save(tmp_path / "lora.keras")
    loaded = keras.saving.load_model(tmp_path / "lora.keras")
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0)["topic"], model.predict(x[:4], verbose=0)["topic"],
                               atol=1e-5)


def test_fine_tuning_arguments_are_checked(bert_preset, resnet_preset):
    with pytest.raises(ValueError, match="lora_rank already freezes"):
        build_text_model(TASKS, backbone=bert_preset, max_length=16, lora_rank=2, freeze_backbone=1)
    with pytest.raises(ValueError, match="unfreeze_from='nope' is not a layer.*transformer_layer_0"):
        build_text_model(TASKS, backbone=bert_preset, max_length=16, freeze_backbone=1, unfreeze_from="nope")
    with pytest.raises(ValueError, match="freeze must be True, False or a number of epochs"):
        build_text_model(TASKS, backbone=bert_preset, max_length=16, freeze_backbone=0)
    with pytest.raises(ValueError, match="none of the layers keras-hub applies LoRA to"):
        build_vision_model([Task("kind", "binary")], image_shape=(32, 32, 3), backbone=resnet_preset, lora_rank=2)
    with pytest.raises(ValueError, match="a backbone brings its own tokenizer"):
        build_text_model(TASKS, backbone=bert_preset, texts=["good film"])
    with pytest.raises(ValueError, match="unfreeze_from='transformer_layer_1' needs freeze=N"):
        build_text_model(TASKS, backbone=bert_preset, max_length=16, unfreeze_from="transformer_layer_1")
    # options for a pretrained backbone, given without one, would do nothing: refused
    with pytest.raises(ValueError, match="build_text_model: freeze_backbone, lora_rank apply to a pretrained"):
        build_text_model(TASKS, texts=["good film"], freeze_backbone=2, lora_rank=4)
    with pytest.raises(ValueError, match="build_vision_model: freeze_backbone apply to a pretrained"):
        build_vision_model(VISION_TASKS, image_shape=(32, 32, 1), backbone="unet", freeze_backbone=True)
    # a backbone object that cannot take raw inputs by itself needs its preprocessing
    hub_text = keras_hub.models.Backbone.from_preset(str(bert_preset))
    with pytest.raises(ValueError, match="not raw text: give its keras-hub preprocessor"):
        build_text_model(TASKS, backbone=hub_text)
    hub_image = keras_hub.models.Backbone.from_preset(str(resnet_preset))
    with pytest.raises(ValueError, match="give its image converter too"):
        build_vision_model(VISION_TASKS, image_shape=(32, 32, 3), backbone=hub_image)


def test_a_hub_trunk_trains_with_a_sharing_layer_a_gradient_method_and_mixed_precision(bert_preset):
    from mtl_keras.precision import mixed_precision

    with mixed_precision() as policy:
        model = build_text_model(TASKS, backbone=bert_preset, max_length=16, sharing="mmoe",
                                 sharing_options={"num_experts": 2, "expert_units": (4,)})
    backbone = model.get_layer("backbone").backbone
    assert backbone.compute_dtype == policy.compute_dtype != "float32"  # the preset's saved float32 overridden
    assert model.output["topic"].dtype == "float32"
    model.compile(optimizer=keras.optimizers.Adam(1e-2), gradient="pcgrad")
    x, labels = texts()
    assert np.isfinite(model.fit(x, labels, epochs=1, batch_size=8, verbose=0).history["loss"]).all()


def test_a_hub_text_trunk_trains_under_mirrored_strategy_like_on_one_device(bert_preset, two_replicas):
    x, labels = texts(16)
    dataset = make_text_dataset(x, labels, TASKS, batch_size=8)

    def build():
        return build_text_model(TASKS, backbone=bert_preset, max_length=16, dropout=0.0, head_hidden_units=())

    single = build()
    initial = single.get_weights()
    compile_multitask(single, TASKS, optimizer=keras.optimizers.SGD(0.5))
    single.fit(dataset, epochs=1, verbose=0)
    with two_replicas.scope():
        mirrored = build()
        mirrored.set_weights(initial)
        compile_multitask(mirrored, TASKS, optimizer=keras.optimizers.SGD(0.5))
    mirrored.fit(dataset, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(single.get_weights(), initial, strict=True))
    for after_single, after_mirrored in zip(single.get_weights(), mirrored.get_weights(), strict=True):
        np.testing.assert_allclose(after_mirrored, after_single, atol=2e-5)


# --- images -------------------------------------------------------------------------------------------------------
def vision_data(count=8, side=32, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, side, side, channels)).astype("uint8")
    return images, {"mask": rng.integers(0, 3, (count, side, side)), "kind": np.arange(count) % 4}


VISION_TASKS = [Task("mask", "segmentation", num_classes=3), Task("kind", "multiclass", num_classes=4)]


def test_vision_model_on_a_keras_hub_preset_segments_and_classifies(resnet_preset, tmp_path):
    model = build_vision_model(VISION_TASKS, image_shape=(32, 32, 1), backbone=resnet_preset)
    assert type(model.get_layer("backbone").backbone).__name__ == "ResNetBackbone"
    images, labels = vision_data()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(images, labels, epochs=1, batch_size=4, verbose=0)
    assert {k: v.shape for k, v in model.predict(images[:2], verbose=0).items()} == {"mask": (2, 32, 32, 3),
                                                                                     "kind": (2, 4)}
    assert_model_round_trips(model, images[:2], tmp_path)


def test_a_frozen_image_backbone_keeps_its_batch_statistics(resnet_preset):
    model = build_vision_model(VISION_TASKS, image_shape=(32, 32, 1), backbone=resnet_preset, freeze_backbone=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = backbone_weights(model)
    images, labels = vision_data()
    model.fit(images, labels, epochs=1, batch_size=4, verbose=0)
    assert changed(before, backbone_weights(model)) == []  # kernels and moving means alike (inference mode)


def test_vision_model_on_keras_applications(tmp_path):
    by_name = build_vision_model(VISION_TASKS, image_shape=(32, 32, 3), backbone="applications:MobileNetV3Small",
                                 backbone_weights=None)
    assert by_name.get_layer("backbone").preprocessor.mode == "raw"  # MobileNetV3 scales inside itself
    assert {name: tuple(output.shape) for name, output in by_name.output.items()} == {"mask": (None, 32, 32, 3),
                                                                                       "kind": (None, 4)}
    backbone = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    model = build_vision_model(VISION_TASKS, image_shape=(32, 32, 3), backbone=backbone, freeze_backbone=True)
    assert model.get_layer("backbone").preprocessor.mode == "tf"
    images, _ = vision_data(channels=3)
    assert_model_round_trips(model, images[:2], tmp_path, atol=1e-4)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_image_preprocessing_matches_keras_applications_own_function(mode):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    reference = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode=mode)
    np.testing.assert_allclose(np.asarray(ImagePreprocessing(mode)(pixels)), reference, rtol=1e-5, atol=1e-4)
    assert_config_round_trip(ImagePreprocessing(mode))


def test_an_unknown_model_needs_its_preprocessing_named():
    inputs = keras.Input((8, 8, 3))
    with pytest.raises(ValueError, match="Cannot tell which input scaling model 'mine' expects"):
        applications_mode(keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs), name="mine"))
    with pytest.raises(ValueError, match="keras.applications has no model 'ResNet9'"):
        build_vision_model(VISION_TASKS, image_shape=(32, 32, 3), backbone="applications:ResNet9")


# --- transfer and the optional dependency -------------------------------------------------------------------------
def test_a_saved_trunk_is_reused_with_its_weights_under_new_heads(tmp_path):
    x, labels = texts()
    source = build_text_model(TASKS, texts=x, embedding_dim=8, encoder_options={"filters": 4})
    source.compile(optimizer=keras.optimizers.Adam(1e-2))
    source.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    folder = save_trunk(source, tmp_path / "trunk")
    with pytest.raises(FileExistsError):
        save_trunk(source, folder)
    vocabulary = (folder / "assets" / "vocabulary.txt").read_text().split("\n")
    assert vocabulary[:2] == ["", "[UNK]"] and "good" in vocabulary
    np.testing.assert_allclose(load_trunk(folder).predict(x, verbose=0), trunk_model(source).predict(x, verbose=0),
                               atol=1e-6)
    reused = build_text_model([Task("length", "regression")], backbone=folder, freeze_backbone=True)
    reused.compile(optimizer=keras.optimizers.Adam(1e-2))
    reused.fit(x, {"length": np.array([len(t) for t in x], "float32")}, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_allclose(keras.Model(reused.input, reused.get_layer("backbone").output).predict(x, verbose=0),
                               trunk_model(source).predict(x, verbose=0), atol=1e-6)


# --- a lower learning rate for the backbone than for the heads --------------------------------------------------
REGRESSION_TASKS = [Task("a", "regression"), Task("b", "regression")]


@pytest.fixture(scope="module")
def saved_trunk(tmp_path_factory):
    x, labels = texts()
    source = build_text_model(TASKS, texts=x, embedding_dim=8, encoder_options={"filters": 4}, dropout=0.0,
                              embedding_dropout=0.0)  # deterministic: replicas and devices draw no masks
    return save_trunk(source, tmp_path_factory.mktemp("lr") / "trunk")


def regression_labels(x):
    return {"a": np.array([len(t) / 10.0 for t in x], "float32"),
            "b": np.array([t.count("o") - 1.0 for t in x], "float32")}


def trunk_model_with_multiplier(folder, multiplier, strategy=None):
    with (strategy or tf.distribute.get_strategy()).scope():
        keras.utils.set_random_seed(5)
        return build_text_model(REGRESSION_TASKS, backbone=folder, dropout=0.0, head_hidden_units=(4,),
                                backbone_learning_rate_multiplier=multiplier)


def test_a_backbone_multiplier_is_adam_at_that_rate_for_the_backbone_and_the_full_rate_for_the_heads(saved_trunk):
    """Three steps of the step's Adam with multiplier 0.25 equal three steps of a hand-written loop with two Adams,
    one at a quarter of the rate for the backbone's variables, one at the full rate for the rest."""
    x = texts(24)[0]
    y = regression_labels(x)
    model = trunk_model_with_multiplier(saved_trunk, 0.25)
    reference = trunk_model_with_multiplier(saved_trunk, 1.0)
    reference.set_weights(model.get_weights())
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    backbone_ids = {id(v) for v in reference.get_layer("backbone").trainable_variables}
    slow = [v for v in reference.trainable_variables if id(v) in backbone_ids]
    fast = [v for v in reference.trainable_variables if id(v) not in backbone_ids]
    assert slow and fast
    slow_adam, fast_adam = keras.optimizers.Adam(0.05 * 0.25), keras.optimizers.Adam(0.05)
    for start in range(0, 24, 8):
        batch = tf.constant(x[start:start + 8])
        with tf.GradientTape() as tape:
            outputs = reference(batch, training=True)
            loss = sum(tf.reduce_mean(tf.square(outputs[name][:, 0] - y[name][start:start + 8])) for name in "ab")
        gradients = tape.gradient(loss, slow + fast)
        slow_adam.apply_gradients(zip(gradients[:len(slow)], slow, strict=True))
        fast_adam.apply_gradients(zip(gradients[len(slow):], fast, strict=True))
    for variable, expected in zip(model.trainable_variables, reference.trainable_variables, strict=True):
        np.testing.assert_allclose(variable.numpy(), expected.numpy(), atol=2e-6, err_msg=variable.path)
    # the backbone did train, and unlike at the full rate
    start = trunk_model_with_multiplier(saved_trunk, 1.0)
    full = trunk_model_with_multiplier(saved_trunk, 1.0)
    full.set_weights(start.get_weights())
    full.compile(optimizer=keras.optimizers.Adam(0.05))
    full.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    moved = [float(np.abs(np.asarray(after) - np.asarray(before)).max()) for after, before in
             zip(model.get_layer("backbone").get_weights(), start.get_layer("backbone").get_weights(), strict=True)]
    moved_at_full_rate = [float(np.abs(np.asarray(after) - np.asarray(before)).max()) for after, before in
                          zip(full.get_layer("backbone").get_weights(), start.get_layer("backbone").get_weights(),
                              strict=True)]
    assert max(moved) > 1e-3 and max(moved) < 0.5 * max(moved_at_full_rate), (moved, moved_at_full_rate)


def test_a_backbone_multiplier_trains_on_two_replicas_as_on_one_device_and_round_trips(saved_trunk, two_replicas,
                                                                                      tmp_path):
    x = texts(16)[0]
    single = trunk_model_with_multiplier(saved_trunk, 0.1)
    initial = single.get_weights()
    single.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    single.fit(make_text_dataset(x, regression_labels(x), REGRESSION_TASKS, batch_size=8), epochs=2, verbose=0)
    mirrored = trunk_model_with_multiplier(saved_trunk, 0.1, two_replicas)
    with two_replicas.scope():
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    mirrored.fit(make_text_dataset(x, regression_labels(x), REGRESSION_TASKS, batch_size=8), epochs=2, verbose=0)
    for after_single, after_mirrored in zip(single.get_weights(), mirrored.get_weights(), strict=True):
        np.testing.assert_allclose(after_mirrored, after_single, atol=1e-5)
    assert any(not np.allclose(a, b) for a, b in zip(single.get_layer("backbone").get_weights(),
                                                      initial[:len(single.get_layer("backbone").get_weights())],
                                                      strict=True))
    trunk = single.get_layer("backbone")
    assert trunk.learning_rate_multiplier == 0.1
    assert_config_round_trip(trunk)
    single.save(tmp_path / "slow.keras")
    loaded = keras.saving.load_model(tmp_path / "slow.keras")
    assert loaded.get_layer("backbone").learning_rate_multiplier == 0.1


def test_a_backbone_multiplier_is_checked(saved_trunk):
    for bad in (0, 0.0, 1.5, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="learning_rate_multiplier must be a number in \\(0, 1\\]"):
            build_text_model(REGRESSION_TASKS, backbone=saved_trunk, backbone_learning_rate_multiplier=bad)
    with pytest.raises(ValueError, match="backbone_learning_rate_multiplier apply to a pretrained backbone"):
        build_text_model(REGRESSION_TASKS, texts=["good film"], backbone_learning_rate_multiplier=0.1)
    model = build_text_model(REGRESSION_TASKS, backbone=saved_trunk, backbone_learning_rate_multiplier=0.1)
    with pytest.raises(ValueError, match="use_ema=True"):
        model.compile(optimizer=keras.optimizers.Adam(use_ema=True))


def test_a_missing_keras_hub_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[hub\]"'):
        require_keras_hub()
    with pytest.raises(ImportError, match="needs keras-hub"):
        build_text_model(TASKS, backbone="bert_tiny_en_uncased")


def test_the_core_imports_keras_hub_only_inside_functions():
    """keras-hub is an extra: a module-level import anywhere in the package would make it a requirement."""
    package = Path(mtl_keras.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(package)}: {name}" for name in names
                          if name.split(".")[0] in ("keras_hub", "tensorflow_text")]
    assert offenders == []
